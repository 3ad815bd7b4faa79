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
import time
import uuid

from oslo_log import log as logging

from compute.fake_host import FakeHost
from compute.fault_injection import FaultInjector
from compute.virt import base
from godwit import exception, states

LOG = logging.getLogger(__name__)
PROBE_PREFIX = ".godwit-shared-probe-"


class FakeDriver(base.VirtDriver):
    def __init__(self, conf, host, instances_path):
        super().__init__(conf, host, instances_path)
        self.fake = FakeHost(conf.fake.hosts_path, host)
        self.faults = FaultInjector(host, self.fake.root, conf.fake.faults)
        os.makedirs(instances_path, exist_ok=True)

    def cleanup_host(self):
        self.faults.stopping.set()

    def _instance_dir(self, instance, base_path=None):
        return os.path.join(base_path or self.instances_path, instance["uuid"])

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
        self.faults.check("spawn")
        d = self._instance_dir(instance)
        os.makedirs(d, exist_ok=True)
        disk = os.path.join(d, "disk")
        if not os.path.exists(disk):
            with open(disk, "w") as f:
                f.write(f"godwit fake disk of {instance['uuid']} root_gb={instance['root_gb']}\n")
        self.fake.put("domains", instance["uuid"], self._domain_record(instance, network_info))

    def destroy(self, instance, network_info, block_device_info, destroy_disks=True):
        self.faults.check("destroy")
        self.fake.delete("domains", instance["uuid"])
        if destroy_disks:
            shutil.rmtree(self._instance_dir(instance), ignore_errors=True)

    def get_power_state(self, instance):
        rec = self.fake.get("domains", instance["uuid"])
        return rec["power_state"] if rec else states.NOSTATE

    # --- live migration -------------------------------------------------
    def check_can_live_migrate_destination(self, instance, block_migration):
        self.faults.check("check_can_live_migrate_destination")
        probe = PROBE_PREFIX + uuid.uuid4().hex
        with open(os.path.join(self.instances_path, probe), "w") as f:
            f.write(self.host)
        return {"probe": probe, "dest_instances_path": self.instances_path,
                "block_migration": block_migration}

    def cleanup_live_migration_destination_check(self, dest_check_data):
        probe = dest_check_data.get("probe")
        if probe:
            try:
                os.unlink(os.path.join(self.instances_path, probe))
            except FileNotFoundError:
                pass

    def check_can_live_migrate_source(self, instance, dest_check_data):
        self.faults.check("check_can_live_migrate_source")
        if self.fake.get("domains", instance["uuid"]) is None:
            raise exception.MigrationPreCheckError(
                reason=f"instance {instance['uuid']} has no domain on source host {self.host}")
        probe = dest_check_data.get("probe") or ""
        shared = bool(probe) and os.path.exists(os.path.join(self.instances_path, probe))
        block = dest_check_data.get("block_migration")
        if block == "auto" or block is None:
            block = not shared
        if block and shared:
            raise exception.MigrationPreCheckError(
                reason=f"block migration was requested but {self.host} and the destination "
                       "share the instance directory; migrate without block migration")
        if not block and not shared:
            raise exception.MigrationPreCheckError(
                reason=f"{self.host} and the destination do not share the instance directory "
                       "(the destination's probe file is not visible here); use block "
                       "migration")
        if block and instance.get("config_drive"):
            raise exception.MigrationPreCheckError(
                reason="the instance has a config drive, which cannot be block-migrated")
        return dict(dest_check_data, is_shared_instance_path=shared, block_migration=block,
                    source_instances_path=self.instances_path)

    def pre_live_migration(self, instance, block_device_info, network_info, migrate_data):
        self.faults.check("pre_live_migration")
        if not migrate_data.get("is_shared_instance_path"):
            d = self._instance_dir(instance)
            os.makedirs(d, exist_ok=True)
            # Block migration streams into a disk that must exist beforehand.
            open(os.path.join(d, "disk"), "a").close()
        return migrate_data

    def live_migration(self, instance, dest, migrate_data, monitor):
        self.faults.check("live_migration")
        rec = self.fake.get("domains", instance["uuid"])
        if rec is None:
            raise exception.HypervisorError(host=self.host,
                                            reason=f"domain {instance['uuid']} not found")
        self._simulate_transfer(instance, monitor)
        dest_host = FakeHost(self.conf.fake.hosts_path, dest)
        dest_dir = self._instance_dir(instance, migrate_data.get("dest_instances_path"))
        if migrate_data.get("block_migration"):
            src = os.path.join(self._instance_dir(instance), "disk")
            shutil.copyfile(src, os.path.join(dest_dir, "disk"))
        rec = dict(rec, disk=os.path.join(dest_dir, "disk"), persistent=False)
        self.faults.check("live_migration_switch")
        dest_host.put("domains", instance["uuid"], rec)
        self.fake.delete("domains", instance["uuid"])

    def _simulate_transfer(self, instance, monitor):
        """Send memory in rounds at the configured bandwidth, reporting progress."""
        bandwidth = self.conf.fake.migration_bandwidth_mb
        total = instance["memory_mb"] * 1024 * 1024
        if bandwidth <= 0:
            monitor.report(memory_total=total, memory_processed=total, memory_remaining=0)
            return
        dirty = self.conf.fake.migration_dirty_rate_mb * 1024 * 1024
        rate = bandwidth * 1024 * 1024
        tick = 0.05
        processed, remaining = 0, total
        while remaining > 0:
            if monitor.should_abort():
                raise exception.HypervisorError(host=self.host,
                                                reason="migration job cancelled by client")
            time.sleep(tick)
            sent = min(remaining, rate * tick)
            processed += sent
            remaining = max(0, remaining - sent + min(dirty * tick, processed))
            monitor.report(memory_total=total, memory_processed=int(processed),
                           memory_remaining=int(remaining))

    def post_live_migration_at_source(self, instance, block_device_info, migrate_data):
        self.faults.check("post_live_migration_at_source")
        self.fake.delete("domains", instance["uuid"])

    def post_live_migration_at_destination(self, instance, network_info, block_device_info,
                                           migrate_data):
        self.faults.check("post_live_migration_at_destination")
        rec = self.fake.get("domains", instance["uuid"])
        if rec is None:
            raise exception.HypervisorError(
                host=self.host, reason=f"domain {instance['uuid']} did not arrive")
        self.fake.put("domains", instance["uuid"], dict(rec, persistent=True))

    def rollback_live_migration_at_destination(self, instance, network_info,
                                               block_device_info, destroy_disks,
                                               migrate_data):
        self.faults.check("rollback_live_migration_at_destination")
        self.fake.delete("domains", instance["uuid"])
        if destroy_disks and not migrate_data.get("is_shared_instance_path"):
            shutil.rmtree(self._instance_dir(instance), ignore_errors=True)

    def cleanup_source_files(self, instance, migrate_data):
        self.faults.check("cleanup_source_files")
        if not migrate_data.get("is_shared_instance_path"):
            shutil.rmtree(self._instance_dir(instance), ignore_errors=True)
