"""NftablesFirewallDriver with real nftables, in namespaces.

Layouts ("bridged" is a guest tap on a Linux bridge, "routed" a routed tap)::

    A (pinger)                 B (the host; the driver works here)          G (guest)
    198.51.100.10 --veth--  brB ------------------ tap<vif> --veth-- 198.51.100.20
                                (bridged)
    198.51.100.10 --veth--  198.51.100.1 | 198.51.100.129 tap<vif> --veth-- 198.51.100.130
                                (routed, forwarding on)

The guest is a veth end in its own namespace (a veth behaves like a tap here
and answers pings and TCP itself); the host-side end carries the VIF's tap name
and the guest end the VIF's MAC, which is what the driver matches on.
"""

import json
import subprocess
import sys
import uuid

import pytest

from compute.firewall import nftables
from compute.vif import common
from tests.host.conftest import host_conf, ping, require_host_plumbing, run

PINGER = "198.51.100.10"
TCP_PORT = 2222


class Topology:
    def __init__(self, net, layout):
        self.net = net
        self.pinger_ns, self.host_ns, self.guest_ns = net.netns("A"), net.netns("B"), net.netns("G")
        vif_uuid = str(uuid.uuid4())
        self.vif = {"uuid": vif_uuid, "address": "fa:16:3e:5e:c0:01", "network_id": "n1"}
        self.instance = {"uuid": str(uuid.uuid4())}
        self.tap = common.tap_name(self.vif)
        a_end, b_end = net.veth(net.name("a"), net.name("b"), self.pinger_ns, self.host_ns)
        net.veth(self.tap, "eth0", self.host_ns, self.guest_ns)
        run("ip", "link", "set", "eth0", "address", self.vif["address"], netns=self.guest_ns)
        if layout == "bridged":
            bridge = net.bridge("brB", self.host_ns)
            for dev in (b_end, self.tap):
                run("ip", "link", "set", dev, "master", bridge, netns=self.host_ns)
            net.address(a_end, f"{PINGER}/24", self.pinger_ns)
            self.guest_ip = "198.51.100.20"
            net.address("eth0", f"{self.guest_ip}/24", self.guest_ns)
        else:
            net.address(b_end, "198.51.100.1/25", self.host_ns)
            net.address(self.tap, "198.51.100.129/25", self.host_ns)
            run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", netns=self.host_ns)
            net.address(a_end, f"{PINGER}/25", self.pinger_ns)
            run("ip", "route", "add", "default", "via", "198.51.100.1", netns=self.pinger_ns)
            self.guest_ip = "198.51.100.130"
            net.address("eth0", f"{self.guest_ip}/25", self.guest_ns)
            run("ip", "route", "add", "default", "via", "198.51.100.129", netns=self.guest_ns)

    def driver(self, tmp_path, ingress, netns=None, table="godwit"):
        conf = host_conf(tmp_path, **{"firewall.netns": netns or self.host_ns,
                                      "firewall.default_ingress": ingress,
                                      "firewall.table": table})
        return nftables.NftablesFirewallDriver(conf, "hostB")

    def ping_guest(self, attempts=1):
        return ping(self.pinger_ns, self.guest_ip, count=2, attempts=attempts)

    def listen(self):
        """A TCP server in the guest, accepting until killed."""
        code = ("import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,"
                "socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',%d))\ns.listen()\n"
                "print('ready',flush=True)\nwhile True: s.accept()[0].close()" % TCP_PORT)
        proc = subprocess.Popen(["ip", "netns", "exec", self.guest_ns, sys.executable, "-c", code],
                                stdout=subprocess.PIPE, text=True)
        self.net.undo.push(_kill, proc)
        assert proc.stdout.readline().strip() == "ready"

    def tcp_ok(self):
        code = ("import socket\ntry:\n socket.create_connection(('%s',%d),timeout=1).close()"
                "\n print('open')\nexcept OSError as e:\n print('closed',e)"
                % (self.guest_ip, TCP_PORT))
        return run(sys.executable, "-c", code, netns=self.pinger_ns).stdout.startswith("open")


def _kill(proc):
    proc.kill()
    proc.wait(5)
    proc.stdout.close()


def ruleset(netns):
    return run("nft", "list", "ruleset", netns=netns).stdout


@pytest.fixture
def nft_ready():
    require_host_plumbing("ip", "ping", "nft", "sysctl")


@pytest.mark.parametrize("layout", ["bridged", "routed"])
def test_ingress_rules_filter_the_guest_and_unfilter_restores(nft_ready, net, tmp_path,
                                                              layout):
    topo = Topology(net, layout)
    topo.listen()
    assert topo.ping_guest(attempts=3), "no connectivity before any filter"
    assert topo.tcp_ok()

    # Only TCP to the port: pings are dropped, and counted.
    fw = topo.driver(tmp_path, [f"tcp:{TCP_PORT}"])
    fw.apply_instance_filter(topo.instance, [topo.vif])
    assert not topo.ping_guest()
    assert fw.dropped(topo.instance) >= 2
    assert topo.tcp_ok()
    # Stateful: the guest's own pings out get their replies back.
    assert ping(topo.guest_ns, PINGER, count=2)

    # Changing the rules (and applying again) lets ICMP in, atomically replaced.
    fw = topo.driver(tmp_path, ["icmp"])
    fw.apply_instance_filter(topo.instance, [topo.vif])
    fw.apply_instance_filter(topo.instance, [topo.vif])  # idempotent
    assert topo.ping_guest()
    assert not topo.tcp_ok()
    text = ruleset(topo.host_ns)
    chain = "inst-" + topo.instance["uuid"]
    assert text.count(f"chain {chain} {{") == 1
    assert text.count(f'"{topo.tap}" : jump {chain}') == 1
    assert text.count(f"{topo.vif['address']} : jump {chain}") == 1
    assert "meta l4proto icmp accept" in text and f"dport {TCP_PORT}" not in text

    fw.unfilter_instance(topo.instance, [topo.vif])
    assert chain not in ruleset(topo.host_ns)
    assert topo.ping_guest() and topo.tcp_ok()
    fw.unfilter_instance(topo.instance, [topo.vif])  # quiet when already gone
    assert fw.dropped(topo.instance) is None
    run("nft", "delete", "table", "inet", "godwit", netns=topo.host_ns)
    fw.unfilter_instance(topo.instance, [topo.vif])  # quiet without the table too


def test_move_filter_applied_on_destination_then_removed_from_source(nft_ready, net,
                                                                      tmp_path):
    """pre_live_migration filters on the destination; post removes it from the source."""
    source, dest = net.netns("S"), net.netns("D")
    instance = {"uuid": str(uuid.uuid4())}
    nw = [{"uuid": str(uuid.uuid4()), "address": "fa:16:3e:00:00:0a"},
          {"uuid": str(uuid.uuid4()), "address": "fa:16:3e:00:00:0b"}]
    conf = lambda ns: host_conf(tmp_path / ns, **{"firewall.netns": ns,  # noqa: E731
                                                  "firewall.default_ingress": ["tcp:22"]})
    on_source = nftables.NftablesFirewallDriver(conf(source), "source")
    on_dest = nftables.NftablesFirewallDriver(conf(dest), "dest")
    chain = "inst-" + instance["uuid"]

    on_source.apply_instance_filter(instance, nw)  # the instance runs on the source
    on_dest.apply_instance_filter(instance, nw)    # pre_live_migration
    assert chain in ruleset(source) and chain in ruleset(dest)
    on_source.unfilter_instance(instance, nw)      # post_live_migration at the source
    assert chain not in ruleset(source)
    dest_rules = ruleset(dest)
    assert chain in dest_rules
    for vif in nw:
        assert f'"{common.tap_name(vif)}" : jump {chain}' in dest_rules
        assert f"{vif['address']} : jump {chain}" in dest_rules
    on_dest.unfilter_instance(instance, nw)
    assert chain not in ruleset(dest)


def test_reapply_with_fewer_vifs_drops_the_stale_entries(nft_ready, net, tmp_path):
    ns = net.netns("B")
    fw = nftables.NftablesFirewallDriver(host_conf(tmp_path, **{"firewall.netns": ns}), "b")
    instance, other = {"uuid": str(uuid.uuid4())}, {"uuid": str(uuid.uuid4())}
    first = {"uuid": str(uuid.uuid4()), "address": "fa:16:3e:00:00:01"}
    second = {"uuid": str(uuid.uuid4()), "address": "fa:16:3e:00:00:02"}
    fw.apply_instance_filter(instance, [first, second])
    fw.apply_instance_filter(other, [{"uuid": str(uuid.uuid4()),
                                      "address": "fa:16:3e:00:00:03"}])
    fw.apply_instance_filter(instance, [first])
    listing = json.loads(run("nft", "-j", "list", "map", "inet", "godwit",
                             "instance_ports", netns=ns).stdout)
    elems = next(i["map"] for i in listing["nftables"] if "map" in i)["elem"]
    targets = {key: verdict["jump"]["target"] for key, verdict in elems}
    assert targets == {common.tap_name(first): "inst-" + instance["uuid"],
                       next(iter(targets.keys() - {common.tap_name(first)})):
                       "inst-" + other["uuid"]}
    fw.unfilter_instance(instance, [])  # finds its entries without network_info
    assert "inst-" + instance["uuid"] not in ruleset(ns)
    assert "inst-" + other["uuid"] in ruleset(ns)


@pytest.mark.parametrize("rule, expected", [
    ("icmp", "meta l4proto icmp"),
    ("icmpv6", "meta l4proto ipv6-icmp"),
    ("tcp:22", "tcp dport 22"),
    ("UDP:5000-5010", "udp dport 5000-5010"),
    ("tcp", "meta l4proto tcp"),
    ("tcp:22@198.51.100.0/24", "ip saddr 198.51.100.0/24 tcp dport 22"),
    ("any@2001:db8::/32", "ip6 saddr 2001:db8::/32"),
])
def test_parse_rule(rule, expected):
    assert nftables.parse_rule(rule) == expected


@pytest.mark.parametrize("rule", ["icmp:22", "tcp:0", "tcp:70000", "tcp:9-3", "gre",
                                  "tcp:22@nonsense", "icmp@2001:db8::/32",
                                  'tcp:22"; flush ruleset'])
def test_parse_rule_rejects(rule):
    with pytest.raises(ValueError):
        nftables.parse_rule(rule)
