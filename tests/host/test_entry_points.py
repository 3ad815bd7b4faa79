"""Every host driver loads by its entry-point name, as the compute agent loads it."""

import pytest

from compute import drivers
from compute.firewall.nftables import NftablesFirewallDriver
from compute.vif.linux_bridge import LinuxBridgeVifDriver
from compute.vif.ovs import OvsVifDriver
from compute.volume.iscsi_qemu import QemuIscsiVolumeDriver
from compute.volume.local_block import LocalBlockVolumeDriver
from compute.volume.os_brick import OsBrickVolumeDriver
from tests.host.conftest import host_conf


@pytest.mark.parametrize("kind, name, cls", [
    ("vif", "ovs", OvsVifDriver),
    ("vif", "linux_bridge", LinuxBridgeVifDriver),
    ("firewall", "nftables", NftablesFirewallDriver),
    ("volume", "iscsi_qemu", QemuIscsiVolumeDriver),
    ("volume", "local_block", LocalBlockVolumeDriver),
    ("volume", "os_brick", OsBrickVolumeDriver),
])
def test_driver_loads_by_name(tmp_path, kind, name, cls):
    driver = drivers.load(kind, name, host_conf(tmp_path), "host1")
    assert type(driver) is cls and driver.host == "host1"


def test_domain_interface_contract(tmp_path):
    """The dict the libvirt driver consumes, from both VIF drivers (no host needed)."""
    conf = host_conf(tmp_path, **{"vif_bridge.bridge_mappings": ["net-1:br-ex"]})
    vif = {"uuid": "0123456789abcdef-0000-0000-000000000000", "address": "fa:16:3e:01:02:03",
           "network_id": "net-1"}
    expected = {"type": "ethernet", "target_dev": "tap0123456789a", "mac": vif["address"],
                "model": "virtio", "virtualport": None}
    bridge = LinuxBridgeVifDriver(conf, "h").domain_interface({"uuid": "i"}, vif)
    assert bridge == dict(expected, source_bridge="br-ex")
    ovs = OvsVifDriver(conf, "h").domain_interface({"uuid": "i"}, vif)
    assert ovs == dict(expected, source_bridge="br-int")


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="bridge_mappings"):
        LinuxBridgeVifDriver(host_conf(tmp_path, **{"vif_bridge.bridge_mappings": ["x"]}),
                             "h")
    with pytest.raises(ValueError, match="default_ingress"):
        NftablesFirewallDriver(host_conf(tmp_path, **{"firewall.default_ingress": ["gre"]}),
                               "h")
    with pytest.raises(ValueError, match="table"):
        NftablesFirewallDriver(host_conf(tmp_path, **{"firewall.table": "a b"}), "h")
