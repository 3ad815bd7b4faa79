"""Per-instance ingress filtering with nftables.

Everything lives in one table, ``inet <[firewall] table>`` (default
``inet godwit``), that this driver owns::

    table inet godwit {
        map instance_ports { type ifname : verdict; }       # "tapX" : jump inst-<uuid>
        map instance_macs { type ether_addr : verdict; }    # guest MAC : jump inst-<uuid>
        chain forward {
            type filter hook forward priority filter; policy accept;
            oifname vmap @instance_ports
            ether daddr vmap @instance_macs
        }
        chain inst-<uuid> {                  # one per instance
            ct state established,related accept
            ct state invalid drop
            <IPv6 neighbour discovery, DHCP replies> accept
            <[firewall] default_ingress rules> accept
            counter drop
        }
    }

Two ways into an instance's chain, because two kinds of VIF reach netfilter:
a routed tap is the output interface of the forward hook (``oifname``); a tap on
a Linux bridge is not (with br_netfilter the hook's output device is the
bridge), so bridged frames are matched on their destination, the guest's MAC
(``ether daddr``). The linux_bridge VIF driver turns on nf_call_iptables on its
bridges for that. VIFs on an Open vSwitch userspace (netdev) datapath never
pass netfilter: filter those with OpenFlow (OVN, the Neutron OVS agent).

apply_instance_filter() replaces the instance's chain and map entries in one
``nft -f`` transaction, so the guest is never unfiltered between two rule
sets; unfilter_instance() removes them the same way, quiet when absent. Both
first list the maps to find entries left by an earlier rule set (a VIF since
removed). A per-driver lock serialises listing and applying.

The ``nft`` command line is used, with argument lists and the script on
stdin, rather than python3-nftables: that binding is a Debian package for the
system Python (not on PyPI, so not in the agent's virtualenv), and the CLI runs
in another network namespace simply as ``ip netns exec <ns> nft``
(``[firewall] netns``), where the library would need the agent's thread to
setns() itself.
"""

import ipaddress
import json
import re
import shutil
import subprocess
import threading

from oslo_log import log as logging

from compute.firewall import base
from compute.vif import common as vif_common
from godwit import exception

LOG = logging.getLogger(__name__)

PORTS_MAP = "instance_ports"
MACS_MAP = "instance_macs"
BASE_CHAIN = "forward"
CHAIN_PREFIX = "inst-"

#: Always allowed: what a guest needs that conntrack does not see as a reply.
BASELINE_RULES = (
    "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, "
    "mld-listener-query } accept",
    "udp sport 67 udp dport 68 accept",
    "udp sport 547 udp dport 546 accept",
)

_UUID_RE = re.compile(r"^[0-9a-fA-F-]{1,36}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_PORTS_RE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


# Defined in godwit.exception so that it crosses RPC as itself (not RemoteError).
FirewallError = exception.FirewallError


def parse_rule(text):
    """One ``[firewall] default_ingress`` entry as an nft rule (without 'accept').

    ``<proto>[:<port>[-<port>]][@<cidr>]`` with proto icmp, icmpv6, tcp, udp,
    sctp or any: 'icmp', 'tcp:22', 'udp:5000-5010', 'tcp:22@198.51.100.0/24',
    'any@2001:db8::/32'. Raises ValueError for anything else (nothing from the
    configuration reaches the nft script unchecked).
    """
    spec = text.strip().lower()
    spec, _, source = spec.partition("@")
    proto, _, ports = spec.partition(":")
    parts = []
    family = None
    if source:
        try:
            net = ipaddress.ip_network(source, strict=False)
        except ValueError:
            raise ValueError(f"{text!r}: {source!r} is not a CIDR") from None
        family = net.version
        parts.append(f"{'ip' if family == 4 else 'ip6'} saddr {net}")
    if proto not in ("icmp", "icmpv6", "tcp", "udp", "sctp", "any"):
        raise ValueError(f"{text!r}: protocol must be icmp, icmpv6, tcp, udp, sctp or any")
    if (proto, family) in (("icmp", 6), ("icmpv6", 4)):
        raise ValueError(f"{text!r}: {proto} from an IPv{family} source never matches")
    if ports:
        if proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"{text!r}: only tcp, udp and sctp rules take ports")
        m = _PORTS_RE.match(ports)
        low, high = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, 0)
        if not m or not 1 <= low <= high <= 65535:
            raise ValueError(f"{text!r}: ports must be N or N-M within 1-65535")
        parts.append(f"{proto} dport {low}" if low == high else f"{proto} dport {low}-{high}")
    elif proto != "any":
        parts.append("meta l4proto " + {"icmpv6": "ipv6-icmp"}.get(proto, proto))
    return " ".join(parts)


def chain_name(instance):
    uuid = instance["uuid"]
    if not _UUID_RE.match(uuid):
        raise FirewallError(host="-", reason=f"instance uuid {uuid!r} is not a uuid")
    return CHAIN_PREFIX + uuid.lower()


class NftablesFirewallDriver(base.FirewallDriver):
    """Security-group style ingress filtering (entry point ``nftables``)."""

    def __init__(self, conf, host):
        super().__init__(conf, host)
        group = conf.firewall
        if not _NAME_RE.match(group.table):
            raise ValueError(f"[firewall] table: {group.table!r} is not a valid table name")
        self.table = group.table
        self.netns = group.netns or None
        try:
            self.ingress = [parse_rule(r) for r in group.default_ingress if r.strip()]
        except ValueError as e:
            raise ValueError(f"[firewall] default_ingress: {e}") from None
        self._lock = threading.Lock()

    # --- nft ------------------------------------------------------------------
    def _nft(self, args, stdin=None, check=True):
        nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
        if nft is None:
            raise FirewallError(host=self.host, reason="the nft command is missing "
                                                       "(install the nftables package)")
        cmd = [nft, *args]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            where = f" in network namespace {self.netns}" if self.netns else ""
            raise FirewallError(host=self.host,
                                reason=f"nft {' '.join(args)}{where} failed: "
                                       f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def _list_table(self):
        """The table's objects as ``nft -j`` lists them; [] when it does not exist."""
        proc = self._nft(["-j", "list", "table", "inet", self.table], check=False)
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return []
            raise FirewallError(host=self.host,
                                reason=f"nft list table inet {self.table} failed: "
                                       f"{proc.stderr.strip()}")
        return json.loads(proc.stdout).get("nftables", [])

    def _map_entries(self):
        """{(map, key): chain} of both maps; {} when the table does not exist."""
        entries = {}
        for item in self._list_table():
            nft_map = item.get("map")
            if not nft_map or nft_map.get("name") not in (PORTS_MAP, MACS_MAP):
                continue
            for elem in nft_map.get("elem") or []:
                if not isinstance(elem, list) or len(elem) != 2:
                    continue
                key, verdict = elem
                target = (verdict.get("jump") or verdict.get("goto") or {}).get("target")
                if isinstance(key, str) and target:
                    entries[(nft_map["name"], key)] = target
        return entries

    def _vif_keys(self, network_info):
        keys = []
        for vif in network_info or []:
            tap, mac = vif_common.tap_name(vif), (vif.get("address") or "").lower()
            if not _IFNAME_RE.match(tap):
                raise FirewallError(host=self.host, reason=f"bad tap name {tap!r}")
            keys.append((PORTS_MAP, tap))
            if mac:
                if not _MAC_RE.match(mac):
                    raise FirewallError(host=self.host, reason=f"bad MAC address {mac!r}")
                keys.append((MACS_MAP, mac))
        return keys

    def _table_script(self):
        t = f"inet {self.table}"
        return [
            f"add table {t}",
            f"add map {t} {PORTS_MAP} {{ type ifname : verdict; }}",
            f"add map {t} {MACS_MAP} {{ type ether_addr : verdict; }}",
            f"add chain {t} {BASE_CHAIN} {{ type filter hook forward priority filter; "
            "policy accept; }",
            f"flush chain {t} {BASE_CHAIN}",
            f"add rule {t} {BASE_CHAIN} oifname vmap @{PORTS_MAP}",
            f"add rule {t} {BASE_CHAIN} ether daddr vmap @{MACS_MAP}",
        ]

    @staticmethod
    def _element(entry):
        """A (map, key) as an nft set element: interface names are quoted strings."""
        nft_map, key = entry
        return f'"{key}"' if nft_map == PORTS_MAP else key

    # --- the driver interface ---------------------------------------------------
    def apply_instance_filter(self, instance, network_info):
        chain, t = chain_name(instance), f"inet {self.table}"
        keys = self._vif_keys(network_info)
        with self._lock:
            existing = self._map_entries()
            lines = self._table_script()
            lines += [f"add chain {t} {chain}", f"flush chain {t} {chain}"]
            lines += [f"add rule {t} {chain} {r}" for r in (
                "ct state established,related accept", "ct state invalid drop",
                *BASELINE_RULES)]
            lines += [f"add rule {t} {chain} {r} accept".replace("  ", " ")
                      for r in self.ingress]
            lines.append(f"add rule {t} {chain} counter drop")
            # Entries of this instance no longer wanted, and entries for these
            # VIFs that point elsewhere, go; then this rule set's entries.
            stale = {k for k, target in existing.items() if target == chain} | \
                {k for k in keys if k in existing}
            lines += [f"delete element {t} {m} {{ {self._element((m, k))} }}"
                      for m, k in sorted(stale)]
            lines += [f"add element {t} {m} {{ {self._element((m, k))} : jump {chain} }}"
                      for m, k in keys]
            self._nft(["-f", "-"], stdin="\n".join(lines) + "\n")
        LOG.info("Filter for %s applied on %s (%d VIFs, ingress %s)", instance["uuid"],
                 self.host, len(network_info or []), self.ingress or "none")

    def unfilter_instance(self, instance, network_info):
        chain, t = chain_name(instance), f"inet {self.table}"
        with self._lock:
            existing = self._map_entries()
            lines = [f"delete element {t} {m} {{ {self._element((m, k))} }}"
                     for (m, k), target in sorted(existing.items()) if target == chain]
            if self._chain_exists(chain):
                lines += [f"flush chain {t} {chain}", f"delete chain {t} {chain}"]
            if not lines:
                return
            self._nft(["-f", "-"], stdin="\n".join(lines) + "\n")
        LOG.info("Filter for %s removed from %s", instance["uuid"], self.host)

    def list_filtered(self):
        """The instances with a chain ``inst-<uuid>`` in this driver's table (the
        uuid as chain_name writes it, lower case)."""
        with self._lock:
            items = self._list_table()
        out = set()
        for item in items:
            name = (item.get("chain") or {}).get("name") or ""
            if name.startswith(CHAIN_PREFIX) and _UUID_RE.match(name[len(CHAIN_PREFIX):]):
                out.add(name[len(CHAIN_PREFIX):])
        return sorted(out)

    def _chain_exists(self, chain):
        return self._nft(["list", "chain", "inet", self.table, chain],
                         check=False).returncode == 0

    # --- for operators and tests --------------------------------------------
    def dropped(self, instance):
        """Packets the instance's chain has dropped so far (None: no chain)."""
        proc = self._nft(["-j", "list", "chain", "inet", self.table, chain_name(instance)],
                         check=False)
        if proc.returncode != 0:
            return None
        for item in json.loads(proc.stdout).get("nftables", []):
            rule = item.get("rule")
            if not rule:
                continue
            exprs = rule.get("expr", [])
            if {"drop": None} in exprs:
                for e in exprs:
                    if "counter" in e:
                        return e["counter"]["packets"]
        return None
