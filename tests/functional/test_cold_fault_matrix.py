"""Cold migration fault matrix: each step failing leaves a usable guest on one
host, the migration in a final status, and names anything left behind.

Two fake hosts with their own instance directories and real qcow2 disks.
Each case arms one fault, runs the move (and the confirm or revert the step
belongs to), then checks the records and files on both hosts.
"""

import json
import os
import subprocess

import pytest

from godwit.testing import SETTLED_COLD, fake_host

HOSTS = ("compute1", "compute2")
FULL = ("domains", "filters", "vifs", "volumes")
VOLUME = "5b0a9d3c-2f0e-4a86-8d3a-6c2e9f1b7a10"

# step, host, decision after the move, expected (status, instance status, host),
# kinds left on the other host, instance files left on the other host
CASES = [
    ("prep_resize", "compute2", None, ("error", "ACTIVE", "compute1"), (), []),
    ("migrate_disk_and_power_off", "compute1", None, ("error", "ACTIVE", "compute1"), (),
     []),
    ("disk_transfer", "compute1", None, ("error", "ACTIVE", "compute1"), (), []),
    ("vif_plug", "compute2", None, ("error", "ACTIVE", "compute1"), (), []),
    ("finish_migration", "compute2", None, ("error", "ACTIVE", "compute1"), (), []),
    # The source cannot be cleaned: the guest keeps running on the destination
    # and the message names what stayed behind.
    ("confirm_migration", "compute1", "confirmResize", ("error", "ACTIVE", "compute2"),
     ("domains",), ["_resize"]),
    # The destination's domain cannot be destroyed: its networking and volume
    # are still removed, the guest goes back to the source anyway, and the
    # leftover domain and files are named.
    ("destroy", "compute2", "revertResize", ("error", "ACTIVE", "compute1"), ("domains",),
     [""]),
    # The source cannot rebuild the guest: it is ERROR on the source.
    ("finish_revert_migration", "compute1", "revertResize", ("error", "ERROR", "compute1"),
     (), []),
]


@pytest.fixture
def cloud(cloud_factory, tmp_path):
    paths = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
    cloud = cloud_factory(hosts=HOSTS, host_paths=paths, **{"fake.disk_format": "qcow2"})
    cloud.paths = paths
    return cloud


def kinds_on(cloud, host, sid):
    snap = fake_host(cloud.conf.fake.hosts_path, host).snapshot()
    return tuple(sorted(k for k, recs in snap.items()
                        if any(key == sid or r.get("instance_uuid") == sid
                               for key, r in recs.items())))


def files_on(cloud, host, sid):
    return sorted(n[len(sid):] for n in os.listdir(cloud.paths[host]) if n.startswith(sid))


@pytest.mark.parametrize("step,host,decision,expected,left_kinds,left_files", CASES,
                         ids=[c[0] for c in CASES])
def test_cold_fault(cloud, step, host, decision, expected, left_kinds, left_files):
    c = cloud.client
    sid = c.create_server("vm", host="compute1", block_device_mapping_v2=[
        {"boot_index": 0, "uuid": VOLUME, "source_type": "volume",
         "destination_type": "volume"}])["id"]
    with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, host).root,
                           "faults.json"), "w") as f:
        json.dump([f"{step}:fail"], f)
    c.action(sid, "migrate")
    m = c.wait_migration(sid, until=SETTLED_COLD)
    if decision:
        assert m["status"] == "finished", m
        c.action(sid, decision, expect=204 if decision == "confirmResize" else 202)
        m = c.wait_migration(sid)
    status, vm_status, where = expected
    assert m["status"] == status, m
    assert m["error_message"], m
    server = c.server(sid)
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == (vm_status, where), \
        server.get("fault")
    assert server["OS-EXT-STS:task_state"] is None
    other = "compute2" if where == "compute1" else "compute1"
    if vm_status == "ACTIVE":
        assert kinds_on(cloud, where, sid) == FULL
        assert files_on(cloud, where, sid) == [""]
        dom = fake_host(cloud.conf.fake.hosts_path, where).get("domains", sid)
        assert dom["power_state"] == 1, "the guest must run where it lives"
        subprocess.run(["qemu-img", "check", os.path.join(cloud.paths[where], sid, "disk")],
                       check=True, capture_output=True)
    assert kinds_on(cloud, other, sid) == tuple(sorted(left_kinds))
    assert files_on(cloud, other, sid) == left_files
    if left_kinds or left_files:
        assert other in m["error_message"], m["error_message"]


def test_watchdog_ends_a_cold_migration_whose_source_vanished(cloud_factory, tmp_path):
    paths = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
    cloud = cloud_factory(hosts=HOSTS, host_paths=paths, cold_migration_step_timeout=2,
                          migration_watchdog_interval=1)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, "compute1").root,
                           "faults.json"), "w") as f:
        json.dump(["migrate_disk_and_power_off:crash"], f)
    c.action(sid, "migrate")
    m = c.wait_migration(sid, timeout=30)
    assert m["status"] == "error"
    assert "stayed 'migrating'" in m["error_message"]
    server = c.server(sid)
    assert server["status"] == "ERROR" and server["OS-EXT-STS:task_state"] is None
