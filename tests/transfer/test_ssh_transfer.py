"""rsync and scp drivers against a real sshd on 127.0.0.1 (the ``sshd`` fixture).

The "destination host" is this machine through that sshd: each test copies
into a directory of its own and checks the result with qemu-img/qemu-io.
"""

import os
import subprocess

import pytest

from compute import disk, transfer
from compute.transfer.ssh import RsyncTransfer, ScpTransfer
from godwit import exception
from tests.transfer.helpers import allocated, free_port, qemu_img_compare, qemu_io, tool

MiB = 1024 ** 2
GiB = 1024 ** 3
SSH_DRIVERS = ["rsync", "scp"]


@pytest.fixture(scope="module")
def sparse_qcow2(tmp_path_factory, sshd):
    """A 1 GiB qcow2 whose file is 1 GiB long but mostly holes, with data in it.

    preallocation=metadata makes the file as long as the disk with only the
    metadata allocated: the sparse file a copy must not fill up.
    """
    path = tmp_path_factory.mktemp("src") / "disk.qcow2"
    subprocess.run([tool("qemu-img"), "create", "-q", "-f", "qcow2", "-o",
                    "preallocation=metadata", str(path), "1G"], check=True, timeout=60)
    qemu_io(path, "write -P 0x5a 0 1M")
    qemu_io(path, "write -P 0xa5 512M 1M")
    qemu_io(path, "write -P 0x3c 1023M 1M")
    assert os.path.getsize(path) >= GiB
    assert allocated(path) < 64 * MiB
    return path


@pytest.mark.parametrize("name", SSH_DRIVERS)
def test_copy_sparse_qcow2_over_ssh(name, sshd, sparse_qcow2, tmp_path):
    driver = transfer.load(sshd.conf(name))
    dest_dir = str(tmp_path / "dest" / "instance")
    driver.make_dir(sshd.host, dest_dir)
    dest = dest_dir + "/disk"

    driver.copy_to(sparse_qcow2, sshd.host, dest)

    assert os.listdir(dest_dir) == ["disk"]  # no temporary file left behind
    assert qemu_img_compare(sparse_qcow2, dest)
    qemu_io(dest, "read -P 0x5a 0 1M", read_only=True)
    qemu_io(dest, "read -P 0xa5 512M 1M", read_only=True)
    qemu_io(dest, "read -P 0x3c 1023M 1M", read_only=True)
    assert disk.info(dest)["virtual_size"] == GiB
    assert os.path.getsize(dest) == os.path.getsize(sparse_qcow2)  # du --apparent-size
    if name == "rsync":
        # --sparse: the holes stay holes (du vs du --apparent-size).
        assert allocated(dest) < 64 * MiB, allocated(dest)
    # scp writes the holes as zeros; that is documented, not asserted.


def test_rsync_replaces_an_existing_copy(sshd, tmp_path):
    driver = transfer.load(sshd.conf("rsync"))
    src = tmp_path / "small.qcow2"
    disk.create(src, 16 * MiB)
    qemu_io(src, "write -P 0x11 0 1M")
    dest = tmp_path / "copy.qcow2"
    dest.write_bytes(b"stale copy")
    driver.copy_to(src, sshd.host, str(dest))
    qemu_io(dest, "read -P 0x11 0 1M", read_only=True)


def test_make_dir_remove_exists_over_ssh(sshd, tmp_path):
    # rsync and scp share these three (one ssh command each); every ssh login
    # costs a second on a loaded machine, so they run once.
    for method in ("make_dir", "remove", "exists"):
        assert getattr(RsyncTransfer, method) is getattr(ScpTransfer, method)
    driver = transfer.load(sshd.conf("scp"))
    top = str(tmp_path / "inst")
    nested = top + "/a/b"
    assert driver.exists(sshd.host, top) is False
    driver.make_dir(sshd.host, nested)
    driver.make_dir(sshd.host, nested)  # already there: fine
    assert os.path.isdir(nested)
    assert driver.exists(sshd.host, nested) is True
    (tmp_path / "inst" / "a" / "b" / "disk").write_bytes(b"x")
    assert driver.exists(sshd.host, nested + "/disk") is True

    driver.remove(sshd.host, top)  # recursive
    assert not os.path.exists(top)
    assert driver.exists(sshd.host, top) is False
    driver.remove(sshd.host, top)  # absent: quiet


def test_flattened_overlay_reads_back_on_the_destination(sshd, tmp_path):
    """Cold migration's disk step: flatten the overlay, copy the result."""
    src_dir = tmp_path / "source"
    src_dir.mkdir()
    base = src_dir / "base.qcow2"
    disk.create(base, 64 * MiB)
    qemu_io(base, "write -P 0x5a 0 1M")           # in the backing file only
    qemu_io(base, "write -P 0x77 2M 1M")          # later hidden by the overlay
    overlay = src_dir / "disk"
    disk.create(overlay, backing_file=base)
    qemu_io(overlay, "write -P 0xa5 1M 1M")       # in the overlay only
    qemu_io(overlay, "write -P 0x66 2M 1M")

    flat = src_dir / "disk.flat"
    assert disk.flatten(overlay, flat)["backing_file"] is None

    driver = transfer.load(sshd.conf("rsync"))
    dest_dir = str(tmp_path / "destination" / "instance")
    driver.make_dir(sshd.host, dest_dir)
    driver.copy_to(flat, sshd.host, dest_dir + "/disk")
    os.rename(base, src_dir / "base.moved")       # the copy must not need it

    dest = dest_dir + "/disk"
    info = disk.info(dest)
    assert (info["format"], info["backing_file"], info["virtual_size"]) == \
        ("qcow2", None, 64 * MiB)
    qemu_io(dest, "read -P 0x5a 0 1M", read_only=True)
    qemu_io(dest, "read -P 0xa5 1M 1M", read_only=True)
    qemu_io(dest, "read -P 0x66 2M 1M", read_only=True)
    qemu_io(dest, "read -P 0 3M 61M", read_only=True)


@pytest.mark.parametrize("name", SSH_DRIVERS)
def test_unreachable_port_is_a_clear_failure(name, sshd, tmp_path):
    port = free_port()  # nothing listens there
    driver = transfer.load(sshd.conf(name, ssh_port=port))
    src = tmp_path / "f"
    src.write_bytes(b"x")
    # ssh and scp exit with ssh's 255; rsync with 255 or 12 ("error in rsync
    # protocol data stream"), depending on when it notices ssh is gone.
    copy_codes = (255, 12) if name == "rsync" else (255,)
    for call, codes in ((lambda: driver.copy_to(src, sshd.host, str(tmp_path / "copy")),
                         copy_codes),
                        (lambda: driver.make_dir(sshd.host, str(tmp_path / "d")), (255,)),
                        (lambda: driver.exists(sshd.host, str(tmp_path)), (255,))):
        with pytest.raises(exception.TransferFailed) as e:
            call()
        message = str(e.value)
        assert e.value.kwargs["code"] in codes
        assert f"failed with exit code {e.value.kwargs['code']}: " in message
        assert f"connect to host 127.0.0.1 port {port}: Connection refused" in message
        assert f"cannot reach sshd on 127.0.0.1 port {port}" in message
    assert not (tmp_path / "copy").exists() and not (tmp_path / "d").exists()


def test_unknown_client_key_is_refused(sshd, tmp_path):
    key = tmp_path / "other_key"
    subprocess.run([tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, timeout=30)
    driver = transfer.load(sshd.conf("scp", ssh_key_file=str(key)))
    with pytest.raises(exception.TransferFailed) as e:
        driver.exists(sshd.host, "/tmp")
    assert "Permission denied" in str(e.value)
    assert "authorized_keys" in str(e.value)


def test_new_host_key_is_recorded_and_a_changed_one_refused(sshd, tmp_path):
    known_hosts = tmp_path / "known_hosts"  # does not exist yet
    driver = transfer.load(sshd.conf("rsync", ssh_known_hosts_file=str(known_hosts)))
    assert driver.exists(sshd.host, str(tmp_path)) is True  # accept-new: no prompt
    # Recorded (hashed when ssh_config says HashKnownHosts, as Debian's does).
    found = subprocess.run([tool("ssh-keygen"), "-F", f"[127.0.0.1]:{sshd.port}", "-f",
                            str(known_hosts)], capture_output=True, text=True, timeout=30)
    assert found.returncode == 0 and "ssh-ed25519" in found.stdout, found

    other = tmp_path / "impostor"
    subprocess.run([tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True, timeout=30)
    impostor_key = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {impostor_key}\n")
    with pytest.raises(exception.TransferFailed) as e:
        driver.exists(sshd.host, str(tmp_path))
    assert "Host key verification failed" in str(e.value)
    assert "host key of 127.0.0.1 is unknown or has changed" in str(e.value)


def test_empty_ssh_user_logs_in_as_the_current_user(sshd, tmp_path):
    driver = transfer.load(sshd.conf("rsync", ssh_user=""))
    src = tmp_path / "f"
    src.write_bytes(b"payload")
    driver.copy_to(src, sshd.host, str(tmp_path / "g"))
    assert (tmp_path / "g").read_bytes() == b"payload"


@pytest.mark.parametrize("name", SSH_DRIVERS)
def test_remote_failure_reports_exit_code_and_stderr(name, sshd, tmp_path):
    driver = transfer.load(sshd.conf(name))
    src = tmp_path / "f"
    src.write_bytes(b"x")
    missing_dir = str(tmp_path / "no-such-dir")
    with pytest.raises(exception.TransferFailed) as e:
        driver.copy_to(src, sshd.host, missing_dir + "/disk")
    assert e.value.kwargs["code"] not in (0, 255)  # ssh worked; the copy did not
    if name == "rsync":
        # rsync's own code for "errors selecting input/output files, dirs"; its
        # remote message does not always make it to stderr on a loaded machine.
        assert e.value.kwargs["code"] == 3
    else:
        assert "No such file or directory" in str(e.value)
    assert str(e.value).startswith(f"{name} {src} -> {sshd.user}@127.0.0.1:{missing_dir}/disk"
                                   f" (port {sshd.port}) failed with exit code ")
    assert not os.path.exists(missing_dir)

    if name == "scp":  # once is enough: make_dir is shared
        with pytest.raises(exception.TransferFailed) as e:
            driver.make_dir(sshd.host, str(src) + "/sub")  # src is a file
        assert e.value.kwargs["code"] == 1
        assert "Not a directory" in str(e.value)
