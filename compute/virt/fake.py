"""A fake hypervisor that behaves like a host, for functional tests and demos.

Domains are JSON records in the host's :class:`compute.fake_host.FakeHost`
directory; disks are real files under the instance directory. Live
migration moves the domain record to the destination host's directory, the
way a hypervisor creates the guest on the other side, and copies disk files
for block migration. With ``[fake] migration_bandwidth_mb`` set, the
transfer takes time: memory is sent in rounds, the guest re-dirties pages at
``migration_dirty_rate_mb`` per second, and progress is reported to the
monitor, which may abort the job.

Several fake hosts on one machine share ``[fake] hosts_path``; hosts whose
instances_path is the same directory have shared storage.
"""

import json
import os
import shutil

from oslo_log import log as logging

from compute import fault_injection
from compute.fake_host import FakeHost
from compute.virt import base, fake_job
from compute.virt.fake_cold import GIB, FakeColdMigration
from godwit import exception, states, validate

LOG = logging.getLogger(__name__)


class FakeDriver(FakeColdMigration, base.VirtDriver, base.ColdMigrationDriver):
    def __init__(self, conf, host, instances_path):
        super().__init__(conf, host, instances_path)
        self.fake = FakeHost(conf.fake.hosts_path, host)
        self.faults = fault_injection.for_host(host, self.fake.root, conf.fake.faults)
        os.makedirs(instances_path, exist_ok=True)
        # What a peer's hypervisor connection would find; a test may flip it.
        self._write_json(os.path.join(self.fake.root, "hypervisor.json"),
                         {"listening": conf.fake.accepts_migrations,
                          "uri": f"fake://{host}/system"})

    @staticmethod
    def _write_json(path, data):
        with open(path + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)

    def _peer_listening(self, dest):
        try:
            with open(os.path.join(self.conf.fake.hosts_path, dest, "hypervisor.json")) as f:
                info = json.load(f)
        except (OSError, ValueError):
            return False, f"fake://{dest}/system"
        return info.get("listening", False), info.get("uri")

    def cleanup_host(self):
        self.faults.stopping.set()

    def _instance_dir(self, instance, base_path=None):
        # From the checked uuid only: this directory is created and removed.
        return validate.instance_dir(base_path or self.instances_path, instance["uuid"])

    def get_host_info(self):
        f = self.conf.fake
        return {
            "vcpus": f.vcpus, "memory_mb": f.memory_mb, "local_gb": f.disk_gb,
            "hypervisor_type": f.hypervisor_type, "hypervisor_version": f.hypervisor_version,
            "cpu_info": json.dumps({"model": f.cpu_model, "arch": "x86_64"}),
            "security_driver": f.security_driver, "host_ip": "127.0.0.1",
            "instances_path": self.instances_path,
        }

    def list_instances(self):
        return self.fake.keys("domains")

    def _domain_record(self, instance, network_info, power_state=states.RUNNING):
        return {"uuid": instance["uuid"], "name": instance.get("display_name"),
                "instance_uuid": instance["uuid"], "memory_mb": instance["memory_mb"],
                "vcpus": instance["vcpus"], "power_state": power_state, "persistent": True,
                "disk": os.path.join(self._instance_dir(instance), "disk"),
                "macs": [v["address"] for v in network_info or []]}

    def spawn(self, instance, network_info, block_device_info):
        self.faults.check("spawn", instance)
        d = self._instance_dir(instance)
        os.makedirs(d, exist_ok=True)
        disk = os.path.join(d, "disk")
        if not os.path.exists(disk):
            if self.conf.fake.disk_format == "qcow2":
                # A real qcow2 overlay on the image, when the image is in _base/.
                from compute import disk as disk_ops
                image = os.path.join(self.instances_path, "_base", instance.get("image_ref")
                                     or "-")
                disk_ops.create(disk, max(instance["root_gb"], 1) * GIB,
                                backing_file=image if os.path.isfile(image) else None)
            else:
                with open(disk, "w") as f:
                    f.write(f"godwit fake disk of {instance['uuid']} "
                            f"root_gb={instance['root_gb']}\n")
        self.fake.put("domains", instance["uuid"], self._domain_record(instance, network_info))

    def _set_power(self, instance, power_state):
        rec = self.fake.get("domains", instance["uuid"])
        if rec is None:
            raise exception.HypervisorError(host=self.host,
                                            reason=f"domain {instance['uuid']} not found")
        self.fake.put("domains", instance["uuid"], dict(rec, power_state=power_state))

    def power_off(self, instance):
        self.faults.check("power_off", instance)
        self._set_power(instance, states.SHUTDOWN)

    def power_on(self, instance):
        self.faults.check("power_on", instance)
        self._set_power(instance, states.RUNNING)

    def reboot(self, instance, network_info, block_device_info, reboot_type):
        """Counts the reboots of each type in the domain record (for tests)."""
        self.faults.check("reboot", instance)
        rec = self.fake.get("domains", instance["uuid"])
        if rec is None:
            raise exception.HypervisorError(host=self.host,
                                            reason=f"domain {instance['uuid']} not found")
        key = f"reboots_{reboot_type.lower()}"
        self.fake.put("domains", instance["uuid"],
                      dict(rec, power_state=states.RUNNING, **{key: rec.get(key, 0) + 1}))

    def destroy(self, instance, network_info, block_device_info, destroy_disks=True):
        self.faults.check("destroy", instance)
        self.fake.delete("domains", instance["uuid"])
        if destroy_disks:
            shutil.rmtree(self._instance_dir(instance), ignore_errors=True)

    def get_power_state(self, instance):
        rec = self.fake.get("domains", instance["uuid"])
        return rec["power_state"] if rec else states.NOSTATE

    # --- live migration -------------------------------------------------
    def check_can_live_migrate_destination(self, instance, block_migration):
        self.faults.check("check_can_live_migrate_destination", instance)
        probe = self.leave_shared_probe()
        return {"probe": probe, "dest_instances_path": self.instances_path,
                "block_migration": block_migration, "dest_hostname": self.host}

    def _dirty_rate(self, instance):
        """The guest's simulated page dirtying (MiB/s): its domain record's
        ``dirty_rate_mb`` (a test sets one per guest), else ``[fake]
        migration_dirty_rate_mb``."""
        rec = self.fake.get("domains", instance["uuid"]) or {}
        rate = rec.get("dirty_rate_mb")
        return self.conf.fake.migration_dirty_rate_mb if rate is None else rate

    def migration_estimate(self, instance):
        # The simulated job's own figures ([fake] migration_bandwidth_mb and the
        # guest's dirty rate): 0 bandwidth moves memory at once. A guest armed
        # with 'live_migration_converge' re-dirties its memory as fast as the
        # network carries it (fake_job): measured, that is a dirty rate of at
        # least the bandwidth, as libvirt would report it.
        f = self.conf.fake
        dirty = self._dirty_rate(instance)
        if self.faults.armed("live_migration_converge", instance):
            dirty = max(dirty, f.migration_bandwidth_mb)
        return {"bandwidth_mb_s": f.migration_bandwidth_mb or None,
                "dirty_rate_mb_s": dirty,
                "basis": "simulated by the fake driver" if f.migration_bandwidth_mb
                else "simulated by the fake driver (no bandwidth limit: at once)"}

    def check_can_live_migrate_source(self, instance, dest_check_data):
        self.faults.check("check_can_live_migrate_source", instance)
        if self.fake.get("domains", instance["uuid"]) is None:
            raise exception.MigrationPreCheckError(
                reason=f"instance {instance['uuid']} has no domain on source host {self.host}")
        dest = dest_check_data.get("dest_hostname")
        listening, uri = self._peer_listening(dest)
        if not listening:
            raise exception.MigrationPreCheckError(
                reason=f"the hypervisor on {dest} is not listening for migrations "
                       f"(connection to {uri} refused); enable its migration listener "
                       "(for libvirt: listen_tcp or TLS in libvirtd.conf)")
        shared, block = self.decide_storage(instance, dest, dest_check_data)
        return dict(dest_check_data, is_shared_instance_path=shared, block_migration=block,
                    source_instances_path=self.instances_path)

    def pre_live_migration(self, instance, block_device_info, network_info, migrate_data):
        self.faults.check("pre_live_migration", instance)
        if not migrate_data.get("is_shared_instance_path"):
            d = self._instance_dir(instance)
            os.makedirs(d, exist_ok=True)
            # Block migration streams into a disk that must exist beforehand.
            open(os.path.join(d, "disk"), "a").close()
        return migrate_data

    def live_migration(self, instance, dest, migrate_data, params):
        self.faults.check("live_migration", instance)
        if self.fake.get("domains", instance["uuid"]) is None:
            raise exception.HypervisorError(host=self.host,
                                            reason=f"domain {instance['uuid']} not found")
        disk = os.path.join(self._instance_dir(instance), "disk")
        f = self.conf.fake
        spec = {"migration_id": migrate_data.get("migration_id"), "source": self.host,
                "dest": dest, "hosts_path": f.hosts_path, "host_dir": self.fake.root,
                "instance": {k: instance[k] for k in ("uuid", "memory_mb")},
                "source_instances_path": self.instances_path,
                "dest_instances_path": migrate_data.get("dest_instances_path"),
                "block_migration": bool(migrate_data.get("block_migration")),
                "disk_total": (os.path.getsize(disk) if migrate_data.get("block_migration")
                               and os.path.exists(disk) else 0),
                "params": dict(params), "network_mb": f.migration_bandwidth_mb,
                "dirty_rate_mb": self._dirty_rate(instance), "faults": list(f.faults)}
        job = fake_job.start(spec, f.migration_job_runner)
        if params.get("parallel_connections"):
            # The simulated network is one pipe: parallel connections change
            # nothing but what the timeline says was used, as libvirt's would.
            job.used = {"parallel_connections": params["parallel_connections"]}
        return job

    def find_migration_job(self, instance):
        return fake_job.find(self.host, self.fake.root, instance["uuid"])

    def list_domains(self):
        return [dict(self.inspect_instance({"uuid": key}), instance_uuid=key)
                for key in self.fake.keys("domains")]

    def remove_domain(self, instance_uuid):
        found = self.inspect_instance({"uuid": instance_uuid})
        if found["active"]:
            raise exception.GuestRunningHere(action="removal of an orphan domain",
                                             instance_id=instance_uuid, host=self.host,
                                             state="running")
        self.fake.delete("domains", instance_uuid)

    def inspect_instance(self, instance):
        rec = self.fake.get("domains", instance["uuid"])
        if rec is None:
            return {"defined": False, "active": False, "incoming": False,
                    "persistent": False, "power_state": states.NOSTATE}
        shell = bool(rec.get("incoming") or rec.get("switched_out"))
        return {"defined": True, "incoming": bool(rec.get("incoming")),
                "persistent": bool(rec.get("persistent", True)),
                "power_state": rec.get("power_state", states.NOSTATE),
                "active": not shell and rec.get("power_state") in (states.RUNNING,
                                                                   states.PAUSED_POWER)}

    def post_live_migration_at_source(self, instance, block_device_info, migrate_data):
        self.faults.check("post_live_migration_at_source", instance)
        self.fake.delete("domains", instance["uuid"])

    def post_live_migration_at_destination(self, instance, network_info, block_device_info,
                                           migrate_data):
        self.faults.check("post_live_migration_at_destination", instance)
        rec = self.fake.get("domains", instance["uuid"])
        if rec is None:
            raise exception.HypervisorError(
                host=self.host, reason=f"domain {instance['uuid']} did not arrive")
        # A guest paused to force completion runs again once it has arrived.
        self.fake.put("domains", instance["uuid"],
                      dict(rec, persistent=True, power_state=states.RUNNING))

    def rollback_live_migration_at_destination(self, instance, network_info,
                                               block_device_info, destroy_disks,
                                               migrate_data):
        self.faults.check("rollback_live_migration_at_destination", instance)
        self.fake.delete("domains", instance["uuid"])
        if destroy_disks and not migrate_data.get("is_shared_instance_path"):
            shutil.rmtree(self._instance_dir(instance), ignore_errors=True)

    def cleanup_source_files(self, instance, migrate_data):
        self.faults.check("cleanup_source_files", instance)
        if not migrate_data.get("is_shared_instance_path"):
            shutil.rmtree(self._instance_dir(instance), ignore_errors=True)
