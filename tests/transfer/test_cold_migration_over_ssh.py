"""A resize whose disks really travel over SSH: the whole flow with rsync or scp.

The two fake hosts keep separate instance directories; the source copies
the flattened qcow2 to the destination through the test's real sshd (the
destination's address is 127.0.0.1), as operators set it up between
compute hosts.
"""

import os
import subprocess

import pytest

from godwit.testing import SETTLED_COLD


@pytest.mark.parametrize("driver", ["rsync", "scp"])
def test_resize_copies_disks_over_ssh(cloud_factory, sshd, tmp_path, driver):
    paths = {h: str(tmp_path / f"inst-{h}") for h in ("compute1", "compute2")}
    base = os.path.join(paths["compute1"], "_base", "img1")
    os.makedirs(os.path.dirname(base))
    subprocess.run(["qemu-img", "create", "-f", "qcow2", base, "1G"], check=True,
                   capture_output=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", base], check=True,
                   capture_output=True)
    overrides = {f"transfer.{k}": v for k, v in sshd.transfer_opts(driver=driver).items()}
    cloud = cloud_factory(hosts=("compute1", "compute2"), host_paths=paths,
                          **{"fake.disk_format": "qcow2"}, **overrides)
    c = cloud.client
    sid = c.create_server("vm", host="compute1", imageRef="img1")["id"]
    c.action(sid, "resize", {"flavorRef": "2"})
    m = c.wait_migration(sid, until=SETTLED_COLD, timeout=60)
    assert (m["status"], m["dest_compute"]) == ("finished", "compute2"), m
    disk = os.path.join(paths["compute2"], sid, "disk")
    r = subprocess.run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -P 0x5a 0 1M", disk],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "Pattern verification failed" not in r.stdout, r.stdout
    c.action(sid, "confirmResize", expect=204)
    assert c.wait_migration(sid)["status"] == "confirmed"
    assert sorted(n for n in os.listdir(paths["compute1"]) if n.startswith(sid)) == []
    assert sorted(n for n in os.listdir(paths["compute2"]) if n.startswith(sid)) == [sid]
