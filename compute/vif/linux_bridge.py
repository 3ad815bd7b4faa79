"""Linux bridge VIFs on pyroute2 (os-vif 5 dropped its linux_bridge plugin).

plug() makes sure the network's bridge exists (``[vif_bridge]
bridge_mappings``, else ``br-<network_id[:11]>``; created with STP off and
forward delay 0, bridged IP traffic handed to netfilter so that the nftables
firewall driver sees it), creates a persistent tap ``tap<11 chars of the VIF uuid>``
with the host-side MAC ``fe:...`` (a bridge would take a port carrying the
guest's own MAC for a local address and swallow the guest's frames), turns
off IPv6 address generation on it (the host would otherwise run DAD into the
guest), enslaves it and sets it up. Every step checks what exists first, so
plug() is idempotent and repairs a half-done plug.

unplug() deletes the tap, quiet when it is gone. Bridges are shared by every
VIF of a network, so a bridge is removed only when its last port has gone AND
this driver created it; the bridges it created are listed in
``<state_path>/vif-bridges/<host>.json``. A bridge the driver found (an
operator's bridge with its uplink, a mapped one) is never removed. Uplinks are
the operator's: the driver never enslaves a physical interface.

The guest's ``<interface>`` is ``type='ethernet'`` on the existing tap; see
:mod:`compute.vif.common`.
"""

import contextlib
import json
import os
import re
import threading

from oslo_log import log as logging

from compute.vif import base, common

LOG = logging.getLogger(__name__)

BRIDGE_PREFIX = "br-"
#: The name of a tap this driver makes: "tap" + the first TAP_ID_LENGTH (11)
#: characters of a VIF uuid, i.e. 8 hex digits, a dash, 2 hex digits. A link
#: of any other name is not ours (libvirt's vnetN, an operator's tap, ...).
TAP_NAME_RE = re.compile(rf"^{re.escape(common.TAP_PREFIX)}([0-9a-fA-F]{{8}}-[0-9a-fA-F]{{2}})$")


class LinuxBridgeVifDriver(base.VifDriver):
    """Per-network Linux bridges and persistent taps (entry point ``linux_bridge``)."""

    def __init__(self, conf, host):
        super().__init__(conf, host)
        group = conf.vif_bridge
        self.netns = group.netns or None
        self.mappings = {}
        for item in group.bridge_mappings:
            network_id, sep, bridge = item.partition(":")
            if not sep or not network_id.strip() or not bridge.strip():
                raise ValueError(f"[vif_bridge] bridge_mappings: {item!r} is not "
                                 "'<network_id>:<bridge>'")
            self.mappings[network_id.strip()] = bridge.strip()
        self.state_file = os.path.join(conf.state_path, "vif-bridges", f"{host}.json")
        self._lock = threading.Lock()

    # --- names and state ------------------------------------------------------
    def bridge(self, vif):
        explicit = common.details(vif).get("bridge")
        if explicit:
            return explicit
        network_id = vif.get("network_id") or ""
        if network_id in self.mappings:
            return self.mappings[network_id]
        if not network_id:
            raise common.VifPlugFailed(action="plug", vif=vif["uuid"], host=self.host,
                                       reason="the VIF has no network_id and no bridge "
                                              "in its details")
        return BRIDGE_PREFIX + network_id[:common.TAP_ID_LENGTH]

    def _created_bridges(self):
        try:
            with open(self.state_file) as f:
                return set(json.load(f))
        except FileNotFoundError:
            return set()

    def _save_created_bridges(self, names):
        os.makedirs(os.path.dirname(self.state_file), exist_ok=True)
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(sorted(names), f)
        os.replace(tmp, self.state_file)

    @contextlib.contextmanager
    def _ipr(self):
        from pyroute2 import IPRoute

        ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
        try:
            yield ipr
        finally:
            ipr.close()

    @staticmethod
    def _index(ipr, name):
        found = ipr.link_lookup(ifname=name)
        return found[0] if found else None

    # --- the driver interface ---------------------------------------------------
    def plug(self, instance, vif):
        bridge, tap = self.bridge(vif), common.tap_name(vif)
        try:
            with self._lock, self._ipr() as ipr:
                br_index = self._ensure_bridge(ipr, bridge)
                self._ensure_tap(ipr, tap, vif, br_index)
        except common.VifPlugFailed:
            raise
        except Exception as e:
            LOG.exception("Plugging VIF %s into %s failed", vif["uuid"], bridge)
            raise common.VifPlugFailed(action="plug", vif=vif["uuid"], host=self.host,
                                       reason=f"{tap} on bridge {bridge}: "
                                              f"{type(e).__name__}: {e}") from e
        LOG.info("Plugged VIF %s of %s into bridge %s as %s", vif["uuid"],
                 instance["uuid"], bridge, tap)

    def _ensure_bridge(self, ipr, bridge):
        index = self._index(ipr, bridge)
        if index is None:
            # nf_call_ip(6)tables: bridged IP traffic passes the inet family's
            # hooks, where the nftables firewall driver filters it, whatever the
            # host-wide net.bridge.bridge-nf-call-* sysctls say.
            ipr.link("add", ifname=bridge, kind="bridge", br_stp_state=0,
                     br_forward_delay=0, br_nf_call_iptables=1, br_nf_call_ip6tables=1)
            index = self._index(ipr, bridge)
            self._save_created_bridges(self._created_bridges() | {bridge})
            LOG.info("Created bridge %s", bridge)
        else:
            link = ipr.get_links(index)[0]
            info = link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
            if info != "bridge":
                raise common.VifPlugFailed(action="plug", vif="-", host=self.host,
                                           reason=f"{bridge} exists and is a {info!r} "
                                                  "device, not a bridge")
        ipr.link("set", index=index, state="up")
        return index

    def _ensure_tap(self, ipr, tap, vif, br_index):
        index = self._index(ipr, tap)
        if index is None:
            ipr.link("add", ifname=tap, kind="tuntap", mode="tap")
            index = self._index(ipr, tap)
        else:
            kind = ipr.get_links(index)[0].get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
            if kind != "tun":
                raise common.VifPlugFailed(action="plug", vif=vif["uuid"], host=self.host,
                                           reason=f"{tap} exists and is a {kind!r} device, "
                                                  "not a tap")
        changes = {"address": common.host_side_mac(vif["address"])}
        mtu = common.mtu(vif)
        if mtu:
            changes["mtu"] = mtu
        ipr.link("set", index=index, **changes)
        # No IPv6 link-local address on the tap: addr_gen_mode none (1).
        ipr.link("set", index=index, IFLA_AF_SPEC={
            "attrs": [["AF_INET6", {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", 1]]}]]})
        ipr.link("set", index=index, master=br_index)
        ipr.link("set", index=index, state="up")

    def unplug(self, instance, vif):
        tap = common.tap_name(vif)
        try:
            bridge = self.bridge(vif)
        except common.VifPlugFailed:
            bridge = None
        try:
            with self._lock, self._ipr() as ipr:
                index = self._index(ipr, tap)
                if index is not None:
                    ipr.link("del", index=index)
                    LOG.info("Unplugged VIF %s of %s (%s)", vif["uuid"], instance["uuid"],
                             tap)
                if bridge:
                    self._remove_bridge_if_unused(ipr, bridge)
        except Exception as e:
            LOG.exception("Unplugging VIF %s failed", vif["uuid"])
            raise common.VifPlugFailed(action="unplug", vif=vif["uuid"], host=self.host,
                                       reason=f"{tap}: {type(e).__name__}: {e}") from e

    def list_plugged(self):
        """The persistent taps of this driver's shape (``tap`` + 11 characters of a
        VIF uuid, a tun/tap device) in its network namespace; a tap's name keeps
        only that much of the VIF's uuid, and nothing of its instance's."""
        out = []
        try:
            with self._lock, self._ipr() as ipr:
                links = ipr.get_links()
        except Exception as e:
            LOG.exception("Listing the taps on %s failed", self.host)
            raise common.VifPlugFailed(action="list", vif="-", host=self.host,
                                       reason=f"{type(e).__name__}: {e}") from e
        for link in links:
            name = link.get("IFLA_IFNAME") or ""
            m = TAP_NAME_RE.match(name)
            if m is None or link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) != "tun":
                continue
            out.append({"vif_id": m.group(1), "device": name, "instance_uuid": None})
        return sorted(out, key=lambda item: item["device"])

    def _remove_bridge_if_unused(self, ipr, bridge):
        created = self._created_bridges()
        if bridge not in created:
            return
        index = self._index(ipr, bridge)
        if index is not None:
            if ipr.get_links(master=index):
                return  # other VIFs (or an uplink) still use it
            ipr.link("del", index=index)
            LOG.info("Removed bridge %s, which has no ports left", bridge)
        self._save_created_bridges(created - {bridge})

    def domain_interface(self, instance, vif):
        """Libvirt interface: type='ethernet' on the tap plug() made and enslaved."""
        return common.interface(vif, self.bridge(vif))
