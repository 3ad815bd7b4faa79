"""A libvirt live migration as a :class:`compute.virt.base.MigrationJob`.

``migrateToURI3`` blocks until the guest runs on the destination (or the job
fails), so it runs in a thread of its own, on a connection of its own. The
monitor's looks and steering (jobStats, migrateSetMaxDowntime,
migrateSetMaxSpeed, abortJob, suspend, migrateStartPostCopy) go through a
second connection: libvirt serves them while the migration call is in
progress on the first.
"""

import threading

import libvirt
from oslo_log import log as logging

from compute.virt import base
from compute.virt.libvirt import host as host_mod
from godwit import exception, validate

LOG = logging.getLogger(__name__)
# libvirt's own ceiling (QEMU_DOMAIN_MIG_BANDWIDTH_MAX): "no cap".
UNLIMITED_MIB = (2 ** 63 - 1) // (1024 * 1024)


def parallel_connections(conf, params):
    """(connections, why not) for ``[libvirt] live_migration_parallel_connections``:
    multifd (VIR_MIGRATE_PARALLEL) needs QEMU's direct stream, and a binding that
    knows the flag. 0 connections means one ordinary stream."""
    wanted = int(params.get("parallel_connections") or 0)
    if not wanted:
        return 0, None
    if conf.libvirt.live_migration_tunnelled:
        return 0, "tunnelled migration cannot use parallel connections"
    if conf.libvirt.live_migration_permit_post_copy:
        # QEMU refuses the two capabilities together ("Postcopy is not yet
        # compatible with multifd", QEMU 7.2 here); post-copy, the way a
        # migration that does not converge still ends, is kept.
        return 0, ("post-copy is permitted (live_migration_permit_post_copy) and QEMU "
                   "does not combine it with parallel connections")
    if not hasattr(libvirt, "VIR_MIGRATE_PARALLEL"):
        return 0, "this libvirt-python has no VIR_MIGRATE_PARALLEL"
    return wanted, None


def migration_flags(conf, migrate_data, params):
    """The VIR_MIGRATE_* flags for this migration (see docs/libvirt.md)."""
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
             libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_PERSIST_DEST)
    if migrate_data.get("block_migration"):
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
    elif migrate_data.get("is_shared_instance_path"):
        # libvirt cannot tell that a local-looking path is shared and refuses
        # ("Migration without shared storage is unsafe"); Godwit's probe file
        # proved that both hosts see the same files, so it is safe here.
        flags |= libvirt.VIR_MIGRATE_UNSAFE
    if params.get("auto_converge"):
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if params.get("post_copy"):
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    if conf.libvirt.live_migration_tunnelled:
        flags |= libvirt.VIR_MIGRATE_TUNNELLED
    if conf.libvirt.live_migration_with_native_tls:
        flags |= libvirt.VIR_MIGRATE_TLS
    if parallel_connections(conf, params)[0]:
        flags |= libvirt.VIR_MIGRATE_PARALLEL
    return flags


def migration_params(conf, migrate_data, params, dest_xml, copy_disks):
    """The typed parameters of migrateToURI3."""
    p = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: dest_xml,
         libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: dest_xml}
    if not conf.libvirt.live_migration_tunnelled:
        # QEMU-to-QEMU stream to the destination's migration address; without it
        # libvirt would use the destination's host name.
        addr = validate.uri_host(migrate_data["dest_inbound_addr"])
        p[libvirt.VIR_MIGRATE_PARAM_URI] = f"tcp://{addr}"
    # Always given: libvirt and QEMU keep a domain's last migration speed, so a
    # speed a user set on an earlier (rolled back) migration would cap this one.
    p[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(params.get("bandwidth_mib") or
                                                 UNLIMITED_MIB)
    connections = parallel_connections(conf, params)[0]
    if connections:
        p[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = connections
    if migrate_data.get("block_migration") and copy_disks:
        p[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(copy_disks)
    return p


def outgoing_job(dom):
    """jobStats of ``dom``'s outgoing migration job, or None if none runs.

    A peer-to-peer migration job belongs to libvirtd: it goes on while the agent
    that started it is dead, and a restarted agent finds it here.
    """
    try:
        stats = dom.jobStats()
    except libvirt.libvirtError:
        return None
    if stats.get("type") not in (libvirt.VIR_DOMAIN_JOB_BOUNDED,
                                 libvirt.VIR_DOMAIN_JOB_UNBOUNDED):
        return None
    operation = stats.get("operation")
    if operation is not None and operation != libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
        return None
    return stats


class LibvirtMigrationJob(base.MigrationJob):
    """Runs one migrateToURI3 and answers the monitor (see module docstring)."""

    def __init__(self, driver, instance, dest_uri, flags, params, max_downtime_ms):
        super().__init__()
        self.driver = driver
        self.host = driver.host
        self.uuid = instance["uuid"]
        self.dest_uri = dest_uri
        self.flags = flags
        self.params = params
        self.max_downtime_ms = max_downtime_ms
        # What the migration uses, for the monitor's tuning (the timeline).
        self.used = {}
        self.paused = False
        self.post_copy = False
        self._last = {}
        self._conn = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"libvirt-migration-{self.uuid[:8]}")

    def _domain(self):
        """The source domain through the driver's shared (second) connection."""
        return self.driver.hosts.lookup(self.uuid)

    def start(self):
        self._conn = host_mod.open_connection(self.driver.hosts.uri, self.host)
        try:
            dom = self._conn.lookupByUUIDString(self.uuid)
            if self.max_downtime_ms:
                dom.migrateSetMaxDowntime(int(self.max_downtime_ms), 0)
        except libvirt.libvirtError as e:
            self._conn.close()
            raise exception.HypervisorError(host=self.host, reason=str(e)) from e
        self._thread.start()

    def _run(self):
        try:
            dom = self._conn.lookupByUUIDString(self.uuid)
            LOG.info("Migrating %s to %s (flags 0x%x)", self.uuid, self.dest_uri, self.flags)
            dom.migrateToURI3(self.dest_uri, self.params, self.flags)
        except libvirt.libvirtError as e:
            self._error = exception.HypervisorError(host=self.host, reason=str(e))
        except Exception as e:  # the monitor reads it through result()
            self._error = e
        finally:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._done.set()

    # --- MigrationJob ----------------------------------------------------------
    def stats(self):
        try:
            dom = self._domain()
            raw = dom.jobStats() if dom is not None else {}
        except libvirt.libvirtError:
            raw = {}
        if raw.get("type") in (libvirt.VIR_DOMAIN_JOB_BOUNDED, libvirt.VIR_DOMAIN_JOB_UNBOUNDED):
            page = raw.get("memory_page_size") or 4096
            self._last = {
                "memory_total": raw.get("memory_total", 0),
                "memory_processed": raw.get("memory_processed", 0),
                "memory_remaining": raw.get("memory_remaining", 0),
                "disk_total": raw.get("disk_total", 0),
                "disk_processed": raw.get("disk_processed", 0),
                "disk_remaining": raw.get("disk_remaining", 0),
                "iteration": raw.get("memory_iteration", 0),
                "dirty_rate": raw.get("memory_dirty_rate", 0) * page,
                "bandwidth": raw.get("memory_bps", 0) + raw.get("disk_bps", 0),
                "expected_downtime_ms": raw.get("downtime", 0),
                "time_elapsed_ms": raw.get("time_elapsed", 0),
            }
        return dict(self._last, post_copy=self.post_copy, paused=self.paused)

    def _steer(self, what, fn):
        """Apply a steering call; a job that already ended ignores it."""
        if self._done.is_set():
            return
        try:
            dom = self._domain()
            if dom is not None:
                fn(dom)
        except libvirt.libvirtError as e:
            if not self._done.is_set():
                LOG.warning("%s on the migration of %s failed: %s", what, self.uuid, e)

    def set_max_downtime(self, ms):
        self._steer("migrateSetMaxDowntime", lambda d: d.migrateSetMaxDowntime(int(ms), 0))

    def set_max_speed(self, mib_per_s):
        speed = int(mib_per_s) or UNLIMITED_MIB
        self._steer("migrateSetMaxSpeed", lambda d: d.migrateSetMaxSpeed(speed, 0))

    def abort(self):
        self._steer("abortJob", lambda d: d.abortJob())

    def pause(self):
        def suspend(dom):
            dom.suspend()
            self.paused = True
        self._steer("suspend", suspend)

    def start_post_copy(self):
        def post_copy(dom):
            dom.migrateStartPostCopy(0)
            self.post_copy = True
        self._steer("migrateStartPostCopy", post_copy)


class AttachedMigrationJob(LibvirtMigrationJob, base.PolledMigrationJob):
    """A migration job found running under libvirtd after an agent restart.

    There is no migrateToURI3 call to wait on (it belonged to the dead
    process): the job has ended when the domain has no job any more, and it
    succeeded when the guest no longer runs here (UNDEFINE_SOURCE removed it).
    """

    POLL = 0.25

    def __init__(self, driver, instance):
        super().__init__(driver, instance, None, 0, {}, None)

    def start(self):
        pass

    def _check_done(self):
        if self._done.is_set():
            return True
        dom = self._domain()
        if dom is not None and outgoing_job(dom) is not None:
            return False
        try:
            still_here = dom is not None and dom.isActive()
        except libvirt.libvirtError:
            still_here = False
        if still_here:
            self._error = exception.HypervisorError(
                host=self.host, reason="the migration job ended and the guest still runs "
                                       "here (it failed or was aborted)")
        self._done.set()
        return True
