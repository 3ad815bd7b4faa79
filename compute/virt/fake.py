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
import threading
import time

from oslo_log import log as logging

from compute import fault_injection
from compute.fake_host import FakeHost
from compute.virt import base
from compute.virt.fake_cold import GIB, FakeColdMigration
from godwit import exception, states

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
        self.faults.check("power_off")
        self._set_power(instance, states.SHUTDOWN)

    def power_on(self, instance):
        self.faults.check("power_on")
        self._set_power(instance, states.RUNNING)

    def reboot(self, instance, network_info, block_device_info, reboot_type):
        """Counts the reboots of each type in the domain record (for tests)."""
        self.faults.check("reboot")
        rec = self.fake.get("domains", instance["uuid"])
        if rec is None:
            raise exception.HypervisorError(host=self.host,
                                            reason=f"domain {instance['uuid']} not found")
        key = f"reboots_{reboot_type.lower()}"
        self.fake.put("domains", instance["uuid"],
                      dict(rec, power_state=states.RUNNING, **{key: rec.get(key, 0) + 1}))

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
        probe = self.leave_shared_probe()
        return {"probe": probe, "dest_instances_path": self.instances_path,
                "block_migration": block_migration, "dest_hostname": self.host}

    def check_can_live_migrate_source(self, instance, dest_check_data):
        self.faults.check("check_can_live_migrate_source")
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
        self.faults.check("pre_live_migration")
        if not migrate_data.get("is_shared_instance_path"):
            d = self._instance_dir(instance)
            os.makedirs(d, exist_ok=True)
            # Block migration streams into a disk that must exist beforehand.
            open(os.path.join(d, "disk"), "a").close()
        return migrate_data

    def live_migration(self, instance, dest, migrate_data, params):
        self.faults.check("live_migration")
        if self.fake.get("domains", instance["uuid"]) is None:
            raise exception.HypervisorError(host=self.host,
                                            reason=f"domain {instance['uuid']} not found")
        job = FakeMigrationJob(self, instance, dest, migrate_data, params)
        job.start()
        return job

    def _switch_over(self, instance, dest, migrate_data, paused):
        """The guest now runs on ``dest``: its domain moves there."""
        rec = self.fake.get("domains", instance["uuid"])
        dest_host = FakeHost(self.conf.fake.hosts_path, dest)
        dest_dir = self._instance_dir(instance, migrate_data.get("dest_instances_path"))
        if migrate_data.get("block_migration"):
            src = os.path.join(self._instance_dir(instance), "disk")
            shutil.copyfile(src, os.path.join(dest_dir, "disk"))
        self.faults.check("live_migration_switch")
        power = states.PAUSED_POWER if paused else states.RUNNING
        dest_host.put("domains", instance["uuid"],
                      dict(rec, disk=os.path.join(dest_dir, "disk"), persistent=False,
                           power_state=power))
        self.fake.delete("domains", instance["uuid"])

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
        # A guest paused to force completion runs again once it has arrived.
        self.fake.put("domains", instance["uuid"],
                      dict(rec, persistent=True, power_state=states.RUNNING))

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


MIB = 1024 * 1024


class FakeMigrationJob(base.MigrationJob):
    """A simulated pre-copy migration with the behaviour the monitor must handle.

    Memory goes out in rounds at the effective bandwidth (the fake network's
    ``[fake] migration_bandwidth_mb``, capped by set_max_speed); meanwhile the
    guest dirties ``[fake] migration_dirty_rate_mb`` MiB/s, so remaining data
    shrinks only when the bandwidth is higher. The switch-over happens once
    the remaining data fits in the allowed downtime. Pausing stops the
    dirtying; post-copy switches at once and pulls the rest afterwards;
    auto-converge throttles the dirty rate by 20 % more each round that makes
    no headway. With no bandwidth configured the transfer is instant.
    """

    TICK = 0.01

    def __init__(self, driver, instance, dest, migrate_data, params):
        super().__init__()
        self.driver = driver
        self.instance = instance
        self.dest = dest
        self.migrate_data = migrate_data
        conf = driver.conf.fake
        self.network = conf.migration_bandwidth_mb * MIB
        self.max_speed = (params.get("bandwidth_mib") or 0) * MIB
        self.dirty_rate = conf.migration_dirty_rate_mb * MIB
        self.max_downtime_ms = params.get("max_downtime_ms") or 500
        self.auto_converge = bool(params.get("auto_converge"))
        self.memory_total = instance["memory_mb"] * MIB
        disk = os.path.join(driver._instance_dir(instance), "disk")
        self.disk_total = (os.path.getsize(disk) if migrate_data.get("block_migration")
                           and os.path.exists(disk) else 0)
        self.remaining = self.memory_total + self.disk_total
        self.processed = 0
        self.iteration = 1
        self.throttle = 0.0
        self.paused = False
        self.post_copy = False
        self.downtime_ms = None
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"fake-migration-{instance['uuid'][:8]}")

    def start(self):
        self._thread.start()

    def _rate(self):
        rates = [r for r in (self.network, self.max_speed) if r > 0]
        return min(rates) if rates else 0

    def _run(self):
        try:
            self._transfer()
            if self._abort.is_set():
                raise exception.HypervisorError(
                    host=self.driver.host, reason="migration job cancelled by client")
            self.driver._switch_over(self.instance, self.dest, self.migrate_data,
                                     self.paused)
        except Exception as e:  # the monitor reads it through result()
            self._error = e
        finally:
            self._done.set()

    def _transfer(self):
        round_left = self.remaining
        progress_at_round_start = self.remaining
        while not self._abort.is_set():
            with self._lock:
                rate = self._rate()
                if rate == 0:  # instant
                    self.processed += self.remaining
                    self.remaining = 0
                    return
                expected_ms = self.remaining / rate * 1000
                if self.post_copy or expected_ms <= self.max_downtime_ms:
                    self.downtime_ms = min(expected_ms, self.max_downtime_ms)
                    pause_for = 0 if self.post_copy else expected_ms / 1000
                    break
                sent = min(self.remaining, rate * self.TICK)
                dirtied = 0 if self.paused else \
                    self.dirty_rate * (1 - self.throttle) * self.TICK
                self.processed += sent
                self.remaining = min(self.memory_total + self.disk_total,
                                     self.remaining - sent + dirtied)
                round_left -= sent
                if round_left <= 0:  # a full pass over what was dirty
                    self.iteration += 1
                    if self.auto_converge and self.remaining >= progress_at_round_start:
                        self.throttle = min(0.99, self.throttle + 0.2)
                    progress_at_round_start = self.remaining
                    round_left = self.remaining
            time.sleep(self.TICK)
        else:
            return
        time.sleep(pause_for)
        with self._lock:
            self.processed += self.remaining
            self.remaining = 0

    def stats(self):
        with self._lock:
            mem_share = self.memory_total / max(self.memory_total + self.disk_total, 1)
            rem_mem = int(self.remaining * mem_share)
            rate = self._rate()
            return {"memory_total": self.memory_total,
                    "memory_remaining": rem_mem,
                    "memory_processed": int(self.processed * mem_share),
                    "disk_total": self.disk_total,
                    "disk_remaining": int(self.remaining - rem_mem),
                    "disk_processed": int(self.processed * (1 - mem_share)),
                    "iteration": self.iteration,
                    "dirty_rate": 0 if self.paused else int(self.dirty_rate *
                                                            (1 - self.throttle)),
                    "bandwidth": rate,
                    "expected_downtime_ms": int(self.remaining / rate * 1000) if rate else 0,
                    "post_copy": self.post_copy, "paused": self.paused,
                    "throttle": self.throttle}

    def set_max_downtime(self, ms):
        with self._lock:
            self.max_downtime_ms = ms

    def set_max_speed(self, mib_per_s):
        with self._lock:
            self.max_speed = mib_per_s * MIB

    def abort(self):
        self._abort.set()

    def pause(self):
        with self._lock:
            self.paused = True

    def start_post_copy(self):
        with self._lock:
            self.post_copy = True

