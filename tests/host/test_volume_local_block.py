"""LocalBlockVolumeDriver with real loop devices."""

import json
import os
import uuid

import pytest

from compute.volume import connections
from compute.volume.local_block import LocalBlockVolumeDriver, loop_devices_of
from tests.host.conftest import host_conf, require_host_plumbing, run

CONTENT = b"GODWIT-LOCAL-BLOCK-" + uuid.uuid4().hex.encode()


@pytest.fixture
def volume(tmp_path, undo):
    require_host_plumbing("losetup")
    volume_id = str(uuid.uuid4())
    path = tmp_path / "volumes" / f"volume-{volume_id}"
    path.parent.mkdir()
    with open(path, "wb") as f:
        f.write(CONTENT)
        f.truncate(1024 * 1024)
    # Whatever happens, no loop device of this file outlives the test.
    undo.push(lambda: [run("losetup", "-d", d, check=False)
                       for d in loop_devices_of(str(path))])
    return volume_id, str(path)


def test_connect_attaches_a_loop_device_and_disconnect_frees_it(volume, tmp_path):
    volume_id, path = volume
    driver = LocalBlockVolumeDriver(host_conf(tmp_path), "hostA")
    instance = {"uuid": str(uuid.uuid4())}
    bdm = {"volume_id": volume_id, "destination_type": "volume"}

    info = driver.connect_volume(instance, bdm)
    device = info["data"]["device_path"]
    assert info["driver_volume_type"] == "block"
    assert device.startswith("/dev/loop") and os.path.exists(device)
    with open(device, "rb") as f:
        assert f.read(len(CONTENT)) == CONTENT
    assert loop_devices_of(path) == [device]
    assert driver.connect_volume(instance, bdm) == info  # reuses the device
    assert loop_devices_of(path) == [device]
    [entry] = connections.ConnectionLedger(str(tmp_path), "hostA").entries()
    assert entry["connection_info"]["data"]["device_path"] == device

    driver.disconnect_volume(instance, bdm)
    assert loop_devices_of(path) == []
    assert run("losetup", device, check=False).returncode != 0  # the device is free
    assert connections.ConnectionLedger(str(tmp_path), "hostA").entries() == []
    driver.disconnect_volume(instance, bdm)  # quiet when not connected


def test_backing_file_named_by_the_bdm(volume, tmp_path):
    _, path = volume
    driver = LocalBlockVolumeDriver(host_conf(tmp_path), "hostA")
    bdm = {"volume_id": "other", "connection_info": json.dumps(
        {"driver_volume_type": "block", "data": {"backing_file": path}})}
    info = driver.connect_volume({"uuid": "i"}, bdm)
    assert info["data"]["backing_file"] == os.path.realpath(path)
    driver.disconnect_volume({"uuid": "i"}, bdm)
    assert loop_devices_of(path) == []


def test_missing_backing_file_is_a_clear_error(tmp_path):
    require_host_plumbing("losetup")
    driver = LocalBlockVolumeDriver(host_conf(tmp_path), "hostA")
    with pytest.raises(connections.VolumeConnectFailed, match="does not exist on this host"):
        driver.connect_volume({"uuid": "i"}, {"volume_id": "nope"})


def test_two_hosts_on_one_machine_each_keep_their_own_device(volume, tmp_path):
    """As in a live migration between two agents on one machine: the destination
    attaches a device of its own, and the source's disconnect leaves it alone."""
    volume_id, path = volume
    conf = host_conf(tmp_path)
    source = LocalBlockVolumeDriver(conf, "hostA")
    dest = LocalBlockVolumeDriver(conf, "hostB")
    instance = {"uuid": str(uuid.uuid4())}
    bdm = {"volume_id": volume_id, "destination_type": "volume"}
    src_dev = source.connect_volume(instance, bdm)["data"]["device_path"]
    dst_dev = dest.connect_volume(instance, bdm)["data"]["device_path"]
    assert src_dev != dst_dev
    assert sorted(loop_devices_of(path)) == sorted([src_dev, dst_dev])
    source.disconnect_volume(instance, bdm)
    assert loop_devices_of(path) == [dst_dev]
    with open(dst_dev, "rb") as f:
        assert f.read(len(CONTENT)) == CONTENT
    dest.disconnect_volume(instance, bdm)
    assert loop_devices_of(path) == []


def test_disconnect_without_a_ledger_entry_frees_every_device_of_the_file(volume, tmp_path):
    volume_id, path = volume
    run("losetup", "-f", path)  # attached by hand, no ledger entry
    assert len(loop_devices_of(path)) == 1
    LocalBlockVolumeDriver(host_conf(tmp_path), "hostA").disconnect_volume(
        {"uuid": "i"}, {"volume_id": volume_id})
    assert loop_devices_of(path) == []
