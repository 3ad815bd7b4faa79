"""The real VIF, volume and firewall drivers enumerate what they made on a host.

Each driver goes through the conformance check of
tests/unit/test_driver_enumeration.py (``assert_enumerates``): nothing listed
before, exactly what was made after each make, exactly what is left after each
undo. Beside it the host holds look-alikes that are not Godwit's (a tap of
another name, a veth with a tap's name, an OVS port without os-vif's ids, a
chain in another table, another driver's or host's ledger entries); none is
ever listed. The fixtures are those of the drivers' own host tests.
"""

import json
import uuid

import pytest

from compute.firewall import nftables
from compute.vif import common
from compute.vif.linux_bridge import LinuxBridgeVifDriver
from compute.vif.ovs import OvsVifDriver
from compute.volume import connections
from compute.volume.iscsi_qemu import QemuIscsiVolumeDriver
from compute.volume.local_block import LocalBlockVolumeDriver, loop_devices_of
from compute.volume.os_brick import OsBrickVolumeDriver
from tests.host.conftest import host_conf, require_host_plumbing, run
from tests.host.test_volume_iscsi_qemu import bdm_for
from tests.host.test_volume_os_brick import TARGET, RecordingConnector
from tests.unit.test_driver_enumeration import assert_enumerates


def new_vif(network_id="n1", **extra):
    vif_uuid = str(uuid.uuid4())
    return dict({"uuid": vif_uuid, "address": "fa:16:3e:" + ":".join(
        vif_uuid[i:i + 2] for i in (0, 2, 4)), "network_id": network_id,
        "details": "{}"}, **extra)


def shaped_name():
    """A name of Godwit's tap shape, for look-alikes."""
    return common.tap_name({"uuid": str(uuid.uuid4())})


# --- linux_bridge -------------------------------------------------------------------
def test_linux_bridge_lists_its_taps_in_its_namespace(net, tmp_path):
    host_a, other = net.netns("A"), net.netns("O")
    driver = LinuxBridgeVifDriver(host_conf(tmp_path, **{"vif_bridge.netns": host_a}), "a")
    # Not Godwit's: a tap of another name, a veth pair named like taps, and a
    # Godwit-shaped tap in another namespace.
    for name, ns in ((net.name("tap"), host_a), (shaped_name(), other)):
        run("ip", "tuntap", "add", "dev", name, "mode", "tap", netns=ns)
        net.undo.push(run, "ip", "link", "del", name, netns=ns, check=False)
    net.veth(shaped_name(), shaped_name(), host_a, host_a)

    first, second = {"uuid": str(uuid.uuid4())}, {"uuid": str(uuid.uuid4())}
    network_id = "net" + net.tag + "xyz"
    plugs = [(first, new_vif(network_id)), (first, new_vif(network_id)),
             (second, new_vif(network_id))]
    for _, vif in plugs:
        net.undo.push(run, "ip", "link", "del", common.tap_name(vif), netns=host_a,
                      check=False)
    net.undo.push(run, "ip", "link", "del", "br-" + network_id[:11], netns=host_a,
                  check=False)
    assert_enumerates(driver.list_plugged, [
        (lambda i=i, v=v: driver.plug(i, v), lambda i=i, v=v: driver.unplug(i, v),
         {"vif_id": v["uuid"][:11], "device": common.tap_name(v), "instance_uuid": None})
        for i, v in plugs])


def test_linux_bridge_without_a_namespace_lists_the_root_ones(net, tmp_path):
    """No [vif_bridge] netns: the agent's own namespace (where this test makes one)."""
    driver = LinuxBridgeVifDriver(host_conf(tmp_path), "a")
    bridge = net.name("br")
    net.bridge(bridge)
    vif = new_vif(details={"bridge": bridge})
    tap = common.tap_name(vif)
    net.undo.push(run, "ip", "link", "del", tap, check=False)
    mine = [p for p in driver.list_plugged() if p["device"] == tap]
    assert mine == []
    driver.plug({"uuid": str(uuid.uuid4())}, vif)
    assert {"vif_id": vif["uuid"][:11], "device": tap, "instance_uuid": None} in \
        driver.list_plugged()
    driver.unplug({"uuid": "i"}, vif)
    assert [p for p in driver.list_plugged() if p["device"] == tap] == []


# --- ovs ------------------------------------------------------------------------------


def add_port(ovs, net, bridge, name, **external_ids):
    """A port made by hand (an internal one: OVS makes its device)."""
    net.undo.push(ovs.vsctl, "--if-exists", "del-port", name, check=False)
    ids = [f"external_ids:{k}={v}" for k, v in external_ids.items()]
    ovs.vsctl("--may-exist", "add-br", bridge, "--", "set", "Bridge", bridge,
              "datapath_type=netdev")
    ovs.vsctl("add-port", bridge, name, "--", "set", "Interface", name, "type=internal",
              *ids)


def test_ovs_lists_the_ports_it_made_on_its_bridge(ovs, net, ovs_driver):
    bridge = ovs_driver.conf.vif_ovs.bridge
    first, second = {"uuid": str(uuid.uuid4())}, {"uuid": str(uuid.uuid4())}
    plugs = [(first, new_vif()), (first, new_vif()), (second, new_vif())]
    for _, vif in plugs:
        net.undo.push(run, "ip", "link", "del", common.tap_name(vif), check=False)
        net.undo.push(ovs.vsctl, "--if-exists", "del-port", common.tap_name(vif),
                      check=False)
    steps = [(lambda i=i, v=v: ovs_driver.plug(i, v),
              lambda i=i, v=v: ovs_driver.unplug(i, v),
              {"vif_id": v["uuid"], "device": common.tap_name(v), "instance_uuid": i["uuid"]})
             for i, v in plugs]
    assert ovs_driver.list_plugged() == []   # no bridge yet: nothing
    steps[0][0]()   # the plug creates the bridge; look-alikes go on it next
    # Not the driver's: a port without os-vif's ids, one with only an iface-id,
    # one with both ids but not named as plug() names its taps, and a shaped port
    # with both ids on another bridge.
    vif_id = str(uuid.uuid4())
    add_port(ovs, net, bridge, net.name("p"))
    add_port(ovs, net, bridge, common.tap_name({"uuid": vif_id}), **{"iface-id": vif_id})
    add_port(ovs, net, bridge, net.name("q"), **{"iface-id": str(uuid.uuid4()),
                                                 "vm-uuid": str(uuid.uuid4())})
    other_id = str(uuid.uuid4())
    add_port(ovs, net, net.name("x"), common.tap_name({"uuid": other_id}),
             **{"iface-id": other_id, "vm-uuid": str(uuid.uuid4())})
    net.undo.push(ovs.vsctl, "--if-exists", "del-br", net.name("x"), check=False)
    steps[0][1]()
    assert ovs_driver.list_plugged() == []
    assert_enumerates(ovs_driver.list_plugged, steps)
    assert len(ovs.vsctl("list-ports", bridge).stdout.split()) == 3   # look-alikes stay


def test_ovs_listing_needs_its_ovsdb(tmp_path):
    require_host_plumbing("ip")
    conf = host_conf(tmp_path, **{"os_vif_ovs.ovsdb_connection":
                                  f"unix:{tmp_path}/nothing.sock",
                                  "os_vif_ovs.ovs_vsctl_timeout": 1})
    driver = OvsVifDriver(conf, "hostA")
    try:
        with pytest.raises(common.VifPlugFailed, match="nothing.sock"):
            driver.list_plugged()
    finally:
        driver.close()


# --- nftables -------------------------------------------------------------------------
def test_nftables_lists_the_instances_with_a_chain(net, tmp_path):
    require_host_plumbing("ip", "nft")
    ns = net.netns("B")
    fw = nftables.NftablesFirewallDriver(host_conf(tmp_path, **{"firewall.netns": ns}), "b")
    assert fw.list_filtered() == []   # no table at all
    # Not Godwit's filters: chains in its table that are not inst-<uuid>, and an
    # inst-<uuid> chain in another table.
    stranger = str(uuid.uuid4())
    run("nft", "-f", "-", netns=ns, input="\n".join([
        "add table inet godwit", "add chain inet godwit inst-zz",
        "add chain inet godwit operators", "add table inet other",
        f"add chain inet other inst-{stranger}"]) + "\n")
    instances = [{"uuid": str(uuid.uuid4())} for _ in range(3)]
    networks = {i["uuid"]: [new_vif()] for i in instances}
    networks[instances[0]["uuid"]].append(new_vif())
    networks[instances[2]["uuid"]] = []   # a filter without VIFs is a filter too
    assert_enumerates(fw.list_filtered, [
        (lambda i=i: fw.apply_instance_filter(i, networks[i["uuid"]]),
         lambda i=i: fw.unfilter_instance(i, networks[i["uuid"]]), i["uuid"])
        for i in instances])
    ruleset = run("nft", "list", "ruleset", netns=ns).stdout
    assert "inst-zz" in ruleset and f"inst-{stranger}" in ruleset
    # Another table name configured: that table's chains only.
    other = nftables.NftablesFirewallDriver(
        host_conf(tmp_path, **{"firewall.netns": ns, "firewall.table": "other"}), "b")
    assert other.list_filtered() == [stranger]


def test_nftables_lists_upper_case_uuids_as_their_chain_names_them(net, tmp_path):
    require_host_plumbing("ip", "nft")
    ns = net.netns("B")
    fw = nftables.NftablesFirewallDriver(host_conf(tmp_path, **{"firewall.netns": ns}), "b")
    instance = {"uuid": str(uuid.uuid4()).upper()}
    fw.apply_instance_filter(instance, [new_vif()])
    assert fw.list_filtered() == [instance["uuid"].lower()]
    fw.unfilter_instance(instance, [])
    assert fw.list_filtered() == []


# --- volumes ----------------------------------------------------------------------------
def ledger_look_alikes(tmp_path, host, driver_name):
    """Entries that are not the driver's: another driver's on its host, and its own
    kind's on another host."""
    other_kind = "iscsi_qemu" if driver_name != "iscsi_qemu" else "local_block"
    connections.ConnectionLedger(str(tmp_path), host).record(
        {"uuid": str(uuid.uuid4())}, {"volume_id": str(uuid.uuid4())}, other_kind, {})
    connections.ConnectionLedger(str(tmp_path), host + "-other").record(
        {"uuid": str(uuid.uuid4())}, {"volume_id": str(uuid.uuid4())}, driver_name, {})


@pytest.fixture
def volume_files(tmp_path, undo):
    require_host_plumbing("losetup")
    (tmp_path / "volumes").mkdir()
    made = []

    def make():
        volume_id = str(uuid.uuid4())
        path = tmp_path / "volumes" / f"volume-{volume_id}"
        with open(path, "wb") as f:
            f.truncate(1024 * 1024)
        undo.push(lambda: [run("losetup", "-d", d, check=False)
                           for d in loop_devices_of(str(path))])
        made.append(str(path))
        return volume_id
    return make


def test_local_block_lists_its_ledger(volume_files, tmp_path):
    driver = LocalBlockVolumeDriver(
        host_conf(tmp_path, **{"local_block.volumes_path": str(tmp_path / "volumes")}),
        "hostA")
    ledger_look_alikes(tmp_path, "hostA", "local_block")
    first, second = {"uuid": str(uuid.uuid4())}, {"uuid": str(uuid.uuid4())}
    bdms = [(first, {"volume_id": volume_files(), "destination_type": "volume"}),
            (first, {"volume_id": volume_files(), "destination_type": "volume"}),
            (second, {"volume_id": volume_files(), "destination_type": "volume"})]
    # An operator's loop device of a volume file is not a connection of ours.
    run("losetup", "-f", str(tmp_path / "volumes" / f"volume-{bdms[2][1]['volume_id']}"))
    assert_enumerates(driver.list_connections, [
        (lambda i=i, b=b: driver.connect_volume(i, b),
         lambda i=i, b=b: driver.disconnect_volume(i, b),
         {"instance_uuid": i["uuid"], "volume_id": b["volume_id"]}) for i, b in bdms])


def test_local_block_lists_a_connect_a_crash_interrupted(volume_files, tmp_path):
    """The ledger's 'attaching' entry is listed: its loop device may exist."""
    driver = LocalBlockVolumeDriver(
        host_conf(tmp_path, **{"local_block.volumes_path": str(tmp_path / "volumes")}),
        "hostA")
    instance, bdm = {"uuid": str(uuid.uuid4())}, {"volume_id": volume_files()}
    path = driver.backing_file(bdm)
    driver.ledger.record(instance, bdm, "local_block", {
        "driver_volume_type": "block", "data": {"attaching": True, "backing_file": path,
                                                "devices_before": [],
                                                "volume_id": bdm["volume_id"]}})
    run("losetup", "-f", path)   # the agent died right after this
    assert driver.list_connections() == [{"instance_uuid": instance["uuid"],
                                          "volume_id": bdm["volume_id"]}]
    driver.disconnect_volume(instance, bdm)
    assert driver.list_connections() == [] and loop_devices_of(path) == []


def test_iscsi_qemu_lists_its_ledger(tgtd, tmp_path):
    backing = tmp_path / "lun.img"
    with open(backing, "wb") as f:
        f.truncate(1024 * 1024)
    target = {"target_portal": tgtd.portal, "target_iqn": tgtd.add_lun(str(backing), "e1"),
              "target_lun": 1}
    driver = QemuIscsiVolumeDriver(host_conf(tmp_path, **{"iscsi_qemu.probe_lun": False}),
                                   "hostB")
    ledger_look_alikes(tmp_path, "hostB", "iscsi_qemu")
    first, second = {"uuid": str(uuid.uuid4())}, {"uuid": str(uuid.uuid4())}
    shared = bdm_for(target)
    bdms = [(first, shared), (first, bdm_for(target)), (second, shared)]
    assert_enumerates(driver.list_connections, [
        (lambda i=i, b=b: driver.connect_volume(i, b),
         lambda i=i, b=b: driver.disconnect_volume(i, b),
         {"instance_uuid": i["uuid"], "volume_id": b["volume_id"]}) for i, b in bdms])


def test_os_brick_lists_its_ledger(tmp_path, monkeypatch):
    """Through the recording connector of test_volume_os_brick (no kernel initiator)."""
    driver = OsBrickVolumeDriver(host_conf(tmp_path), "hostA")
    recorder = RecordingConnector()
    monkeypatch.setattr(driver, "KERNEL_SUPPORT", {})
    monkeypatch.setattr(driver, "TOOLS", {})
    monkeypatch.setattr(driver, "connector", lambda protocol: recorder)
    ledger_look_alikes(tmp_path, "hostA", "os_brick")
    first, second = {"uuid": str(uuid.uuid4())}, {"uuid": str(uuid.uuid4())}
    bdms = [(first, {"volume_id": str(uuid.uuid4()), "destination_type": "volume",
                     "connection_info": json.dumps({"driver_volume_type": "iscsi",
                                                    "data": TARGET})})
            for _ in range(2)]
    bdms.append((second, dict(bdms[0][1])))
    assert_enumerates(driver.list_connections, [
        (lambda i=i, b=b: driver.connect_volume(i, b),
         lambda i=i, b=b: driver.disconnect_volume(i, b),
         {"instance_uuid": i["uuid"], "volume_id": b["volume_id"]}) for i, b in bdms])
    assert [c[0] for c in recorder.calls].count("disconnect") == 3
