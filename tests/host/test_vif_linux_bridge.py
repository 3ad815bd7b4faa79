"""LinuxBridgeVifDriver on real bridges and taps, in namespaces playing two hosts.

    host B (netns)                          host A (netns)
    198.51.100.10 on brB --veth-- brA (uplink, the operator's)
                                   |
                                   tap<vif> (plugged by the driver) -- tap_guest.py
                                                                       198.51.100.20
"""

import json
import uuid

from compute.vif import common
from compute.vif.linux_bridge import LinuxBridgeVifDriver
from tests.host.conftest import host_conf, ping, run

GUEST_IP = "198.51.100.20"
PINGER_IP = "198.51.100.10"


def link(netns, name):
    """`ip -d -j link show` of one link, or None."""
    proc = run("ip", "-d", "-j", "link", "show", "dev", name, netns=netns, check=False)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


def ports_of(netns, bridge):
    proc = run("ip", "-j", "link", "show", "master", bridge, netns=netns)
    return sorted(entry["ifname"] for entry in json.loads(proc.stdout))


def new_vif(network_id, **extra):
    vif_uuid = str(uuid.uuid4())
    return dict({"uuid": vif_uuid, "address": "fa:16:3e:" + ":".join(
        vif_uuid[i:i + 2] for i in (0, 2, 4)), "network_id": network_id,
        "details": "{}"}, **extra)


def test_plug_into_mapped_bridge_carries_traffic_and_unplug_leaves_bridge(net, tmp_path):
    host_a, host_b = net.netns("A"), net.netns("B")
    br_a, br_b = net.bridge("brA", host_a), net.bridge("brB", host_b)
    up_a, up_b = net.veth(net.name("upA"), net.name("upB"), host_a, host_b)
    run("ip", "link", "set", up_a, "master", br_a, netns=host_a)
    run("ip", "link", "set", up_b, "master", br_b, netns=host_b)
    net.address(br_b, f"{PINGER_IP}/24", host_b)

    network_id = str(uuid.uuid4())
    conf = host_conf(tmp_path, **{"vif_bridge.netns": host_a,
                                  "vif_bridge.bridge_mappings": [f"{network_id}:{br_a}"]})
    driver = LinuxBridgeVifDriver(conf, "hostA")
    instance = {"uuid": str(uuid.uuid4()), "name": "vm1"}
    vif = new_vif(network_id, details=json.dumps({"mtu": 1400}))
    tap = common.tap_name(vif)
    net.undo.push(run, "ip", "link", "del", tap, netns=host_a, check=False)

    driver.plug(instance, vif)
    driver.plug(instance, vif)  # idempotent

    info = link(host_a, tap)
    assert tap == "tap" + vif["uuid"][:11]
    assert info["master"] == br_a
    assert info["address"] == "fe" + vif["address"][2:]  # host side, not the guest's MAC
    assert info["mtu"] == 1400
    assert "UP" in info["flags"]
    assert info["linkinfo"]["info_kind"] == "tun"
    assert info["linkinfo"]["info_data"]["persist"] is True
    assert info.get("inet6_addr_gen_mode") == "none"
    assert ports_of(host_a, br_a) == sorted([tap, up_a])
    assert driver.domain_interface(instance, vif) == {
        "type": "ethernet", "source_bridge": br_a, "target_dev": tap,
        "mac": vif["address"], "model": "virtio", "virtualport": None}

    # A guest on the tap is reachable from the other host through both bridges.
    guest = net.guest(tap, vif["address"], GUEST_IP, netns=host_a)
    assert ping(host_b, GUEST_IP, attempts=5), "guest behind the plugged tap unreachable"

    guest.terminate()
    guest.wait(5)
    driver.unplug(instance, vif)
    assert link(host_a, tap) is None
    assert link(host_a, br_a) is not None, "a bridge the driver did not create was removed"
    assert ports_of(host_a, br_a) == [up_a]
    driver.unplug(instance, vif)  # quiet when already gone
    assert not ping(host_b, GUEST_IP)


def test_bridge_created_for_a_network_is_removed_with_its_last_port(net, tmp_path):
    host_a = net.netns("A")
    conf = host_conf(tmp_path, **{"vif_bridge.netns": host_a})
    driver = LinuxBridgeVifDriver(conf, "hostA")
    network_id = "net" + net.tag + "xyz"  # any id: the bridge takes its first 11 chars
    bridge = "br-" + network_id[:11]
    instance = {"uuid": str(uuid.uuid4())}
    first, second = new_vif(network_id), new_vif(network_id)

    driver.plug(instance, first)
    driver.plug(instance, second)
    info = link(host_a, bridge)
    assert info["linkinfo"]["info_kind"] == "bridge"
    assert info["linkinfo"]["info_data"]["stp_state"] == 0
    assert info["linkinfo"]["info_data"]["forward_delay"] == 0
    assert info["linkinfo"]["info_data"]["nf_call_iptables"] == 1
    assert ports_of(host_a, bridge) == sorted(common.tap_name(v) for v in (first, second))
    assert json.loads(open(driver.state_file).read()) == [bridge]

    driver.unplug(instance, first)
    assert link(host_a, bridge) is not None, "bridge removed while a VIF still uses it"
    driver.unplug(instance, second)
    assert link(host_a, bridge) is None
    assert json.loads(open(driver.state_file).read()) == []
    driver.unplug(instance, second)


def test_plug_repairs_a_half_done_plug(net, tmp_path):
    """A tap left behind outside the bridge (crash between steps) is adopted."""
    host_a = net.netns("A")
    bridge = net.bridge(net.name("br"), host_a)
    driver = LinuxBridgeVifDriver(host_conf(tmp_path, **{"vif_bridge.netns": host_a}), "a")
    vif = new_vif("n1", details={"bridge": bridge})
    tap = common.tap_name(vif)
    run("ip", "tuntap", "add", "dev", tap, "mode", "tap", netns=host_a)
    net.undo.push(run, "ip", "link", "del", tap, netns=host_a, check=False)

    driver.plug({"uuid": "i"}, vif)
    assert link(host_a, tap)["master"] == bridge
    assert "UP" in link(host_a, tap)["flags"]
    driver.unplug({"uuid": "i"}, vif)
    assert link(host_a, tap) is None
    assert link(host_a, bridge) is not None
