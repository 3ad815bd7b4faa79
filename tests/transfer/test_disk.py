"""compute.disk against the real qemu-img (info, create, flatten, resize)."""

import hashlib
import os
import subprocess

import pytest

from compute import disk
from godwit import exception
from tests.transfer.helpers import qemu_io, tool

MiB = 1024 ** 2
GiB = 1024 ** 3

pytestmark = pytest.mark.usefixtures("tools")


def fingerprint(path):
    st = os.stat(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return digest, st.st_size, st.st_mtime_ns


def test_create_and_info(tmp_path):
    path = tmp_path / "disk.qcow2"
    created = disk.create(path, 64 * MiB)
    assert created == disk.info(path)
    assert created["format"] == "qcow2"
    assert created["virtual_size"] == 64 * MiB
    assert 0 < created["actual_size"] < 64 * MiB  # sparse
    assert created["backing_file"] is None and created["backing_format"] is None

    raw = disk.create(tmp_path / "disk.raw", 8 * MiB, fmt="raw")
    assert (raw["format"], raw["virtual_size"]) == ("raw", 8 * MiB)


def test_overlay_inherits_size_and_reports_absolute_backing_file(tmp_path):
    base = tmp_path / "base.qcow2"
    disk.create(base, 96 * MiB)
    cwd = os.getcwd()
    os.chdir("/")  # the relative name is resolved against the overlay's directory
    try:
        overlay = disk.create(tmp_path / "overlay.qcow2", backing_file="base.qcow2")
    finally:
        os.chdir(cwd)
    assert overlay["virtual_size"] == 96 * MiB
    assert overlay["backing_file"] == str(base)
    assert overlay["backing_format"] == "qcow2"

    absolute = disk.create(tmp_path / "overlay2.qcow2", 128 * MiB, backing_file=base)
    assert absolute["virtual_size"] == 128 * MiB
    assert absolute["backing_file"] == str(base)


def test_create_refuses_bad_requests(tmp_path):
    with pytest.raises(exception.InvalidDiskRequest, match="needs size_bytes"):
        disk.create(tmp_path / "a.qcow2")
    with pytest.raises(exception.InvalidDiskRequest, match="cannot have a backing file"):
        disk.create(tmp_path / "a.raw", fmt="raw", backing_file=tmp_path / "b.qcow2")
    with pytest.raises(exception.InvalidDiskRequest, match="not supported"):
        disk.create(tmp_path / "a.vmdk", MiB, fmt="vmdk")
    with pytest.raises(exception.InvalidDiskRequest, match="positive number of bytes"):
        disk.create(tmp_path / "a.qcow2", -1)
    with pytest.raises(exception.DiskNotFound):
        disk.create(tmp_path / "a.qcow2", backing_file=tmp_path / "missing.qcow2")
    disk.create(tmp_path / "exists.qcow2", MiB)
    with pytest.raises(exception.InvalidDiskRequest, match="already exists"):
        disk.create(tmp_path / "exists.qcow2", MiB)
    assert sorted(os.listdir(tmp_path)) == ["exists.qcow2"]


def test_info_on_a_missing_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.qcow2"
    with pytest.raises(exception.DiskNotFound) as e:
        disk.info(missing)
    assert str(e.value) == f"Disk image {missing} does not exist."
    assert e.value.code == 404


def test_info_on_an_unreadable_image_reports_qemu_img(tmp_path):
    bogus = tmp_path / "bogus.qcow2"
    # qcow2 magic and version 3, but a cluster size of 2^0: qemu-img rejects it
    bogus.write_bytes(b"QFI\xfb\0\0\0\3" + b"\0" * 100)
    with pytest.raises(exception.DiskOperationFailed) as e:
        disk.info(bogus)
    assert "qemu-img info" in str(e.value) and "exit code 1" in str(e.value)
    assert "Unsupported cluster size" in str(e.value)


def test_info_works_on_an_image_in_use(tmp_path):
    path = tmp_path / "busy.qcow2"
    disk.create(path, 16 * MiB)
    # An interactive qemu-io holds the image open with its write lock, as a
    # running guest's QEMU would.
    holder = subprocess.Popen([tool("qemu-io"), "-f", "qcow2", str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        holder.stdout.read1(64)  # its prompt: the image is open and locked
        locked = subprocess.run([tool("qemu-img"), "info", str(path)], capture_output=True,
                                text=True, timeout=30)
        assert locked.returncode != 0 and "lock" in locked.stderr  # without -U
        assert disk.info(path)["virtual_size"] == 16 * MiB
    finally:
        holder.communicate(b"quit\n", timeout=10)


def test_missing_qemu_img_says_to_install_qemu_utils(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(exception.QemuImgNotFound) as e:
        disk.create(tmp_path / "a.qcow2", MiB)
    assert "qemu-img is not installed" in str(e.value)
    assert "qemu-utils" in str(e.value)


def test_flatten_merges_the_backing_chain(tmp_path):
    base = tmp_path / "base.qcow2"
    disk.create(base, 64 * MiB)
    qemu_io(base, "write -P 0x5a 0 1M")
    overlay = tmp_path / "overlay.qcow2"
    disk.create(overlay, backing_file=base)
    qemu_io(overlay, "write -P 0xa5 1M 1M")

    flat = tmp_path / "flat.qcow2"
    result = disk.flatten(overlay, flat)
    assert result["backing_file"] is None and result["format"] == "qcow2"
    assert result["virtual_size"] == 64 * MiB
    assert sorted(os.listdir(tmp_path)) == ["base.qcow2", "flat.qcow2", "overlay.qcow2"]
    os.rename(base, tmp_path / "gone.qcow2")  # the flat image must not need it
    qemu_io(flat, "read -P 0x5a 0 1M", read_only=True)
    qemu_io(flat, "read -P 0xa5 1M 1M", read_only=True)
    qemu_io(flat, "read -P 0 2M 1M", read_only=True)

    flat_raw = disk.flatten(flat, tmp_path / "flat.raw", fmt="raw")
    assert flat_raw["format"] == "raw" and flat_raw["backing_file"] is None


def test_flatten_refuses_its_own_source(tmp_path):
    path = tmp_path / "a.qcow2"
    disk.create(path, MiB)
    with pytest.raises(exception.InvalidDiskRequest, match="onto itself"):
        disk.flatten(path, path)
    with pytest.raises(exception.DiskNotFound):
        disk.flatten(tmp_path / "missing.qcow2", tmp_path / "b.qcow2")


def test_resize_grows(tmp_path):
    path = tmp_path / "disk.qcow2"
    disk.create(path, 64 * MiB)
    qemu_io(path, "write -P 0x5a 0 1M")
    assert disk.resize(path, 128 * MiB) is True
    assert disk.info(path)["virtual_size"] == 128 * MiB
    qemu_io(path, "read -P 0x5a 0 1M", read_only=True)
    qemu_io(path, "write -P 0x33 127M 1M")  # the new space is usable


def test_resize_to_the_same_size_does_nothing(tmp_path):
    path = tmp_path / "disk.qcow2"
    disk.create(path, 64 * MiB)
    before = fingerprint(path)
    assert disk.resize(path, 64 * MiB) is False
    assert fingerprint(path) == before


def test_resize_refuses_to_shrink_and_leaves_the_file_alone(tmp_path):
    path = tmp_path / "disk.qcow2"
    disk.create(path, 2 * GiB)
    qemu_io(path, "write -P 0x5a 0 1M")
    before = fingerprint(path)
    with pytest.raises(exception.DiskShrinkRefused) as e:
        disk.resize(path, 1 * GiB)
    assert str(e.value) == (f"cannot shrink disk {path} from 2 GiB to 1 GiB; choose a flavor "
                            "with at least 2 GiB root disk")
    assert e.value.code == 400
    assert fingerprint(path) == before
    assert disk.info(path)["virtual_size"] == 2 * GiB

    with pytest.raises(exception.DiskShrinkRefused, match="from 2 GiB to 1.50 GiB"):
        disk.resize(path, 3 * GiB // 2)
    with pytest.raises(exception.InvalidDiskRequest):
        disk.resize(path, 0)
    assert fingerprint(path) == before
