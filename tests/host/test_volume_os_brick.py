"""OsBrickVolumeDriver: as far as a host without a kernel initiator allows.

What runs for real: os-brick itself (connector properties, the connector
factory, its ISCSIConnector failing when iscsiadm is absent) and the driver's
host checks. A real kernel attach cannot run on these machines (no SCSI, no
iSCSI initiator, no NFS client in the kernel); the connect/disconnect logic
around os-brick is tested with a recording stand-in for the connector.
"""

import json
import os
import uuid

import pytest

from compute.volume import connections
from compute.volume.os_brick import OsBrickVolumeDriver
from tests.host.conftest import host_conf

TARGET = {"target_portal": "127.0.0.1:3260", "target_iqn": "iqn.2026-11.org.godwit:v1",
          "target_lun": 1}


def bdm(protocol="iscsi", data=TARGET):
    return {"volume_id": str(uuid.uuid4()), "destination_type": "volume",
            "connection_info": json.dumps({"driver_volume_type": protocol, "data": data})}


@pytest.fixture
def driver(tmp_path):
    return OsBrickVolumeDriver(host_conf(tmp_path), "hostA")


def test_real_os_brick_properties_and_connector(driver):
    from os_brick.initiator.connectors.iscsi import ISCSIConnector

    props = driver.connector_properties()
    assert props["host"] == "hostA" and props["multipath"] is False
    assert props["os_type"] == "linux" and "ip" in props
    assert isinstance(driver.connector("iscsi"), ISCSIConnector)
    assert driver.connector("ISCSI") is driver.connector("iscsi")  # one per protocol


def test_no_kernel_initiator_is_a_clear_error(driver, tmp_path, monkeypatch):
    missing = str(tmp_path / "no-iscsi_transport")
    monkeypatch.setitem(driver.KERNEL_SUPPORT, "ISCSI",
                        (missing, "dir", OsBrickVolumeDriver.KERNEL_SUPPORT["ISCSI"][2]))
    with pytest.raises(connections.VolumeConnectFailed) as err:
        driver.connect_volume({"uuid": "i"}, bdm())
    assert "no kernel iSCSI initiator on this host" in str(err.value)
    assert "iscsi_qemu" in str(err.value)


def test_this_hosts_kernel_is_checked_for_real(driver):
    problem = driver.host_support_problem("iscsi")
    if not os.path.isdir("/sys/class/iscsi_transport"):  # these machines
        assert problem.startswith("no kernel iSCSI initiator on this host")
        with pytest.raises(connections.VolumeConnectFailed,
                           match="no kernel iSCSI initiator on this host"):
            driver.connect_volume({"uuid": "i"}, bdm())
    else:
        assert problem is None or "iscsiadm" in problem


def test_os_brick_failure_is_wrapped(driver, tmp_path, monkeypatch):
    """Past the checks, the real ISCSIConnector fails (no iscsiadm on PATH)."""
    monkeypatch.setattr(driver, "KERNEL_SUPPORT", {})
    monkeypatch.setattr(driver, "TOOLS", {})
    monkeypatch.setenv("PATH", str(tmp_path))  # no iscsiadm, whatever is installed
    with pytest.raises(connections.VolumeConnectFailed) as err:
        driver.connect_volume({"uuid": "i"}, bdm())
    assert "os-brick ISCSI connector" in str(err.value) and "iscsiadm" in str(err.value)
    assert connections.ConnectionLedger(str(tmp_path), "hostA").entries() == []


class RecordingConnector:
    def __init__(self):
        self.calls = []

    def connect_volume(self, data):
        self.calls.append(("connect", data))
        return {"path": "/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-x-lun-1", "type": "block"}

    def disconnect_volume(self, data, device_info):
        self.calls.append(("disconnect", data, device_info))


def test_connect_and_disconnect_through_the_connector(driver, tmp_path, monkeypatch):
    recorder = RecordingConnector()
    monkeypatch.setattr(driver, "KERNEL_SUPPORT", {})
    monkeypatch.setattr(driver, "TOOLS", {})
    monkeypatch.setattr(driver, "connector", lambda protocol: recorder)
    instance, volume = {"uuid": str(uuid.uuid4())}, bdm()

    info = driver.connect_volume(instance, volume)
    assert info == {"driver_volume_type": "iscsi", "data": dict(
        TARGET, device_path="/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-x-lun-1",
        volume_id=volume["volume_id"])}
    assert recorder.calls == [("connect", TARGET)]

    driver.disconnect_volume(instance, volume)
    assert recorder.calls[1] == ("disconnect", info["data"], {
        "path": "/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-x-lun-1", "type": "block"})
    driver.disconnect_volume(instance, volume)  # not connected: quiet, os-brick not called
    assert len(recorder.calls) == 2


def test_missing_protocol_is_a_clear_error(driver):
    with pytest.raises(connections.VolumeConnectFailed, match="no driver_volume_type"):
        driver.connect_volume({"uuid": "i"}, {"volume_id": "v", "connection_info": "{}"})
