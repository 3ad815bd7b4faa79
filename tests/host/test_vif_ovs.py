"""OvsVifDriver through os-vif against a real Open vSwitch (userspace datapath).

    host B (netns)                 host A (the root namespace, where OVS runs)
    198.51.100.10 on veth --------- veth port on OVS bridge gw<tag>i (netdev)
                                      |
                                      tap<vif> (os-vif, via the driver) -- tap_guest.py
                                                                           198.51.100.20
OVS runs from the test's own run directory (ovsdb-server + ovs-vswitchd started
by hand, see conftest.Ovs); the bridges and ports the test makes are deleted.
"""

import json
import uuid

import pytest

from compute.vif import common
from compute.vif.ovs import OvsVifDriver
from tests.host.conftest import host_conf, ping, run

GUEST_IP = "198.51.100.20"
PINGER_IP = "198.51.100.10"


@pytest.fixture
def driver(ovs_driver):
    return ovs_driver


def interface_row(ovs, name):
    proc = ovs.vsctl("--format=json", "--columns=name,external_ids,type", "find",
                     "Interface", f"name={name}")
    rows = json.loads(proc.stdout)["data"]
    if not rows:
        return None
    name_, (_, external_ids), type_ = rows[0]
    return {"name": name_, "external_ids": dict(external_ids), "type": type_}


def test_plug_creates_port_and_tap_that_carry_traffic(ovs, net, driver):
    bridge = driver.conf.vif_ovs.bridge
    instance = {"uuid": str(uuid.uuid4()), "name": "vm1"}
    vif = {"uuid": str(uuid.uuid4()), "address": "fa:16:3e:0a:0b:0c",
           "network_id": str(uuid.uuid4()), "details": "{}"}
    tap = common.tap_name(vif)
    net.undo.push(run, "ip", "link", "del", tap, check=False)
    net.undo.push(ovs.vsctl, "--if-exists", "del-port", tap, check=False)

    driver.unplug(instance, vif)  # nothing there yet: quiet
    driver.plug(instance, vif)
    driver.plug(instance, vif)  # idempotent

    assert ovs.vsctl("get", "Bridge", bridge, "datapath_type").stdout.strip() == "netdev"
    assert ovs.vsctl("list-ports", bridge).stdout.split() == [tap]
    row = interface_row(ovs, tap)
    assert row["external_ids"] == {"iface-id": vif["uuid"], "attached-mac": vif["address"],
                                   "vm-uuid": instance["uuid"], "iface-status": "active"}
    link = json.loads(run("ip", "-d", "-j", "link", "show", "dev", tap).stdout)[0]
    assert link["address"] == vif["address"]
    assert link["linkinfo"]["info_kind"] == "tun"
    assert driver.domain_interface(instance, vif) == {
        "type": "ethernet", "source_bridge": bridge, "target_dev": tap,
        "mac": vif["address"], "model": "virtio", "virtualport": None}

    # Another "host" on the bridge reaches a guest on the plugged tap.
    host_b = net.netns("B")
    uplink, peer = net.veth(net.name("upA"), net.name("upB"), None, host_b)
    net.undo.push(ovs.vsctl, "--if-exists", "del-port", uplink, check=False)
    ovs.vsctl("add-port", bridge, uplink)
    net.address(peer, f"{PINGER_IP}/24", host_b)
    net.guest(tap, vif["address"], GUEST_IP)
    assert ping(host_b, GUEST_IP, attempts=10), "guest behind the OVS port unreachable"

    driver.unplug(instance, vif)
    assert interface_row(ovs, tap) is None
    assert run("ip", "link", "show", "dev", tap, check=False).returncode != 0
    assert ovs.vsctl("br-exists", bridge, check=False).returncode == 0  # the bridge stays
    driver.unplug(instance, vif)  # quiet when already gone


def test_vif_details_name_another_bridge(ovs, net, driver):
    other = net.name("x")
    net.undo.push(ovs.vsctl, "--if-exists", "del-br", other, check=False)
    vif = {"uuid": str(uuid.uuid4()), "address": "fa:16:3e:0d:0e:0f", "network_id": "n",
           "details": json.dumps({"bridge": other})}
    net.undo.push(run, "ip", "link", "del", common.tap_name(vif), check=False)
    driver.plug({"uuid": str(uuid.uuid4())}, vif)
    assert ovs.vsctl("list-ports", other).stdout.split() == [common.tap_name(vif)]
    assert driver.domain_interface({"uuid": "i"}, vif)["source_bridge"] == other
    driver.unplug({"uuid": "i"}, vif)
    assert ovs.vsctl("list-ports", other).stdout.split() == []


def test_unreachable_ovsdb_is_a_clear_error(tmp_path):
    from tests.host.conftest import require_host_plumbing

    require_host_plumbing("ip")
    conf = host_conf(tmp_path, **{"os_vif_ovs.ovsdb_connection":
                                  f"unix:{tmp_path}/nothing.sock",
                                  "os_vif_ovs.ovs_vsctl_timeout": 1})
    drv = OvsVifDriver(conf, "hostA")
    vif = {"uuid": str(uuid.uuid4()), "address": "fa:16:3e:00:00:01", "network_id": "n"}
    try:
        with pytest.raises(common.VifPlugFailed) as err:
            drv.plug({"uuid": str(uuid.uuid4())}, vif)
    finally:
        drv.close()
        run("ip", "link", "del", common.tap_name(vif), check=False)
    assert "nothing.sock" in str(err.value) and "Cannot plug VIF" in str(err.value)
