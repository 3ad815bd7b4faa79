"""Volumes as local block devices: a backing file on a loop device.

connect_volume() attaches the volume's backing file to a loop device with
``losetup -f --show <file>`` and returns::

    {"driver_volume_type": "block", "data": {"device_path": "/dev/loopN", ...}}

which the libvirt driver turns into ``<disk type='block'><source dev=...>``.
It is idempotent: the loop device this host's connection ledger recorded
for the volume is reused while it is still backed by the same file.
disconnect_volume() detaches that device only, and is quiet when there is
none. Devices of the same file that the ledger does not name are someone
else's - an operator's, or another host's when two hosts share a machine as
in the tests - and are left alone; only when the ledger has no entry (lost
state) does disconnect detach every loop device of the file.

The backing file is ``<[local_block] volumes_path>/volume-<volume_id>`` unless
the BDM's connection_info names one (``data.backing_file``); the driver never
creates it. The volume moves with a live migration only when both hosts see
the file at the same path (shared storage).
"""

import os
import shutil
import subprocess
import threading

from oslo_log import log as logging

from compute.volume import base, connections

LOG = logging.getLogger(__name__)

DRIVER_VOLUME_TYPE = "block"


def losetup(*args):
    tool = shutil.which("losetup") or shutil.which("losetup", path="/usr/sbin:/sbin")
    if tool is None:
        raise FileNotFoundError("losetup is missing (package mount)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def loop_devices_of(path):
    """Loop devices backed by ``path``, as losetup -j reports them."""
    proc = losetup("-j", path)
    if proc.returncode != 0:
        return []
    return [line.split(":", 1)[0] for line in proc.stdout.splitlines() if line.strip()]


class LocalBlockVolumeDriver(base.VolumeDriver):
    """Loop-device volumes (entry point ``local_block``)."""

    def __init__(self, conf, host):
        super().__init__(conf, host)
        self.volumes_path = conf.local_block.volumes_path
        self.ledger = connections.ConnectionLedger(conf.state_path, host)
        self._lock = threading.Lock()

    def backing_file(self, bdm):
        data = connections.stored_data(bdm)
        if data.get("backing_file"):
            return os.path.realpath(data["backing_file"])
        return os.path.realpath(os.path.join(self.volumes_path,
                                             f"volume-{bdm['volume_id']}"))

    def _fail(self, bdm, reason):
        return connections.VolumeConnectFailed(volume_id=bdm.get("volume_id"),
                                               host=self.host, reason=reason)

    def connect_volume(self, instance, bdm):
        path = self.backing_file(bdm)
        if not os.path.isfile(path):
            raise self._fail(bdm, f"backing file {path} does not exist on this host")
        with self._lock:
            entry = self.ledger.get(instance, bdm)
            device = self._recorded_device(entry, path) or self._attached_before_a_crash(
                entry, path)
            if device is None:
                # The ledger says what we are about to do before we do it: if the
                # agent dies right after losetup, the next connect (or the
                # reconciler) knows which device is ours (see
                # _attached_before_a_crash) instead of attaching a second one.
                self.ledger.record(instance, bdm, "local_block", {
                    "driver_volume_type": DRIVER_VOLUME_TYPE,
                    "data": {"attaching": True, "backing_file": path,
                             "devices_before": loop_devices_of(path),
                             "volume_id": bdm.get("volume_id")}})
                proc = losetup("-f", "--show", path)
                if proc.returncode != 0:
                    self.ledger.forget(instance, bdm)
                    raise self._fail(bdm, f"losetup -f --show {path} failed: "
                                          f"{proc.stderr.strip()}")
                device = proc.stdout.strip()
        info = {"driver_volume_type": DRIVER_VOLUME_TYPE,
                "data": {"device_path": device, "backing_file": path,
                         "volume_id": bdm.get("volume_id")}}
        self.ledger.record(instance, bdm, "local_block", info)
        LOG.info("Volume %s of %s attached on %s as %s", bdm.get("volume_id"),
                 instance["uuid"], self.host, device)
        return info

    @staticmethod
    def _recorded_device(entry, path):
        """The loop device a ledger entry names, if still backed by ``path``."""
        device = ((entry or {}).get("connection_info") or {}).get("data", {}).get(
            "device_path")
        return device if device and device in loop_devices_of(path) else None

    @staticmethod
    def _attached_before_a_crash(entry, path):
        """The device an interrupted connect attached: the ledger recorded which
        devices the file had before, so a single new one is ours."""
        data = ((entry or {}).get("connection_info") or {}).get("data", {})
        if not data.get("attaching"):
            return None
        new = [d for d in loop_devices_of(path) if d not in data.get("devices_before", [])]
        return new[0] if len(new) == 1 else None

    def list_connections(self):
        """The connections this host's ledger records for this driver. An entry
        still marked ``attaching`` is listed too: a connect that a crash
        interrupted may have left a loop device, which disconnect_volume finds."""
        return [{"instance_uuid": e["instance_uuid"], "volume_id": e["volume_id"]}
                for e in self.ledger.entries() if e.get("driver") == "local_block"]

    def disconnect_volume(self, instance, bdm):
        path = self.backing_file(bdm)
        with self._lock:
            entry = self.ledger.get(instance, bdm)
            if entry is not None:
                device = self._recorded_device(entry, path) or \
                    self._attached_before_a_crash(entry, path)
                devices = [device] if device else []
            else:
                devices = loop_devices_of(path)
            for device in devices:
                proc = losetup("-d", device)
                if proc.returncode != 0 and device in loop_devices_of(path):
                    raise connections.VolumeConnectFailed(
                        volume_id=bdm.get("volume_id"), host=self.host,
                        reason=f"disconnecting: losetup -d {device} failed: "
                               f"{proc.stderr.strip()}")
                LOG.info("Volume %s of %s detached from %s on %s", bdm.get("volume_id"),
                         instance["uuid"], device, self.host)
        self.ledger.forget(instance, bdm)
