"""iSCSI volumes attached by QEMU's own initiator: nothing to attach on the host.

QEMU opens an iSCSI LUN itself (libiscsi; libvirt ``<disk type='network'>
<source protocol='iscsi' name='<iqn>/<lun>'><host name=... port=...>``), the
way RBD volumes are attached, so a host needs no kernel initiator (open-iscsi,
scsi_transport_iscsi) at all. connect_volume() therefore only checks that the
volume is usable from this host before the guest needs it (in
pre_live_migration, before the switch-over): the portal accepts TCP
connections and, when libiscsi's ``iscsi-inq`` is installed and ``[iscsi_qemu]
probe_lun`` is on, the LUN answers an INQUIRY after a login. It returns the
connection_info the libvirt driver turns into that ``<disk>``::

    {"driver_volume_type": "iscsi",
     "data": {"target_portal": "127.0.0.1:3260", "target_iqn": "iqn....",
              "target_lun": 1, "volume_id": "...", (auth_* when the BDM has them)}}

The target's details come from the BDM's stored connection_info (JSON), in
that same form or flat. A BDM without them (no volume service recorded any)
is served by the target ``[iscsi_qemu] target_portal`` names, with the IQN
from ``target_iqn_format`` and the volume id, LUN ``target_lun``: how an
operator exports volumes from one tgtd box, named as Cinder names them.
disconnect_volume() only drops the ledger entry (:mod:`compute.volume.connections`):
QEMU's session ends with the guest or moves with it.
"""

import shutil
import socket
import subprocess

from oslo_log import log as logging

from compute.volume import base, connections

LOG = logging.getLogger(__name__)

DRIVER_VOLUME_TYPE = "iscsi"
_PASS_THROUGH = ("auth_method", "auth_username", "auth_password", "encrypted",
                 "qos_specs", "access_mode", "discard")


def split_portal(portal):
    """'host:port', '[v6]:port' or 'host' -> (host, port)."""
    portal = str(portal).strip()
    if portal.startswith("["):
        host, _, rest = portal[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif portal.count(":") == 1:
        host, _, port = portal.partition(":")
    else:
        host, port = portal, ""
    return host, int(port) if port else 3260


def iscsi_url(data):
    """libiscsi's URL of the LUN (what iscsi-inq and qemu-img take)."""
    host, port = split_portal(data["target_portal"])
    host = f"[{host}]" if ":" in host else host
    return f"iscsi://{host}:{port}/{data['target_iqn']}/{int(data['target_lun'])}"


class QemuIscsiVolumeDriver(base.VolumeDriver):
    """iSCSI LUNs for QEMU's initiator (entry point ``iscsi_qemu``)."""

    def __init__(self, conf, host):
        super().__init__(conf, host)
        self.ledger = connections.ConnectionLedger(conf.state_path, host)
        self.timeout = conf.iscsi_qemu.connect_timeout
        self.probe_lun = conf.iscsi_qemu.probe_lun

    def _fail(self, bdm, reason):
        return connections.VolumeConnectFailed(volume_id=bdm.get("volume_id"),
                                               host=self.host, reason=reason)

    def connection_info(self, bdm):
        stored = connections.stored_data(bdm)
        group = self.conf.iscsi_qemu
        if not stored.get("target_iqn") and group.target_portal and bdm.get("volume_id"):
            stored = dict(stored, target_portal=group.target_portal,
                          target_iqn=group.target_iqn_format % {"volume_id": bdm["volume_id"]},
                          target_lun=group.target_lun)
        missing = [k for k in ("target_portal", "target_iqn") if not stored.get(k)]
        if missing:
            raise self._fail(bdm, "the BDM's connection_info lacks " + ", ".join(missing))
        try:
            lun = int(stored.get("target_lun", 0))
            split_portal(stored["target_portal"])
        except ValueError as e:
            raise self._fail(bdm, f"bad target_portal or target_lun: {e}") from None
        data = {"target_portal": stored["target_portal"], "target_iqn": stored["target_iqn"],
                "target_lun": lun, "volume_id": bdm.get("volume_id")}
        data.update({k: stored[k] for k in _PASS_THROUGH if k in stored})
        return {"driver_volume_type": DRIVER_VOLUME_TYPE, "data": data}

    def check_portal(self, bdm, data):
        host, port = split_portal(data["target_portal"])
        try:
            with socket.create_connection((host, port), timeout=self.timeout):
                pass
        except OSError as e:
            raise self._fail(bdm, f"iSCSI portal {host}:{port} of {data['target_iqn']} is "
                                  f"not reachable from this host: {e}") from e

    def check_lun(self, bdm, data):
        """INQUIRY through libiscsi, when its tools are installed: True if checked."""
        tool = shutil.which("iscsi-inq")
        if not (self.probe_lun and tool):
            return False
        url = iscsi_url(data)
        if data.get("auth_username"):
            user = data["auth_username"]
            url = url.replace("iscsi://", f"iscsi://{user}%{data.get('auth_password', '')}@",
                              1)
        try:
            proc = subprocess.run([tool, url], capture_output=True, text=True,
                                  timeout=max(self.timeout * 3, 10))
        except subprocess.TimeoutExpired:
            raise self._fail(bdm, f"LUN {data['target_lun']} of {data['target_iqn']} did "
                                  "not answer an INQUIRY in time") from None
        if proc.returncode != 0:
            raise self._fail(bdm, f"LUN {data['target_lun']} of {data['target_iqn']} at "
                                  f"{data['target_portal']}: iscsi-inq failed: "
                                  f"{(proc.stderr or proc.stdout).strip()[:300]}")
        return True

    def connect_volume(self, instance, bdm):
        info = self.connection_info(bdm)
        self.check_portal(bdm, info["data"])
        probed = self.check_lun(bdm, info["data"])
        self.ledger.record(instance, bdm, "iscsi_qemu", info)
        LOG.info("Volume %s of %s usable from %s at %s (%s)", bdm.get("volume_id"),
                 instance["uuid"], self.host, iscsi_url(info["data"]),
                 "LUN probed" if probed else "portal reachable")
        return info

    def list_connections(self):
        """The connections this host's ledger records for this driver. Nothing is
        attached on the host: an entry is a volume this host was asked to make
        usable, until disconnect_volume forgets it."""
        return [{"instance_uuid": e["instance_uuid"], "volume_id": e["volume_id"]}
                for e in self.ledger.entries() if e.get("driver") == "iscsi_qemu"]

    def disconnect_volume(self, instance, bdm):
        self.ledger.forget(instance, bdm)
