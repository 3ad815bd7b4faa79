"""Volumes attached by the host's kernel through os-brick (iSCSI, NFS, FC, ...).

For hosts with a kernel initiator, the way Nova attaches Cinder volumes: the
BDM's stored connection_info (``{"driver_volume_type": "iscsi", "data":
{...}}``, as a volume service's initialize_connection returns it for
:meth:`OsBrickVolumeDriver.connector_properties`) goes to os-brick's connector
for that protocol, which logs in and waits for the block device;
connect_volume() returns the same connection_info with ``data.device_path``
set (libvirt: ``<disk type='block'>``). disconnect_volume() hands the device
back to the connector; it is quiet when the ledger has no connection.

Before calling os-brick the driver checks that the kernel can do the protocol
at all, because os-brick would otherwise retry for a long while and end with
a generic VolumeDeviceNotFound: without ``/sys/class/iscsi_transport`` (the
kernel's scsi_transport_iscsi) the error says "no kernel iSCSI initiator on
this host" and points to the iscsi_qemu driver, whose QEMU initiator needs no
kernel support. On the machines Godwit is developed and tested on that is the
case (no SCSI, no iSCSI, no NFS client in the kernel), so a real attach could
not be run there: see docs/host-drivers.md.

os-brick runs its privileged commands through oslo.privsep; as in the ovs VIF
driver the agent is root and the context runs in-process (no sudo). Its
inter-process locks go to ``[os_brick] lock_path``, set on the global
``cfg.CONF`` because os-brick reads only that.
"""

import os
import shutil
import socket
import threading

from oslo_config import cfg
from oslo_log import log as logging

from compute.volume import base, connections

LOG = logging.getLogger(__name__)

_setup_lock = threading.Lock()


def _setup_os_brick(lock_path):
    from os_brick import opts as brick_opts
    from os_brick import privileged

    with _setup_lock:
        for context in (privileged.default, privileged.brick_privsep_hide_output):
            if context.client_mode:
                context.set_client_mode(False)
        os.makedirs(lock_path, exist_ok=True)
        cfg.CONF.register_opts(brick_opts._opts, group="os_brick")  # idempotent
        cfg.CONF.set_override("lock_path", lock_path, group="os_brick")


class OsBrickVolumeDriver(base.VolumeDriver):
    """Kernel-attached volumes through os-brick (entry point ``os_brick``)."""

    #: Where the kernel shows support for a protocol: (path, kind, what is missing).
    KERNEL_SUPPORT = {
        "ISCSI": ("/sys/class/iscsi_transport", "dir",
                  "no kernel iSCSI initiator on this host (/sys/class/iscsi_transport is "
                  "missing: the kernel has no scsi_transport_iscsi/iscsi_tcp). QEMU's own "
                  "initiator needs no kernel support: use the iscsi_qemu volume driver"),
        "NFS": ("/proc/filesystems", "nfs",
                "no NFS client in this host's kernel (/proc/filesystems lists no nfs)"),
        "FIBRE_CHANNEL": ("/sys/class/fc_host", "dir",
                          "no Fibre Channel host adapter on this host (/sys/class/fc_host "
                          "is missing)"),
    }
    #: Commands a protocol's connector runs: (command, package).
    TOOLS = {"ISCSI": ("iscsiadm", "open-iscsi"), "NFS": ("mount.nfs", "nfs-common")}

    def __init__(self, conf, host):
        super().__init__(conf, host)
        group = conf.os_brick
        self.use_multipath = group.use_multipath
        self.device_scan_attempts = group.device_scan_attempts
        self.ledger = connections.ConnectionLedger(conf.state_path, host)
        _setup_os_brick(group.lock_path)
        self._connectors = {}

    # --- os-brick ---------------------------------------------------------------
    def connector_properties(self):
        """This host's initiator properties, for a volume service's initialize_connection."""
        from os_brick.initiator import connector

        try:
            my_ip = socket.gethostbyname(socket.gethostname())
        except OSError:
            my_ip = "127.0.0.1"
        return connector.get_connector_properties(
            None, my_ip, self.use_multipath, enforce_multipath=False, host=self.host)

    def connector(self, protocol):
        from os_brick.initiator import connector

        protocol = protocol.upper()
        if protocol not in self._connectors:
            self._connectors[protocol] = connector.InitiatorConnector.factory(
                protocol, None, use_multipath=self.use_multipath,
                device_scan_attempts=self.device_scan_attempts)
        return self._connectors[protocol]

    def host_support_problem(self, protocol):
        """Why this host cannot attach ``protocol`` volumes, or None."""
        protocol = protocol.upper()
        if protocol in self.KERNEL_SUPPORT:
            path, kind, problem = self.KERNEL_SUPPORT[protocol]
            if kind == "dir":
                if not os.path.isdir(path):
                    return problem
            else:
                try:
                    with open(path) as f:
                        if kind not in f.read().split():
                            return problem
                except OSError:
                    return problem
        if protocol in self.TOOLS:
            tool, package = self.TOOLS[protocol]
            if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")):
                return f"{tool} is missing on this host (install {package})"
        return None

    # --- the driver interface ---------------------------------------------------
    def _fail(self, bdm, reason):
        return connections.VolumeConnectFailed(volume_id=bdm.get("volume_id"),
                                               host=self.host, reason=reason)

    def connect_volume(self, instance, bdm):
        stored = connections.stored_connection_info(bdm)
        protocol = stored.get("driver_volume_type")
        if not protocol:
            raise self._fail(bdm, "the BDM's connection_info has no driver_volume_type")
        data = connections.stored_data(bdm)
        problem = self.host_support_problem(protocol)
        if problem:
            raise self._fail(bdm, problem)
        try:
            device = self.connector(protocol).connect_volume(data)
        except Exception as e:
            LOG.exception("os-brick could not connect volume %s", bdm.get("volume_id"))
            raise self._fail(bdm, f"os-brick {protocol.upper()} connector: {type(e).__name__}: "
                                  f"{e}") from e
        info = {"driver_volume_type": protocol,
                "data": dict(data, device_path=device.get("path"),
                             volume_id=bdm.get("volume_id"))}
        self.ledger.record(instance, bdm, "os_brick", dict(info, device_info=device))
        LOG.info("Volume %s of %s attached on %s as %s", bdm.get("volume_id"),
                 instance["uuid"], self.host, device.get("path"))
        return info

    def list_connections(self):
        """The connections this host's ledger records for this driver (each entry
        keeps os-brick's device_info, which disconnect_volume hands back to the
        connector)."""
        return [{"instance_uuid": e["instance_uuid"], "volume_id": e["volume_id"]}
                for e in self.ledger.entries() if e.get("driver") == "os_brick"]

    def disconnect_volume(self, instance, bdm):
        entry = self.ledger.get(instance, bdm)
        if entry is None:
            return
        info = entry["connection_info"]
        try:
            self.connector(info["driver_volume_type"]).disconnect_volume(
                info["data"], info.get("device_info"))
        except Exception as e:
            LOG.exception("os-brick could not disconnect volume %s", bdm.get("volume_id"))
            raise connections.VolumeConnectFailed(
                volume_id=bdm.get("volume_id"), host=self.host,
                reason=f"disconnecting through os-brick: {type(e).__name__}: {e}") from e
        self.ledger.forget(instance, bdm)
