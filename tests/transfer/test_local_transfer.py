"""The 'local' driver (shared instance path, or several hosts on one machine)."""

import os
import subprocess

import pytest
from stevedore import driver as stevedore_driver
from stevedore import exception as stevedore_exception

from compute import transfer
from compute.transfer.local import LocalTransfer
from tests.transfer.helpers import allocated, make_conf, qemu_img_compare, qemu_io, tool

MiB = 1024 ** 2
GiB = 1024 ** 3

pytestmark = pytest.mark.usefixtures("tools")


@pytest.fixture
def driver():
    return transfer.load(make_conf("local"))


def test_copy_keeps_a_sparse_image_sparse(driver, tmp_path):
    src = tmp_path / "disk.qcow2"
    subprocess.run([tool("qemu-img"), "create", "-q", "-f", "qcow2", "-o",
                    "preallocation=metadata", str(src), "1G"], check=True, timeout=60)
    qemu_io(src, "write -P 0x5a 0 1M")
    qemu_io(src, "write -P 0xa5 700M 1M")
    dest_dir = tmp_path / "dest"
    driver.make_dir("compute2", str(dest_dir))
    dest = dest_dir / "disk"
    dest.write_bytes(b"an older copy")  # replaced

    driver.copy_to(src, "compute2", str(dest))

    assert os.listdir(dest_dir) == ["disk"]
    assert qemu_img_compare(src, dest)
    assert os.path.getsize(dest) == os.path.getsize(src) >= GiB
    assert allocated(dest) < 64 * MiB
    qemu_io(dest, "read -P 0xa5 700M 1M", read_only=True)


def test_copy_onto_itself_is_a_no_op(driver, tmp_path):
    """Shared storage: the destination path is the source file."""
    src = tmp_path / "disk"
    src.write_bytes(b"guest data")
    before = os.stat(src)
    driver.copy_to(src, "compute2", str(src))
    assert src.read_bytes() == b"guest data"
    assert os.stat(src).st_ino == before.st_ino
    assert os.listdir(tmp_path) == ["disk"]


def test_make_dir_remove_exists(driver, tmp_path):
    top = str(tmp_path / "inst")
    assert driver.exists("compute2", top) is False
    driver.make_dir("compute2", top + "/a/b")
    driver.make_dir("compute2", top + "/a/b")
    assert driver.exists("compute2", top + "/a/b") is True
    (tmp_path / "inst" / "a" / "f").write_bytes(b"x")
    driver.remove("compute2", top + "/a/f")
    assert not (tmp_path / "inst" / "a" / "f").exists()
    driver.remove("compute2", top)
    assert driver.exists("compute2", top) is False
    driver.remove("compute2", top)  # absent: quiet


def test_load_survives_a_stale_stevedore_cache(monkeypatch):
    """stevedore's entry point cache can miss a just-installed entry point."""
    def no_matches(*args, **kwargs):
        raise stevedore_exception.NoMatches("stale cache")

    monkeypatch.setattr(stevedore_driver, "DriverManager", no_matches)
    assert type(transfer.load(make_conf("local"))) is LocalTransfer
