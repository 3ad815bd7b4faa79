"""The fake driver's cold migration and resize, on real files.

Nova's layout: the source moves the instance directory aside to
``<uuid>_resize`` (kept until confirm, for a revert), flattens qcow2 disks onto
their backing file and copies every non-swap disk to the destination's
``<uuid>`` directory through the transfer driver; the destination grows the
disk to the new flavor and defines the domain. Disks are real qcow2 images
when ``[fake] disk_format = qcow2``.
"""

import os
import shutil

from godwit import exception, states, validate

GIB = 1024 ** 3


def _is_qcow2(path):
    with open(path, "rb") as f:
        return f.read(4) == b"QFI\xfb"


class FakeColdMigration:
    """FakeDriver's cold migration (a mixin: it uses the driver's host, faults
    and helpers)."""

    def _resize_dir(self, instance):
        return validate.instance_dir(self.instances_path, instance["uuid"], "_resize")

    def check_can_receive(self, instance, new_flavor):
        self.faults.check("prep_resize", instance)
        free_gb = shutil.disk_usage(self.instances_path).free // GIB
        need_gb = new_flavor["root_gb"] + new_flavor["ephemeral_gb"]
        if self.conf.fake.disk_format == "qcow2" and need_gb > free_gb:
            raise exception.HostCapacityExceeded(host=self.host, resource="disk space",
                                                 needed=f"{need_gb} GiB",
                                                 free=f"{free_gb} GiB")

    def migrate_disk_and_power_off(self, instance, migration, dest_info, new_flavor,
                                   transfer):
        from compute import disk as disk_ops
        self.faults.check("migrate_disk_and_power_off", instance)
        self._set_power(instance, states.SHUTDOWN)
        inst_dir, resize_dir = self._instance_dir(instance), self._resize_dir(instance)
        if os.path.isdir(inst_dir) and not os.path.exists(resize_dir):
            os.rename(inst_dir, resize_dir)  # the originals, kept for a revert
        elif not os.path.isdir(resize_dir):
            raise exception.HypervisorError(
                host=self.host, reason=f"no files of instance {instance['uuid']}")
        dest_dir = validate.instance_dir(dest_info["instances_path"], instance["uuid"])
        transfer.make_dir(dest_info["address"], dest_dir)
        disk_info = []
        for name in sorted(os.listdir(resize_dir)):
            src = os.path.join(resize_dir, name)
            if name.startswith("disk.swap") or name.endswith(".flat") or \
                    not os.path.isfile(src):
                continue  # swap is made anew; .flat files are ours in flight
            to_send, fmt, size = src, "file", os.path.getsize(src)
            if _is_qcow2(src):
                fmt = "qcow2"
                info = disk_ops.info(src)
                size = info["virtual_size"]
                if info.get("backing_file"):  # merge the backing chain first
                    to_send = src + ".flat"
                    disk_ops.flatten(src, to_send)
            try:
                self.faults.check("disk_transfer", instance)
                transfer.copy_to(to_send, dest_info["address"], os.path.join(dest_dir, name))
            finally:
                if to_send != src and os.path.exists(to_send):
                    os.unlink(to_send)
            disk_info.append({"name": name, "format": fmt, "virtual_size": size})
        return disk_info

    def finish_migration(self, instance, migration, disk_info, network_info,
                         block_device_info, new_flavor, power_on):
        from compute import disk as disk_ops
        self.faults.check("finish_migration", instance)
        inst_dir = self._instance_dir(instance)
        for d in disk_info:
            path = os.path.join(inst_dir, d["name"])
            if not os.path.exists(path):
                raise exception.HypervisorError(host=self.host,
                                                reason=f"disk {path} did not arrive")
            if d["format"] == "qcow2" and d["name"] == "disk":
                disk_ops.resize(path, max(new_flavor["root_gb"], 1) * GIB)
        resized = dict(instance, memory_mb=new_flavor["memory_mb"], vcpus=new_flavor["vcpus"],
                       root_gb=new_flavor["root_gb"])
        self.fake.put("domains", instance["uuid"], self._domain_record(
            resized, network_info, states.RUNNING if power_on else states.SHUTDOWN))

    def confirm_migration(self, instance, migration):
        self.faults.check("confirm_migration", instance)
        shutil.rmtree(self._resize_dir(instance), ignore_errors=True)
        if migration["source_compute"] != migration["dest_compute"]:
            self.fake.delete("domains", instance["uuid"])

    def finish_revert_migration(self, instance, migration, network_info, block_device_info,
                                power_on):
        self.faults.check("finish_revert_migration", instance)
        inst_dir, resize_dir = self._instance_dir(instance), self._resize_dir(instance)
        if os.path.isdir(resize_dir):
            shutil.rmtree(inst_dir, ignore_errors=True)
            os.rename(resize_dir, inst_dir)
        self.fake.put("domains", instance["uuid"], self._domain_record(
            instance, network_info, states.RUNNING if power_on else states.SHUTDOWN))

    def cleanup_failed_migration(self, instance, migration, dest_info, transfer):
        dest_dir = validate.instance_dir(dest_info["instances_path"], instance["uuid"])
        transfer.remove(dest_info["address"], dest_dir)
        resize_dir = self._resize_dir(instance)
        if os.path.isdir(resize_dir):
            os.rename(resize_dir, self._instance_dir(instance))

