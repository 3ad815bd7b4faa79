"""Open vSwitch VIFs, plugged by os-vif's ovs plugin.

plug() asks os-vif for a ``VIFOpenVSwitch`` with a ``VIFPortProfileOpenVSwitch``
(``create_port=True, create_tap=True``): the plugin makes sure the bridge
exists (``[vif_ovs] bridge``, ``datapath_type``), creates the tap
``tap<11 chars of the VIF uuid>`` with the guest's MAC (IPv6 off, so the host
sends nothing into the guest), and adds it as an OVS port whose external_ids
carry ``iface-id`` (the VIF uuid), ``attached-mac``, ``vm-uuid`` and
``iface-status``, which is what an SDN agent (OVN, the Neutron OVS agent) binds
on. Both steps tolerate what already exists, so plug() is idempotent; unplug()
deletes port and tap and is quiet when they are gone. The bridge stays.

The guest's ``<interface>`` is ``type='ethernet'`` on the existing tap: see
:mod:`compute.vif.common`. Configuration lives in ``[vif_ovs]`` and in
Godwit's ``[os_vif_ovs]`` (the plugin's options), read from the agent's own
ConfigOpts: nothing goes through the global ``cfg.CONF``.
"""

import threading
import types
import uuid

from oslo_log import log as logging

from compute.vif import base, common

LOG = logging.getLogger(__name__)

_privsep_lock = threading.Lock()


def _run_privileged_in_process():
    """Make the ovs plugin's privileged calls run in this process.

    oslo.privsep's default is to start ``privsep-helper`` through sudo, which
    these hosts do not have; the agent runs as root anyway (the bridge, firewall
    and loop-device drivers need CAP_NET_ADMIN/CAP_SYS_ADMIN too), so there is no
    privilege to separate. Of the ways that work without sudo (client mode off,
    ``start(Method.FORK)``, a ``helper_command`` without sudo) client mode off is
    the one with no extra process to start, watch and stop: the entrypoints
    become plain function calls. An agent that does not run as root would have
    to start the context with a helper_command instead.
    """
    from vif_plug_ovs import privsep

    with _privsep_lock:
        if privsep.vif_plug.client_mode:
            privsep.vif_plug.set_client_mode(False)


def _plugin_config(conf):
    """The plugin's config group: os-vif's defaults, then ours from [os_vif_ovs]."""
    from vif_plug_ovs import ovs

    values = {opt.dest: opt.default for opt in ovs.OvsPlugin.CONFIG_OPTS}
    group = conf.os_vif_ovs
    for name in ("ovsdb_connection", "ovs_vsctl_timeout", "network_device_mtu",
                 "isolate_vif"):
        values[name] = getattr(group, name)
    values["ovsdb_interface"] = "native"
    values["per_port_bridge"] = False
    return types.SimpleNamespace(**values)


def _is_uuid(value):
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


class OvsVifDriver(base.VifDriver):
    """Open vSwitch VIFs through os-vif (entry point ``ovs``)."""

    def __init__(self, conf, host):
        super().__init__(conf, host)
        import os_vif.objects
        from vif_plug_ovs import ovs

        os_vif.objects.register_all()
        _run_privileged_in_process()
        self.plugin = ovs.OvsPlugin(_plugin_config(conf))

    # --- helpers ------------------------------------------------------------
    def bridge(self, vif):
        return common.details(vif).get("bridge") or self.conf.vif_ovs.bridge

    def _os_vif_objects(self, instance, vif):
        from os_vif import objects

        network_args = {"bridge": self.bridge(vif), "mtu": common.mtu(vif)}
        if vif.get("network_id") and _is_uuid(vif["network_id"]):
            network_args["id"] = vif["network_id"]
        profile = objects.vif.VIFPortProfileOpenVSwitch(
            interface_id=vif["uuid"], datapath_type=self.conf.vif_ovs.datapath_type,
            create_port=True, create_tap=True)
        os_vif_vif = objects.vif.VIFOpenVSwitch(
            id=vif["uuid"], address=vif["address"], vif_name=common.tap_name(vif),
            bridge_name=self.bridge(vif), plugin="ovs", port_profile=profile,
            network=objects.network.Network(**network_args), has_traffic_filtering=False,
            preserve_on_delete=False, active=False)
        info = objects.instance_info.InstanceInfo(uuid=instance["uuid"],
                                                  name=instance.get("name") or
                                                  instance["uuid"])
        return os_vif_vif, info

    def _call(self, action, fn, instance, vif):
        os_vif_vif, info = self._os_vif_objects(instance, vif)
        try:
            fn(os_vif_vif, info)
        except Exception as e:
            LOG.exception("OVS %s of VIF %s failed", action, vif["uuid"])
            raise common.VifPlugFailed(action=action, vif=vif["uuid"], host=self.host,
                                       reason=f"{type(e).__name__}: {e} (OVSDB "
                                              f"{self.conf.os_vif_ovs.ovsdb_connection})"
                                       ) from e

    # --- the driver interface ---------------------------------------------------
    def plug(self, instance, vif):
        self._call("plug", self.plugin.plug, instance, vif)
        LOG.info("Plugged VIF %s of %s into OVS bridge %s as %s", vif["uuid"],
                 instance["uuid"], self.bridge(vif), common.tap_name(vif))

    def unplug(self, instance, vif):
        self._call("unplug", self.plugin.unplug, instance, vif)

    def list_plugged(self):
        """The ports of this driver on its bridge (``[vif_ovs] bridge``): those whose
        interface carries os-vif's external_ids ``iface-id`` (the VIF uuid) and
        ``vm-uuid`` (the instance's) and is named as plug() names it, ``tap`` + 11
        characters of the iface-id. Ports on a bridge a VIF's details named are
        not seen (the driver keeps no list of those bridges)."""
        from ovsdbapp.backend.ovs_idl import idlutils

        bridge = self.conf.vif_ovs.bridge
        try:
            api = self.plugin.ovsdb.ovsdb
            if not api.br_exists(bridge).execute(check_error=True):
                return []
            try:
                names = api.list_ifaces(bridge).execute(check_error=True, log_errors=False)
            except idlutils.RowNotFound:
                return []   # the bridge went meanwhile
            rows = api.db_list("Interface", names, columns=["name", "external_ids"],
                               if_exists=True).execute(check_error=True) if names else []
        except Exception as e:
            LOG.exception("Listing the ports of OVS bridge %s failed", bridge)
            raise common.VifPlugFailed(action="list", vif="-", host=self.host,
                                       reason=f"ports of bridge {bridge}: "
                                              f"{type(e).__name__}: {e} (OVSDB "
                                              f"{self.conf.os_vif_ovs.ovsdb_connection})"
                                       ) from e
        out = []
        for row in rows:
            ids = row.get("external_ids") or {}
            vif_id, instance_uuid = ids.get("iface-id"), ids.get("vm-uuid")
            if not (vif_id and instance_uuid) or \
                    row["name"] != common.tap_name({"uuid": vif_id}):
                continue   # not a port plug() made: the bridge's uplink, another's port
            out.append({"vif_id": vif_id, "device": row["name"],
                        "instance_uuid": instance_uuid})
        return sorted(out, key=lambda item: item["device"])

    def domain_interface(self, instance, vif):
        """Libvirt interface: type='ethernet' on the tap plug() made (no virtualport).

        The OVS port and its iface-id exist already; a virtualport would make
        libvirt delete and re-add the port when QEMU starts.
        """
        return common.interface(vif, self.bridge(vif))

    def close(self):
        """Stop the OVSDB connection thread (tests; the agent keeps it for life).

        ovsdbapp keeps one connection per API class and process, the first one
        made; forgetting it lets the next driver connect to its own OVSDB.
        """
        ovsdb = getattr(self.plugin.ovsdb, "_ovsdb", None)
        connection = getattr(ovsdb, "ovsdb_connection", None)
        if connection is not None:
            connection.stop(timeout=5)
            type(ovsdb)._ovsdb_connection = None
        self.plugin.ovsdb._ovsdb = None
