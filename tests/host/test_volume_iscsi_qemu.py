"""QemuIscsiVolumeDriver against a real userspace iSCSI target (tgtd).

tgtd serves a file-backed LUN on 127.0.0.1:<free port>; connect_volume() must
return connection_info from which QEMU's own initiator (libiscsi, as in
``qemu-io iscsi://...``: the path a libvirt ``<disk type='network'
protocol='iscsi'>`` takes) reads the file's content, with nothing attached on
the host.
"""

import json
import os
import uuid

import pytest

from compute.volume import connections
from compute.volume.iscsi_qemu import QemuIscsiVolumeDriver, iscsi_url, split_portal
from tests.host.conftest import free_port, host_conf, require_host_plumbing, run

CONTENT = b"GODWIT-ISCSI-LUN-" + uuid.uuid4().hex.encode()


@pytest.fixture
def lun(tgtd, tmp_path):
    backing = tmp_path / "lun.img"
    with open(backing, "wb") as f:
        f.write(CONTENT)
        f.truncate(4 * 1024 * 1024)
    iqn = tgtd.add_lun(str(backing), "vol1")
    return {"target_portal": tgtd.portal, "target_iqn": iqn, "target_lun": 1}


def bdm_for(target, volume_id=None):
    return {"volume_id": volume_id or str(uuid.uuid4()), "destination_type": "volume",
            "connection_info": json.dumps({"driver_volume_type": "iscsi", "data": target})}


def test_connect_returns_info_qemu_can_read_and_disconnect_forgets(lun, tmp_path):
    require_host_plumbing("iscsi-inq", "qemu-img")
    driver = QemuIscsiVolumeDriver(host_conf(tmp_path), "hostB")
    instance = {"uuid": str(uuid.uuid4())}
    bdm = bdm_for(lun)

    info = driver.connect_volume(instance, bdm)
    assert info == {"driver_volume_type": "iscsi",
                    "data": {"target_portal": lun["target_portal"],
                             "target_iqn": lun["target_iqn"], "target_lun": 1,
                             "volume_id": bdm["volume_id"]}}
    assert driver.connect_volume(instance, bdm) == info  # idempotent
    assert driver.check_lun(bdm, info["data"]) is True  # iscsi-inq logged in and asked

    # QEMU's initiator reads the LUN from exactly this connection_info.
    copy = tmp_path / "copy.raw"
    run("qemu-img", "convert", "-f", "raw", "-O", "raw", iscsi_url(info["data"]), copy)
    with open(copy, "rb") as f:
        assert f.read(len(CONTENT)) == CONTENT
    assert os.path.getsize(copy) == 4 * 1024 * 1024

    ledger = connections.ConnectionLedger(str(tmp_path), "hostB")
    [entry] = ledger.entries()
    assert entry["connection_info"] == info and entry["driver"] == "iscsi_qemu"
    assert os.path.dirname(ledger.root) == str(tmp_path / "volume-connections")

    driver.disconnect_volume(instance, bdm)
    assert ledger.entries() == []
    driver.disconnect_volume(instance, bdm)  # quiet when not connected


def test_unreachable_portal_is_a_clear_error(tmp_path):
    require_host_plumbing()
    driver = QemuIscsiVolumeDriver(host_conf(tmp_path, **{"iscsi_qemu.connect_timeout": 1}),
                                   "hostB")
    port = free_port()  # nobody listens there
    bdm = bdm_for({"target_portal": f"127.0.0.1:{port}", "target_iqn": "iqn.x:y",
                   "target_lun": 1})
    with pytest.raises(connections.VolumeConnectFailed) as err:
        driver.connect_volume({"uuid": "i"}, bdm)
    assert f"iSCSI portal 127.0.0.1:{port} of iqn.x:y is not reachable" in str(err.value)
    assert connections.ConnectionLedger(str(tmp_path), "hostB").entries() == []


def test_missing_lun_is_found_by_the_probe(lun, tmp_path):
    require_host_plumbing("iscsi-inq")
    driver = QemuIscsiVolumeDriver(host_conf(tmp_path), "hostB")
    bdm = bdm_for(dict(lun, target_lun=7))
    with pytest.raises(connections.VolumeConnectFailed) as err:
        driver.connect_volume({"uuid": "i"}, bdm)
    assert "LUN 7 of " + lun["target_iqn"] in str(err.value)
    assert "iscsi-inq failed" in str(err.value)


def test_connection_info_needs_the_target(tmp_path):
    driver = QemuIscsiVolumeDriver(host_conf(tmp_path), "hostB")
    with pytest.raises(connections.VolumeConnectFailed, match="lacks target_iqn"):
        driver.connection_info({"volume_id": "v",
                                "connection_info": {"target_portal": "127.0.0.1"}})
    # Flat stored info and CHAP credentials pass through.
    info = driver.connection_info({"volume_id": "v", "connection_info": json.dumps(
        {"target_portal": "[::1]:3261", "target_iqn": "iqn.a:b", "auth_method": "CHAP",
         "auth_username": "u", "auth_password": "p"})})
    assert info["data"]["target_lun"] == 0 and info["data"]["auth_username"] == "u"
    assert split_portal("[::1]:3261") == ("::1", 3261)
    assert split_portal("192.0.2.9") == ("192.0.2.9", 3260)
    assert iscsi_url(info["data"]) == "iscsi://[::1]:3261/iqn.a:b/0"


def test_volume_without_connection_info_uses_the_configured_target(tmp_path):
    conf = host_conf(tmp_path, **{"iscsi_qemu.target_portal": "198.51.100.1:3262"})
    driver = QemuIscsiVolumeDriver(conf, "hostB")
    info = driver.connection_info({"volume_id": "v-1"})
    assert info["data"] == {"target_portal": "198.51.100.1:3262",
                            "target_iqn": "iqn.2010-10.org.openstack:volume-v-1",
                            "target_lun": 1, "volume_id": "v-1"}
    # A BDM's own target wins over the configured one.
    own = driver.connection_info(bdm_for({"target_portal": "127.0.0.1:3260",
                                          "target_iqn": "iqn.a:own", "target_lun": 2}))
    assert own["data"]["target_iqn"] == "iqn.a:own" and own["data"]["target_lun"] == 2
    # Without a configured portal such a BDM cannot connect, and says what it lacks.
    with pytest.raises(connections.VolumeConnectFailed, match="lacks target_portal"):
        QemuIscsiVolumeDriver(host_conf(tmp_path), "hostB").connection_info({"volume_id": "v"})
