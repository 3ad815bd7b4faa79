"""Cold migration and resize for the libvirt driver (a mixin of LibvirtDriver).

Nova's libvirt layout and order, on this driver's files (``<instances_path>/
<uuid>/disk``, a qcow2, and ``console.log``):

* **source** (:meth:`~LibvirtColdMigration.migrate_disk_and_power_off`): the
  destination's instance directory is created first (an unreachable
  destination fails here, before the guest stops, as in Nova); the
  guest is powered off - asked first through its ACPI power button, destroyed
  after ``[DEFAULT] shutdown_timeout`` seconds if it is still running (a TCG
  guest sitting in SeaBIOS, or any guest without ACPI handling, never stops on
  its own); the instance directory is renamed to ``<uuid>_resize`` (the
  originals, kept for a revert); each of the domain's file disks in that
  directory except swap is flattened if it has a backing file
  (:func:`compute.disk.flatten`) and copied through the transfer driver to
  ``<destination instances_path>/<uuid>/``. The domain stays defined, shut
  off, until confirm - as in Nova.
* **destination** (:meth:`~LibvirtColdMigration.finish_migration`): the root
  disk grows to the new flavor (:func:`compute.disk.resize`, never shrinks),
  the domain is built by the driver's own XML builder with the new flavor's
  memory and vCPUs and this host's cache mode, NICs and volumes, defined, and
  started if the guest was running.
* **confirm** (source): the old domain is undefined (not on a same-host
  resize, where it is the new one) and ``<uuid>_resize`` deleted.
* **revert** (source, after the destination's teardown): ``<uuid>_resize``
  becomes the instance directory again and the domain is defined with the old
  flavor, started if it was running.
* **failed copy** (source): the partial copy on the destination is removed
  through the transfer driver and the originals are moved back - even when the
  removal fails (an unreachable destination), so that the guest can start
  again here; the removal's error is raised afterwards, for the report.

Every method is idempotent: a repeated call finds its work done and returns.
The console log is not copied (Nova does not either): the destination starts a
new one, the old one goes with ``<uuid>_resize``.
"""

import os
import shutil
import time

import libvirt
from oslo_log import log as logging

from compute import disk as disk_ops
from compute.virt.libvirt import config
from godwit import exception

LOG = logging.getLogger(__name__)
GIB = 1024 ** 3
RESIZE_SUFFIX = "_resize"
FLAT_SUFFIX = ".flat"
SHUTDOWN_POLL_INTERVAL = 0.1


def _root_bytes(flavor):
    """The root disk's virtual size for a flavor (1 GiB for root_gb 0, as spawn makes it)."""
    return max(flavor.get("root_gb") or 0, 1) * GIB


def _is_swap(name):
    return name == "disk.swap" or name.startswith("disk.swap.")


class LibvirtColdMigration:
    """LibvirtDriver's cold migration and resize (uses the driver's ``hosts``,
    ``_instance_dir``, ``_domain_xml``, ``_remove_domain`` and ``power_off``)."""

    @property
    def clean_shutdown_timeout(self):
        """Seconds a guest gets to act on the ACPI power button before it is destroyed
        (``[DEFAULT] shutdown_timeout``, as in Nova). The destroy is
        virDomainDestroy: SIGTERM to QEMU (which flushes its disk caches and
        exits), SIGKILL only if QEMU does not exit."""
        return self.conf.shutdown_timeout

    def _resize_dir(self, instance):
        return self._instance_dir(instance) + RESIZE_SUFFIX

    # --- destination: prep_resize -------------------------------------------------
    def check_can_receive(self, instance, new_flavor):
        self.hosts.get_connection()  # libvirtd answers (HypervisorError naming the URI)
        need = _root_bytes(new_flavor) + (new_flavor.get("ephemeral_gb") or 0) * GIB
        free = shutil.disk_usage(self.instances_path).free
        if need > free:
            raise exception.HostCapacityExceeded(
                host=self.host, resource=f"disk space in {self.instances_path}",
                needed=f"{need / GIB:g} GiB", free=f"{free / GIB:.1f} GiB")

    # --- source: power off and copy ---------------------------------------------------
    def _disk_names(self, instance):
        """File names of the domain's local disks (not swap), or None without a domain.

        :raises HypervisorError: a file disk lies outside the instance
            directory, which this driver cannot move.
        """
        dom = self.hosts.lookup(instance["uuid"])
        if dom is None:
            return None
        try:
            xml = dom.XMLDesc(0)
        except libvirt.libvirtError as e:
            raise exception.HypervisorError(host=self.host, reason=str(e)) from e
        inst_dir = os.path.normpath(self._instance_dir(instance))
        names = []
        for path in config.disk_files(xml):
            if os.path.dirname(os.path.normpath(path)) != inst_dir:
                raise exception.HypervisorError(
                    host=self.host,
                    reason=f"disk {path} of {instance['uuid']} is outside its instance "
                           f"directory {inst_dir}; the libvirt driver can only move disks "
                           "that lie there")
            name = os.path.basename(path)
            if not _is_swap(name):
                names.append(name)
        return names

    def _power_off_cleanly(self, instance, timeout):
        """Shut the guest down: ACPI power button, then destroy after ``timeout`` s.

        :returns: "not running", "clean" or "destroyed".
        :raises HypervisorError: the guest still runs after destroy.
        """
        dom = self.hosts.lookup(instance["uuid"])
        try:
            if dom is None or not dom.isActive():
                return "not running"
            try:
                dom.shutdown()
            except libvirt.libvirtError as e:
                LOG.info("Guest %s refused a clean shutdown (%s); destroying it",
                         instance["uuid"], e)
            else:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if not dom.isActive():
                        return "clean"
                    time.sleep(SHUTDOWN_POLL_INTERVAL)
            try:
                dom.destroy()
            except libvirt.libvirtError:
                if dom.isActive():
                    raise
            return "destroyed"
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return "not running"
            raise exception.HypervisorError(
                host=self.host, reason=f"cannot power off {instance['uuid']}: {e}") from e

    def migrate_disk_and_power_off(self, instance, migration, dest_info, new_flavor,
                                   transfer):
        uuid = instance["uuid"]
        names = self._disk_names(instance)  # refuses before anything changes
        dest_dir = os.path.join(dest_info["instances_path"], uuid)
        address = dest_info["address"]
        # As Nova: the destination directory first, so that an unreachable or
        # refusing destination fails before the guest is stopped.
        transfer.make_dir(address, dest_dir)
        started = time.monotonic()
        how = self._power_off_cleanly(instance, self.clean_shutdown_timeout)
        powered_off = time.monotonic()
        inst_dir, resize_dir = self._instance_dir(instance), self._resize_dir(instance)
        if os.path.isdir(inst_dir) and not os.path.exists(resize_dir):
            os.rename(inst_dir, resize_dir)  # the originals, kept for a revert
        elif not os.path.isdir(resize_dir):
            raise exception.HypervisorError(
                host=self.host, reason=f"no files of instance {uuid} in {self.instances_path}")
        if names is None:  # no domain (should not happen): every disk file there
            names = sorted(n for n in os.listdir(resize_dir)
                           if (n == "disk" or n.startswith("disk.")) and not _is_swap(n)
                           and not n.endswith((FLAT_SUFFIX, ".part")))
        # Again: on a same-host resize or shared storage the rename just took it.
        transfer.make_dir(address, dest_dir)
        disk_info, sent = [], 0
        for name in names:
            src = os.path.join(resize_dir, name)
            if not os.path.isfile(src):
                raise exception.HypervisorError(
                    host=self.host, reason=f"disk {name} of {uuid} is missing in {resize_dir}")
            info = disk_ops.info(src)
            to_send = src
            if info.get("backing_file"):  # merge the backing chain: one standalone file
                to_send = src + FLAT_SUFFIX
                info = disk_ops.flatten(src, to_send)
            try:
                transfer.copy_to(to_send, address, os.path.join(dest_dir, name))
                sent += info.get("actual_size") or 0
            finally:
                if to_send != src and os.path.exists(to_send):
                    os.unlink(to_send)
            disk_info.append({"name": name, "format": info["format"],
                              "virtual_size": info["virtual_size"]})
        LOG.info("Cold migration of %s: guest powered off (%s) in %.1f s; %d disk(s), %d "
                 "bytes allocated, copied to %s:%s with %s in %.1f s", uuid, how,
                 powered_off - started, len(disk_info), sent, address, dest_dir,
                 getattr(transfer, "name", None) or type(transfer).__name__,
                 time.monotonic() - powered_off)
        return disk_info

    # --- destination: build the guest -----------------------------------------------
    def _define_and_start(self, instance, network_info, block_device_info, power_on):
        """Define the domain from this host's XML for ``instance``; start it if asked."""
        try:
            xml = self._domain_xml(instance, network_info, block_device_info)
            dom = self.hosts.get_connection().defineXML(xml)  # replaces a definition
            if power_on and not dom.isActive():
                dom.create()
        except (libvirt.libvirtError, ValueError) as e:
            raise exception.HypervisorError(
                host=self.host, reason=f"cannot define or start the domain of "
                                       f"{instance['uuid']}: {e}") from e

    def finish_migration(self, instance, migration, disk_info, network_info,
                         block_device_info, new_flavor, power_on):
        inst_dir = self._instance_dir(instance)
        root = os.path.join(inst_dir, "disk")
        for d in disk_info:
            path = os.path.join(inst_dir, d["name"])
            if not os.path.isfile(path):
                raise exception.HypervisorError(host=self.host,
                                                reason=f"disk {path} did not arrive")
        if not os.path.isfile(root):
            raise exception.HypervisorError(host=self.host,
                                            reason=f"root disk {root} did not arrive")
        dom = self.hosts.lookup(instance["uuid"])
        if dom is None or not dom.isActive():  # running: grown before a previous start
            disk_ops.resize(root, _root_bytes(new_flavor))  # DiskShrinkRefused if smaller
        resized = dict(instance, memory_mb=new_flavor["memory_mb"], vcpus=new_flavor["vcpus"],
                       root_gb=new_flavor["root_gb"],
                       ephemeral_gb=new_flavor.get("ephemeral_gb") or 0)
        self._define_and_start(resized, network_info, block_device_info, power_on)
        LOG.info("Cold migration of %s arrived: %d MiB, %d vCPU(s), root disk %d GiB, %s",
                 instance["uuid"], resized["memory_mb"], resized["vcpus"],
                 _root_bytes(new_flavor) // GIB, "started" if power_on else "left stopped")

    # --- source: confirm or revert ----------------------------------------------------
    def confirm_migration(self, instance, migration):
        if migration["source_compute"] != migration["dest_compute"]:
            self._remove_domain(instance)  # on a same-host resize it is the new one
        resize_dir = self._resize_dir(instance)
        try:
            shutil.rmtree(resize_dir)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise exception.HypervisorError(
                host=self.host, reason=f"cannot delete {resize_dir}: {e}") from e

    def finish_revert_migration(self, instance, migration, network_info, block_device_info,
                                power_on):
        inst_dir, resize_dir = self._instance_dir(instance), self._resize_dir(instance)
        if os.path.isdir(resize_dir):
            # No guest may run on the files being replaced (a same-host resize's).
            self.power_off(instance)
            if os.path.lexists(inst_dir):
                shutil.rmtree(inst_dir)  # the new copy (same host) or a leftover
            os.rename(resize_dir, inst_dir)
        elif not os.path.isdir(inst_dir):
            raise exception.HypervisorError(
                host=self.host, reason=f"neither {resize_dir} nor {inst_dir} exists: the "
                                       f"files of {instance['uuid']} are gone")
        # ``instance`` carries the old flavor: the domain gets its memory and vCPUs.
        self._define_and_start(instance, network_info, block_device_info, power_on)

    def cleanup_failed_migration(self, instance, migration, dest_info, transfer):
        resize_dir = self._resize_dir(instance)
        if not os.path.isdir(resize_dir):
            # Never moved aside (nothing was copied) or already moved back. On a
            # same-host resize or shared storage the destination directory would
            # be the originals themselves: never remove it here.
            return
        dest_dir = os.path.join(dest_info["instances_path"], instance["uuid"])
        failure = None
        try:
            transfer.remove(dest_info["address"], dest_dir)
        except Exception as e:  # e.g. the destination is unreachable
            failure = e         # the originals go back all the same
        inst_dir = self._instance_dir(instance)
        if os.path.lexists(inst_dir):  # not the originals (those are in resize_dir): the
            shutil.rmtree(inst_dir)    # partial copy (same host, shared) or a leftover
        os.rename(resize_dir, inst_dir)
        if failure is not None:
            raise failure
