"""Cold migration and resize through Godwit's API between two real libvirt hosts.

Godwit runs as deployed (see conftest.py) with ``virt_driver = libvirt`` and the
two hosts' instances paths apart, so every move really copies the qcow2 through
the transfer driver: ``local`` (both hosts are this machine), and in one test
``rsync`` over a real sshd on 127.0.0.1 (tests/sshd.py). Each test checks the
hypervisors themselves - where the domain is defined and running, its memory
and vCPUs, the files in both instances paths - and a pattern written into the
disk with qemu-io before the move:

- cold migration + confirm, the disk an overlay on a base image (flattened
  before the copy: both the base's and the overlay's data arrive);
- cold migration + revert;
- resize up (m1.tiny -> m1.small: 512 -> 2048 MiB, 1 -> 20 GiB) + confirm;
- rsync over ssh: an unreachable destination refused before the guest stops,
  then a migration the other way + confirm;
- a copy failing after the guest stopped: originals back, guest restarted.

The guests (TCG, SeaBIOS, no OS) ignore the ACPI power button, so each move
spends the driver's clean-shutdown wait (2 s) before destroying the guest.
"""

import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET

import libvirt
import pytest

from godwit.testing import SETTLED_COLD
from tests.real.test_libvirt_migration import (
    PATTERN,
    PATTERN_OFFSET,
    assert_only_on,
    assert_server_on,
    disk_path,
    write_pattern,
)
from tests.sshd import sshd_fixture

GIB = 1024 ** 3
BASE_PATTERN = "0x5a"
TIMEOUT = 120  # generous: other suites share the two cores


def boot(d, host, flavor="lv.tiny"):
    start = time.monotonic()
    server = d.client.create_server("lv-cold", flavor=flavor, host=host)
    assert server["status"] == "ACTIVE", server
    print(f"server ACTIVE on {host} in {time.monotonic() - start:.1f} s")
    return server["id"]


def read_pattern(path, size, pattern=PATTERN, offset=PATTERN_OFFSET):
    """True if the image at ``path`` holds ``pattern`` (read-only, beside a running QEMU)."""
    proc = subprocess.run(["qemu-io", "-U", "-r", "-f", "qcow2", "-c",
                           f"read -P {pattern} {offset} {size}", path],
                          capture_output=True, text=True)
    return proc.returncode == 0 and "Pattern verification failed" not in proc.stdout


def files(d, host, sid):
    """What of ``sid`` is in ``host``'s instances path (``<sid>``, ``<sid>_resize``)."""
    return sorted(n for n in os.listdir(d.paths[host]) if n.startswith(sid))


def domain(d, host, sid):
    """(memory MiB, vCPUs, active) of the domain's definition on ``host``."""
    conn = d.lv[host].connect()
    try:
        dom = conn.lookupByUUIDString(sid)
        xml = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        return int(xml.findtext("memory")) // 1024, int(xml.findtext("vcpu")), \
            bool(dom.isActive())
    finally:
        conn.close()


def virtual_size(path):
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["virtual-size"]


def move(d, sid, action, args=None):
    """Start a cold migration or resize; wait for VERIFY_RESIZE."""
    start = time.monotonic()
    d.client.action(sid, action, args)
    m = d.client.wait_migration(sid, timeout=TIMEOUT, until=SETTLED_COLD)
    assert m["status"] == "finished", m
    server = d.client.wait_vm(sid, "VERIFY_RESIZE", timeout=TIMEOUT)
    print(f"{action} to {m['dest_compute']}: VERIFY_RESIZE after "
          f"{time.monotonic() - start:.1f} s")
    return m, server


def settle(d, sid, action, status, expect):
    start = time.monotonic()
    d.client.action(sid, action, expect=expect)
    m = d.client.wait_migration(sid, timeout=TIMEOUT)
    assert m["status"] == status, m
    server = d.client.wait_vm(sid, "ACTIVE", timeout=TIMEOUT)
    print(f"{action}: {status} after {time.monotonic() - start:.1f} s")
    return server


def assert_verify_resize(d, sid, src, dst):
    """Between the move and confirm/revert: the new guest runs on ``dst``; the
    old definition waits, shut off, on ``src`` with the originals set aside."""
    where = d.where(sid)
    assert set(where) == {src, dst}, where
    assert where[dst]["state"] == libvirt.VIR_DOMAIN_RUNNING, where
    assert where[src]["persistent"] and not where[src]["active"], where
    assert files(d, src, sid) == [sid + "_resize"]
    assert files(d, dst, sid) == [sid]


def migrate_and_confirm(d, src, dst, sid=None):
    """Cold-migrate (a new server on ``src``, or ``sid`` whose disk holds the
    pattern) to ``dst`` and confirm."""
    if sid is None:
        sid = boot(d, src)
        write_pattern(d, src, sid, "4M")
    m, server = move(d, sid, "migrate", {"host": dst})
    assert (m["source_compute"], m["dest_compute"]) == (src, dst)
    assert m["migration_type"] == "migration"
    assert server["OS-EXT-SRV-ATTR:host"] == dst
    assert_verify_resize(d, sid, src, dst)
    assert read_pattern(disk_path(d, dst, sid), "4M"), "the pattern did not arrive"
    settle(d, sid, "confirmResize", "confirmed", 204)
    assert_server_on(d, sid, dst)
    assert_only_on(d, sid, dst)
    assert files(d, src, sid) == [], "the source kept files"
    assert files(d, dst, sid) == [sid]
    assert read_pattern(disk_path(d, dst, sid), "4M")
    return sid


def put_on_base_image(d, host, sid):
    """Make the guest's disk a qcow2 overlay on a base image outside the instances
    path, as an image-backed server's is: base data at 0, the guest's (the
    overlay's, 4 MiB of PATTERN at 1 MiB) above."""
    base = str(d.tmp_path / "base.qcow2")
    path = disk_path(d, host, sid)
    for cmd in (["qemu-img", "create", "-q", "-f", "qcow2", base, "1G"],
                ["qemu-io", "-f", "qcow2", "-c", f"write -P {BASE_PATTERN} 0 1M", base]):
        subprocess.run(cmd, check=True, capture_output=True)
    conn = d.lv[host].connect()
    try:
        dom = conn.lookupByUUIDString(sid)
        dom.destroy()
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2",
                        path + ".new"], check=True, capture_output=True)
        subprocess.run(["qemu-io", "-f", "qcow2", "-c",
                        f"write -P {PATTERN} {PATTERN_OFFSET} 4M", path + ".new"],
                       check=True, capture_output=True)
        os.replace(path + ".new", path)
        dom.create()
    finally:
        conn.close()
    assert backing_file(path) == base
    return base


def backing_file(path):
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out).get("backing-filename")


def test_cold_migrate_and_confirm(deployment):
    d = deployment(shared=False)
    a, b = d.names
    sid = boot(d, a)
    put_on_base_image(d, a, sid)
    migrate_and_confirm(d, a, b, sid)
    # The backing chain was merged before the copy: one standalone image there.
    assert backing_file(disk_path(d, b, sid)) is None
    assert read_pattern(disk_path(d, b, sid), "1M", BASE_PATTERN, "0"), "base image data lost"
    d.client.delete_server(sid)
    assert d.where(sid) == {}
    assert files(d, d.names[1], sid) == []


def test_cold_migrate_and_revert(deployment):
    d = deployment(shared=False)
    a, b = d.names
    sid = boot(d, a)
    write_pattern(d, a, sid, "4M")
    m, _server = move(d, sid, "migrate")  # scheduled: the only other host
    assert (m["source_compute"], m["dest_compute"]) == (a, b)
    assert_verify_resize(d, sid, a, b)
    settle(d, sid, "revertResize", "reverted", 202)
    assert_server_on(d, sid, a)
    assert_only_on(d, sid, a)
    assert domain(d, a, sid) == (128, 1, True)
    assert files(d, b, sid) == [], "the destination kept files"
    assert files(d, a, sid) == [sid]
    assert read_pattern(disk_path(d, a, sid), "4M")


def test_resize_up_and_confirm(deployment):
    d = deployment(shared=False)
    a, b = d.names
    sid = boot(d, a, flavor="1")  # m1.tiny: 512 MiB, 1 GiB disk
    assert domain(d, a, sid) == (512, 1, True)
    m, server = move(d, sid, "resize", {"flavorRef": "2"})  # m1.small: 2048 MiB, 20 GiB
    assert m["migration_type"] == "resize"
    assert m["dest_compute"] == b
    assert server["flavor"]["original_name"] == "m1.small"
    assert_verify_resize(d, sid, a, b)
    assert domain(d, b, sid) == (2048, 1, True)
    assert domain(d, a, sid) == (512, 1, False)  # the old one, for a revert
    assert virtual_size(disk_path(d, b, sid)) == 20 * GIB
    assert virtual_size(os.path.join(d.paths[a], sid + "_resize", "disk")) == 1 * GIB
    server = settle(d, sid, "confirmResize", "confirmed", 204)
    assert server["flavor"]["ram"] == 2048
    assert_only_on(d, sid, b)
    assert domain(d, b, sid) == (2048, 1, True)
    assert files(d, a, sid) == []


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on 127.0.0.1 (tests/sshd.py), for the rsync transfer driver."""
    yield from sshd_fixture(tmp_path_factory)


def domain_id(d, host, sid):
    """libvirt's id of the running domain: a new one each time the guest starts."""
    conn = d.lv[host].connect()
    try:
        return conn.lookupByUUIDString(sid).ID()
    finally:
        conn.close()


def test_cold_migrate_with_rsync_over_ssh(deployment, sshd, monkeypatch):
    # The compute agents read [transfer] from the environment (oslo.config's
    # OS_<GROUP>__<OPTION>): the deployment fixture writes only [libvirt].
    for key, value in sshd.transfer_opts(driver="rsync").items():
        monkeypatch.setenv(f"OS_TRANSFER__{key.upper()}", str(value))
    # Host B's address is 127.0.0.2, where no sshd listens (it is on 127.0.0.1).
    d = deployment(shared=False, per_host={1: {"live_migration_inbound_addr": "127.0.0.2"}})
    a, b = d.names

    # A -> B: the destination is unreachable; refused before the guest stops.
    sid = boot(d, a)
    before = domain_id(d, a, sid)
    d.client.action(sid, "migrate", {"host": b})
    m = d.client.wait_migration(sid, timeout=TIMEOUT, until=SETTLED_COLD)
    print(f"unreachable destination: {m['status']}: {m['error_message']}")
    # Rolled back with the guest running on its source: 'failed'.
    assert m["status"] == "failed", m
    assert "Connection refused" in m["error_message"], m
    assert "undo incomplete" not in m["error_message"], m
    assert_server_on(d, sid, a)
    assert_only_on(d, sid, a)
    assert domain_id(d, a, sid) == before, "the guest was restarted"
    assert files(d, a, sid) == [sid]
    assert files(d, b, sid) == []

    # B -> A: copied with rsync through sshd.
    migrate_and_confirm(d, b, a)
    assert "with rsync" in d.log(b), "the disk was not copied with rsync"
    assert "Accepted publickey" in sshd.log.read_text()


def test_failed_copy_restores_the_guest_on_the_source(deployment):
    d = deployment(shared=False)
    a, b = d.names
    sid = boot(d, a)
    write_pattern(d, a, sid, "4M")
    before = domain_id(d, a, sid)
    # A real failure after the guest stopped: a directory where the copy of the
    # disk has to go (the local transfer's final rename fails).
    os.makedirs(os.path.join(disk_path(d, b, sid), "in-the-way"))
    start = time.monotonic()
    d.client.action(sid, "migrate", {"host": b})
    m = d.client.wait_migration(sid, timeout=TIMEOUT, until=SETTLED_COLD)
    print(f"failed copy: {m['status']} after {time.monotonic() - start:.1f} s: "
          f"{m['error_message']}")
    assert m["status"] == "failed", m
    assert f"resize_instance on {a} failed" in m["error_message"], m
    assert "undo incomplete" not in m["error_message"], m
    server = d.client.wait_vm(sid, "ACTIVE", timeout=TIMEOUT)
    assert server["OS-EXT-SRV-ATTR:host"] == a
    # The originals are back in place and the guest runs on them again.
    assert_only_on(d, sid, a)
    assert domain_id(d, a, sid) != before, "the guest was never stopped"
    assert files(d, a, sid) == [sid]
    assert files(d, b, sid) == [], "the partial copy is still on the destination"
    assert read_pattern(disk_path(d, a, sid), "4M")


def test_same_host_resize_revert_then_confirm(deployment, monkeypatch):
    # allow_resize_to_same_host for every process (the fixture writes no [DEFAULT] option).
    monkeypatch.setenv("OS_DEFAULT__ALLOW_RESIZE_TO_SAME_HOST", "true")
    d = deployment(shared=False)
    a, b = d.names
    sid = boot(d, a, flavor="1")
    write_pattern(d, a, sid, "4M")
    other = next(s for s in d.client.services() if s["host"] == b)
    d.client.request("PUT", f"/os-services/{other['id']}", json={"status": "disabled"})
    root, kept = disk_path(d, a, sid), os.path.join(d.paths[a], sid + "_resize", "disk")

    m, _server = move(d, sid, "resize", {"flavorRef": "2"})
    assert (m["source_compute"], m["dest_compute"]) == (a, a)
    assert list(d.where(sid)) == [a] and domain(d, a, sid) == (2048, 1, True)
    assert files(d, a, sid) == [sid, sid + "_resize"]
    assert (virtual_size(root), virtual_size(kept)) == (20 * GIB, 1 * GIB)
    settle(d, sid, "revertResize", "reverted", 202)
    assert_server_on(d, sid, a)
    assert_only_on(d, sid, a)
    assert domain(d, a, sid) == (512, 1, True)
    assert files(d, a, sid) == [sid]
    assert virtual_size(root) == 1 * GIB
    assert read_pattern(root, "4M")

    move(d, sid, "resize", {"flavorRef": "2"})
    settle(d, sid, "confirmResize", "confirmed", 204)
    assert_only_on(d, sid, a)  # confirm on the same host keeps the (new) domain
    assert domain(d, a, sid) == (2048, 1, True)
    assert files(d, a, sid) == [sid]
    assert virtual_size(root) == 20 * GIB
    assert read_pattern(root, "4M")
    assert files(d, b, sid) == []
