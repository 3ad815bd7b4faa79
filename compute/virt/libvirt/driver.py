"""LibvirtDriver: a QEMU/KVM host through libvirt-python.

Configuration is ``[libvirt]`` (Nova's option names); the host's libvirtd is
``connection_uri``. An instance is the domain ``instance-<uuid>`` whose libvirt
uuid is the instance's, with its files under ``<instances_path>/<uuid>/``: a
qcow2 ``disk`` of the flavor's root_gb (sparse) and ``console.log``.

Live migration is peer-to-peer: the source's libvirtd connects to the
destination's (``migration_peer_uri``, which the destination advertises in its
pre-check) and QEMU streams the guest to the destination's migration address
(``live_migration_inbound_addr``). The destination's view of the guest - disk
paths, graphics address, NICs from its VIF driver, volumes from its volume
driver - travels back to the source in migrate_data and becomes the
destination domain XML, so nothing has to be identical on both hosts except
shared storage's path. Cold migration and resize (power off, copy the disks
with the transfer driver, define the guest anew on the destination) are in
:mod:`.cold`. docs/libvirt.md has the whole picture.
"""

import os
import shutil
import time
import uuid as uuid_mod

import libvirt
from oslo_log import log as logging

from compute import drivers
from compute.virt import base
from compute.virt.libvirt import config, disk, images, migration
from compute.virt.libvirt import host as host_mod
from compute.virt.libvirt.cold import LibvirtColdMigration
from godwit import exception, states, validate

LOG = logging.getLogger(__name__)
GIB = 1024 ** 3
POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: states.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: states.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: states.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: states.PAUSED_POWER,
    libvirt.VIR_DOMAIN_SHUTDOWN: states.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: states.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: states.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: states.SUSPENDED,
}
UNDEFINE_FLAGS = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                  libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                  libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


class LibvirtDriver(LibvirtColdMigration, base.VirtDriver, base.ColdMigrationDriver):
    def __init__(self, conf, host, instances_path):
        super().__init__(conf, host, instances_path)
        os.makedirs(instances_path, exist_ok=True)
        self.hosts = host_mod.Host(conf, host)
        self.disk_cache = "none" if disk.supports_direct_io(instances_path) else "writeback"
        # Our own instances of the host's VIF and volume drivers, to describe
        # devices in domain XML: both methods used are idempotent and plug or
        # connect nothing the agent's instances would not.
        c = conf.compute
        self.vif = drivers.load("vif", c.vif_driver, conf, host)
        self.volume = drivers.load("volume", c.volume_driver, conf, host)

    # --- host ---------------------------------------------------------------------
    def init_host(self):
        self.hosts.get_connection()  # fail at start-up, naming the URI, if unreachable

    def cleanup_host(self):
        self.hosts.close()

    def get_host_info(self):
        return self.hosts.host_info(self.instances_path)

    @property
    def host_ip(self):
        return host_mod.default_host_ip(self.conf)

    @property
    def peer_uri(self):
        lv = self.conf.libvirt
        return lv.migration_peer_uri or \
            f"qemu+{lv.live_migration_scheme or 'tcp'}://{validate.uri_host(self.host_ip)}/system"

    def _instance_dir(self, instance, base_path=None):
        # From the checked uuid only: this directory is created and removed.
        return validate.instance_dir(base_path or self.instances_path, instance["uuid"])

    def list_instances(self):
        uuids = []
        for dom in self.hosts.get_connection().listAllDomains():
            try:
                meta = config.instance_uuid(dom.XMLDesc(0))
            except libvirt.libvirtError:
                continue  # vanished meanwhile
            if meta:
                uuids.append(meta)
            elif dom.name().startswith(config.DOMAIN_PREFIX):
                uuids.append(dom.UUIDString())
        return uuids

    def inspect_instance(self, instance):
        dom = self.hosts.lookup(instance["uuid"])
        if dom is None:
            return {"defined": False, "active": False, "incoming": False,
                    "persistent": False, "power_state": states.NOSTATE}
        try:
            state, reason = dom.state()
            active = bool(dom.isActive())
            persistent = bool(dom.isPersistent())
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return self.inspect_instance(instance)   # went meanwhile: look again
            raise exception.HypervisorError(host=self.host, reason=str(e)) from e
        # An incoming migration's domain waits paused for the stream (reason
        # MIGRATION on the destination); it is not the guest until it resumes.
        incoming = (state == libvirt.VIR_DOMAIN_PAUSED and
                    reason in (libvirt.VIR_DOMAIN_PAUSED_MIGRATION,
                               libvirt.VIR_DOMAIN_PAUSED_STARTING_UP) and
                    migration.outgoing_job(dom) is None)
        # A source in post-copy is paused while the guest runs on the destination.
        handed_over = (state == libvirt.VIR_DOMAIN_PAUSED and
                       reason in (libvirt.VIR_DOMAIN_PAUSED_POSTCOPY,
                                  libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED))
        return {"defined": True, "active": active and not incoming and not handed_over,
                "incoming": incoming,
                "persistent": persistent, "power_state": POWER_STATES.get(state,
                                                                          states.NOSTATE)}

    def _godwit_uuid(self, dom):
        """The instance uuid of a domain of Godwit's, else None: one whose XML carries
        Godwit's metadata with the domain's own uuid, or (no metadata) one named
        ``instance-<its uuid>`` as config.domain_name names it. Another's domain -
        also Nova's ``instance-0000000a`` - is None, so nothing lists or removes it.

        :raises: libvirtError (e.g. VIR_ERR_NO_DOMAIN if it went meanwhile).
        """
        dom_uuid = dom.UUIDString()
        meta = config.instance_uuid(dom.XMLDesc(0))
        if meta:
            try:
                same = uuid_mod.UUID(meta) == uuid_mod.UUID(dom_uuid)
            except ValueError:
                same = False
            if not same:
                LOG.warning("Domain %s carries Godwit's metadata of instance %s but its "
                            "uuid is %s: not treated as that instance's", dom.name(), meta,
                            dom_uuid)
                return None
            return dom_uuid
        return dom_uuid if dom.name() == config.DOMAIN_PREFIX + dom_uuid else None

    def list_domains(self):
        out = []
        for dom in self.hosts.get_connection().listAllDomains():
            try:
                instance_uuid = self._godwit_uuid(dom)
            except libvirt.libvirtError:
                continue  # vanished meanwhile
            if instance_uuid is None:
                continue
            found = self.inspect_instance({"uuid": instance_uuid})
            if found["defined"]:   # else it went between the listing and the look
                out.append(dict(found, instance_uuid=instance_uuid))
        return sorted(out, key=lambda d: d["instance_uuid"])

    def remove_domain(self, instance_uuid):
        dom = self.hosts.lookup(instance_uuid)
        if dom is None:
            return
        try:
            ours = self._godwit_uuid(dom) is not None
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return   # gone meanwhile
            raise exception.HypervisorError(host=self.host, reason=str(e)) from e
        if not ours:
            raise exception.HypervisorError(
                host=self.host, reason=f"domain {dom.name()} ({instance_uuid}) is not an "
                                       "instance of Godwit's: not removed")
        found = self.inspect_instance({"uuid": instance_uuid})
        if found["active"]:
            raise exception.GuestRunningHere(
                action="removal of an orphan domain", instance_id=instance_uuid,
                host=self.host, state="paused" if found["power_state"] ==
                states.PAUSED_POWER else "running")
        if found["defined"] and migration.outgoing_job(dom) is not None:
            # A post-copy source is not "active" (the guest runs on the
            # destination) but still serves the guest's memory: destroying it
            # would kill the guest.
            raise exception.GuestRunningHere(
                action="removal of an orphan domain", instance_id=instance_uuid,
                host=self.host, state="migrating out, its memory still served from here")
        LOG.info("Removing orphan domain of %s from %s (%s)", instance_uuid, self.host,
                 "an incoming migration's" if found["incoming"] else
                 "defined, not running" if found["defined"] else "gone")
        self._remove_domain({"uuid": instance_uuid})

    def find_migration_job(self, instance):
        dom = self.hosts.lookup(instance["uuid"])
        if dom is None or migration.outgoing_job(dom) is None:
            return None
        return migration.AttachedMigrationJob(self, instance)

    # --- devices ----------------------------------------------------------------
    def _interfaces(self, instance, network_info):
        """domain_interface dicts from this host's VIF driver (none if it has no such method)."""
        describe = getattr(self.vif, "domain_interface", None)
        if describe is None:
            return []
        return [describe(instance, vif) for vif in network_info or []]

    def _plug(self, instance, network_info):
        """Plug VIFs whose NIC the domain XML names, before the domain starts.

        The agent plugs after spawn; an unmanaged tap must exist before QEMU
        opens it. plug() is idempotent, so the agent's later call is harmless.
        """
        if getattr(self.vif, "domain_interface", None) is not None:
            for vif in network_info or []:
                self.vif.plug(instance, vif)

    def _volumes(self, instance, block_device_info):
        """{target dev: connection_info} of the instance's volumes on this host."""
        bdms = self.volume.volumes(block_device_info)
        return {dev: self.volume.connect_volume(instance, bdm)
                for dev, bdm in zip(config.volume_targets(bdms), bdms)}

    # --- lifecycle ----------------------------------------------------------------
    def _domain_xml(self, instance, network_info, block_device_info):
        """This host's domain XML for ``instance`` (memory and vCPUs from its
        flavor fields), after plugging the VIFs the XML names.

        Used by spawn and by cold migration (finish_migration with the new
        flavor, finish_revert_migration with the old one).

        :raises: ValueError for a volume connection the driver cannot attach.
        """
        d = self._instance_dir(instance)
        boot = self._boot_files(instance)
        self._plug(instance, network_info)
        volumes = self._volumes(instance, block_device_info)
        return config.domain_xml(
            instance, os.path.join(d, "disk"), os.path.join(d, "console.log"),
            virt_type=self.conf.libvirt.virt_type, disk_cache=self.disk_cache,
            interfaces=self._interfaces(instance, network_info),
            volume_disks=[config.volume_disk_element(info, dev)
                          for dev, info in volumes.items()], boot=boot)

    def _boot_files(self, instance):
        """Kernel, ramdisk and command line of a directly booted instance (or None),
        copied into its instance directory from this host's image store if missing."""
        return images.boot_files(self.conf.libvirt.image_store_path, self.host, instance,
                                 self._instance_dir(instance))

    def spawn(self, instance, network_info, block_device_info):
        d = self._instance_dir(instance)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "disk")
        if not os.path.exists(path):
            disk.create(self.host, path, max(instance.get("root_gb") or 0, 1) * GIB)
        dom = self.hosts.lookup(instance["uuid"])
        try:
            if dom is None:
                xml = self._domain_xml(instance, network_info, block_device_info)
                dom = self.hosts.get_connection().defineXML(xml)
            if not dom.isActive():
                dom.create()
        except (libvirt.libvirtError, ValueError) as e:
            raise exception.HypervisorError(
                host=self.host, reason=f"cannot start domain of {instance['uuid']}: {e}") from e

    def _remove_domain(self, instance):
        dom = self.hosts.lookup(instance["uuid"])
        if dom is None:
            return
        try:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                try:
                    dom.undefineFlags(UNDEFINE_FLAGS)
                except libvirt.libvirtError as e:
                    if e.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
                        raise
                    dom.undefine()
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # gone meanwhile: fine
                raise exception.HypervisorError(
                    host=self.host,
                    reason=f"cannot remove domain of {instance['uuid']}: {e}") from e

    def destroy(self, instance, network_info, block_device_info, destroy_disks=True):
        self._remove_domain(instance)
        if destroy_disks:
            shutil.rmtree(self._instance_dir(instance), ignore_errors=True)

    def get_power_state(self, instance):
        dom = self.hosts.lookup(instance["uuid"])
        if dom is None:
            return states.NOSTATE
        return POWER_STATES.get(dom.state()[0], states.NOSTATE)

    def power_off(self, instance):
        """Hard power-off (virDomainDestroy); the definition and files stay."""
        dom = self.hosts.lookup(instance["uuid"])
        try:
            if dom is not None and dom.isActive():
                dom.destroy()
        except libvirt.libvirtError as e:
            if dom.isActive():
                raise exception.HypervisorError(host=self.host, reason=str(e)) from e

    def power_on(self, instance):
        dom = self.hosts.lookup(instance["uuid"])
        if dom is None:
            raise exception.HypervisorError(
                host=self.host, reason=f"domain of {instance['uuid']} is not defined here")
        try:
            if not dom.isActive():
                dom.create()
        except libvirt.libvirtError as e:
            raise exception.HypervisorError(host=self.host, reason=str(e)) from e

    def reboot(self, instance, network_info, block_device_info, reboot_type):
        """SOFT: the ACPI power button, destroy if the guest has not stopped after
        ``clean_shutdown_timeout`` s (then it is a hard reboot, as in Nova);
        HARD: destroy. Either way the domain is then defined anew from this
        host's XML (VIFs re-plugged, volumes reconnected) and started."""
        if reboot_type == "SOFT":
            how = self._power_off_cleanly(instance, self.clean_shutdown_timeout)
            LOG.info("Soft reboot of %s: %s", instance["uuid"], {
                "clean": "the guest shut down", "not running": "the guest was not running",
                "destroyed": f"no shutdown within {self.clean_shutdown_timeout:.0f} s, "
                             "destroyed (a hard reboot)"}[how])
        else:
            self.power_off(instance)
        self._define_and_start(instance, network_info, block_device_info, power_on=True)

    # --- live migration: checks ----------------------------------------------------
    def check_can_live_migrate_destination(self, instance, block_migration):
        probe = self.leave_shared_probe()
        return {"probe": probe, "dest_instances_path": self.instances_path,
                "block_migration": block_migration, "dest_hostname": self.host,
                "dest_peer_uri": self.peer_uri, "dest_host_ip": self.host_ip,
                "dest_inbound_addr": self.conf.libvirt.live_migration_inbound_addr
                or self.host_ip}

    def _connect_peer(self, dest, uri):
        try:
            return libvirt.open(uri)
        except libvirt.libvirtError as e:
            if "refused" in str(e).lower():
                raise exception.MigrationPreCheckError(
                    reason=f"the hypervisor on {dest} is not listening for migrations "
                           f"(connection to {uri} refused): libvirtd there needs listen_tcp "
                           "(or TLS) enabled") from e
            raise exception.MigrationPreCheckError(
                reason=f"the hypervisor on {dest} cannot be reached by {self.host}'s "
                       f"libvirtd's peer connection ({uri}): {e}") from e

    def _check_peer(self, dest, peer):
        """CPU and security driver of the destination's hypervisor against ours."""
        src_caps = self.hosts.capabilities()
        dst_caps = peer.getCapabilities()
        src_xml, src_cpu = host_mod.capabilities_cpu(src_caps)
        _, dst_cpu = host_mod.capabilities_cpu(dst_caps)
        try:
            result = peer.compareCPU(src_xml, 0)
        except libvirt.libvirtError as e:
            raise exception.MigrationPreCheckError(
                reason=f"{dest}'s libvirt could not compare {self.host}'s CPU "
                       f"({src_cpu['model']}) with its own ({dst_cpu['model']}): {e}") from e
        if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
            raise exception.MigrationPreCheckError(
                reason=f"the CPU of {dest} ({dst_cpu['vendor']} {dst_cpu['model']}) lacks "
                       f"features of {self.host}'s ({src_cpu['vendor']} {src_cpu['model']}); "
                       "a running guest could not continue there")
        src_sec, dst_sec = host_mod.security_driver(src_caps), host_mod.security_driver(dst_caps)
        if src_sec != dst_sec:
            raise exception.MigrationPreCheckError(
                reason=f"{dest} uses security driver {dst_sec!r} and {self.host} {src_sec!r}; "
                       f"libvirt would refuse the guest's label there (\"Unable to find "
                       f"security driver for label {src_sec}\"), as between a host with "
                       "AppArmor and one without. Set the same security_driver in qemu.conf "
                       "on both hosts")

    def _disk_info(self, dom):
        """What the destination needs to recreate each local disk."""
        disks = []
        for path in config.disk_files(dom.XMLDesc(0)):
            i = disk.info(self.host, path)
            disks.append({"path": path, "virtual_size": i["virtual-size"],
                          "format": i.get("format"),
                          "backing_file": i.get("full-backing-filename")
                          or i.get("backing-filename"),
                          "backing_format": i.get("backing-filename-format")})
        return disks

    # How long a dirty-rate sample lasts (libvirt's calc-dirty-rate, QEMU >= 5.2).
    DIRTY_RATE_SECONDS = 1

    def migration_estimate(self, instance):
        """The dry run's figures, measured: the guest's dirty rate (libvirt samples
        pages for DIRTY_RATE_SECONDS), what of its memory QEMU has touched (its
        RSS: pages never touched are zero and cost nothing to send), the data in
        its local disks, and ``[libvirt] live_migration_bandwidth`` (None when
        unlimited: then the link speed decides and there is no prediction)."""
        dom = self.hosts.lookup(instance["uuid"])
        if dom is None or not dom.isActive():
            return None
        notes = []
        dirty = None
        try:
            dom.startDirtyRateCalc(self.DIRTY_RATE_SECONDS, 0)
            deadline = time.monotonic() + self.DIRTY_RATE_SECONDS + 5
            conn = self.hosts.get_connection()
            while time.monotonic() < deadline:
                time.sleep(0.2)
                [(_dom, stats)] = conn.domainListGetStats(
                    [dom], libvirt.VIR_DOMAIN_STATS_DIRTYRATE)
                if stats.get("dirtyrate.calc_status") == \
                        libvirt.VIR_DOMAIN_DIRTYRATE_MEASURED:
                    dirty = stats.get("dirtyrate.megabytes_per_second")
                    break
            else:
                notes.append("the dirty-rate sample did not finish")
        except (libvirt.libvirtError, AttributeError) as e:
            notes.append(f"no dirty rate ({e})")
        memory_mb = instance["memory_mb"]
        try:
            rss_kib = dom.memoryStats().get("rss")
            if rss_kib:
                memory_mb = min(memory_mb, rss_kib // 1024)
        except libvirt.libvirtError as e:
            notes.append(f"no memory stats ({e})")
        disk_mb = 0
        for path in config.disk_files(dom.XMLDesc(0)):
            try:
                _capacity, allocation, _physical = dom.blockInfo(path, 0)
                disk_mb += allocation // 2 ** 20
            except libvirt.libvirtError as e:
                notes.append(f"no allocation of {path} ({e})")
        bandwidth = self.conf.libvirt.live_migration_bandwidth or None
        if bandwidth is None:
            notes.append("live_migration_bandwidth is unlimited: the link decides")
        return {"bandwidth_mb_s": bandwidth, "dirty_rate_mb_s": dirty,
                "memory_mb": memory_mb, "disk_mb": disk_mb,
                "basis": "measured by libvirt" + (f"; {'; '.join(notes)}" if notes else "")}

    def check_can_live_migrate_source(self, instance, dest_check_data):
        dom = self.hosts.lookup(instance["uuid"])
        if dom is None or not dom.isActive():
            raise exception.MigrationPreCheckError(
                reason=f"instance {instance['uuid']} has no running domain on source host "
                       f"{self.host}")
        # Both came from the destination over RPC; the URI is what our libvirtd
        # connects to (for qemu+ssh, by running ssh with its host).
        dest = validate.host(dest_check_data.get("dest_hostname"))
        uri = validate.libvirt_peer_uri(dest_check_data.get("dest_peer_uri"))
        peer = self._connect_peer(dest, uri)
        try:
            self._check_peer(dest, peer)
        finally:
            peer.close()
        shared, block = self.decide_storage(instance, dest, dest_check_data)
        if block and self.conf.libvirt.live_migration_tunnelled:
            raise exception.MigrationPreCheckError(
                reason="block migration cannot be tunnelled through libvirtd (libvirt "
                       "refuses TUNNELLED with disk copy); set [libvirt] "
                       "live_migration_tunnelled = False or use shared storage")
        return dict(dest_check_data, is_shared_instance_path=shared, block_migration=block,
                    source_instances_path=self.instances_path,
                    source_disks=self._disk_info(dom) if block else [])

    # --- live migration: destination ---------------------------------------------
    def pre_live_migration(self, instance, block_device_info, network_info, migrate_data):
        src_path = migrate_data.get("source_instances_path")
        if not migrate_data.get("is_shared_instance_path"):
            os.makedirs(self._instance_dir(instance), exist_ok=True)
        if migrate_data.get("block_migration"):
            for d in migrate_data.get("source_disks") or []:
                self._prepare_disk(d, src_path, instance["uuid"])
        if not migrate_data.get("is_shared_instance_path"):
            self._boot_files(instance)  # the kernel the arriving guest was booted with
        return dict(
            migrate_data,
            dest_interfaces=self._interfaces(instance, network_info),
            dest_volumes=self._volumes(instance, block_device_info),
            dest_graphics_listen=self.host_ip)

    def _prepare_disk(self, d, src_path, instance_uuid):
        """Create the empty disk that block migration streams into (backing file first)."""
        path = config.relocate(d["path"], src_path, self.instances_path)
        backing = d.get("backing_file")
        if backing:
            local = config.relocate(backing, src_path, self.instances_path)
            if disk.ensure_backing_file(self.host, local, source_path=backing):
                LOG.info("Copied backing image %s to %s", backing, local)
            backing = local
        if os.path.exists(path):
            if self.hosts.lookup(instance_uuid) is not None:
                # A domain of the instance is defined here (an incoming one, or
                # the guest itself): the disk is in use and stays as it is.
                LOG.info("Keeping %s: a domain of %s uses it", path, instance_uuid)
                return
            os.unlink(path)  # a leftover of an earlier attempt: start clean
        disk.create(self.host, path, d["virtual_size"], backing, d.get("backing_format"))

    def live_migration(self, instance, dest, migrate_data, params):
        dom = self.hosts.lookup(instance["uuid"])
        if dom is None:
            raise exception.HypervisorError(host=self.host,
                                            reason=f"domain {instance['uuid']} not found")
        try:
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        except libvirt.libvirtError as e:
            raise exception.HypervisorError(host=self.host, reason=str(e)) from e
        dest_xml = config.destination_xml(
            xml, migrate_data.get("source_instances_path") or self.instances_path,
            migrate_data.get("dest_instances_path"),
            graphics_listen=migrate_data.get("dest_graphics_listen"),
            interfaces={i["mac"].lower(): i for i in migrate_data.get("dest_interfaces") or []},
            volume_disks={dev: config.volume_disk_element(info, dev)
                          for dev, info in (migrate_data.get("dest_volumes") or {}).items()})
        copy = config.local_disk_targets(xml)
        flags = migration.migration_flags(self.conf, migrate_data, params)
        mparams = migration.migration_params(self.conf, migrate_data, params, dest_xml, copy)
        dest_uri = validate.libvirt_peer_uri(migrate_data["dest_peer_uri"])
        job = migration.LibvirtMigrationJob(self, instance, dest_uri,
                                            flags, mparams, params.get("max_downtime_ms"))
        if params.get("parallel_connections"):
            connections, why_not = migration.parallel_connections(self.conf, params)
            job.used = {"parallel_connections": connections}
            if why_not:
                job.used["parallel_not_used"] = why_not
        job.start()
        return job

    # --- live migration: after ---------------------------------------------------
    def post_live_migration_at_source(self, instance, block_device_info, migrate_data):
        # UNDEFINE_SOURCE removed it already; a leftover (e.g. a failed undefine) goes.
        self._remove_domain(instance)

    def post_live_migration_at_destination(self, instance, network_info, block_device_info,
                                           migrate_data):
        dom = self.hosts.lookup(instance["uuid"])
        if dom is None or not dom.isActive():
            raise exception.HypervisorError(
                host=self.host, reason=f"domain {instance['uuid']} did not arrive")
        self._log_arrival(instance, dom)
        try:
            if not dom.isPersistent():  # PERSIST_DEST normally did it
                self.hosts.get_connection().defineXML(
                    dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                # Paused to force completion (migrate_data["forced"] == "paused").
                LOG.info("Resuming %s, which arrived paused (forced: %s)", instance["uuid"],
                         migrate_data.get("forced"))
                dom.resume()
        except libvirt.libvirtError as e:
            raise exception.HypervisorError(host=self.host, reason=str(e)) from e

    def _log_arrival(self, instance, dom):
        """libvirt's own account of the finished migration, for operators."""
        try:
            s = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError:
            return
        if s:
            LOG.info("Migration of %s arrived: libvirt job time %s ms, downtime %s ms, "
                     "memory %s bytes, disk %s bytes", instance["uuid"],
                     s.get("time_elapsed"), s.get("downtime"), s.get("memory_processed"),
                     s.get("disk_processed"))

    def rollback_live_migration_at_destination(self, instance, network_info,
                                               block_device_info, destroy_disks,
                                               migrate_data):
        self._remove_domain(instance)
        if destroy_disks and not migrate_data.get("is_shared_instance_path"):
            shutil.rmtree(self._instance_dir(instance), ignore_errors=True)

    def cleanup_source_files(self, instance, migrate_data):
        if not migrate_data.get("is_shared_instance_path"):
            shutil.rmtree(self._instance_dir(instance), ignore_errors=True)

