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

from godwit.testing import SETTLED_COLD, APIError, fake_host

HOSTS = ("compute1", "compute2")
FULL = ("domains", "filters", "vifs", "volumes")
VOLUME = "5b0a9d3c-2f0e-4a86-8d3a-6c2e9f1b7a10"

# step, host, decision after the move, expected (status, instance status, host),
# kinds left on the other host, instance files left on the other host
CASES = [
    # The only host refuses: nothing was done ('error', as a refused request).
    ("prep_resize", "compute2", None, ("error", "ACTIVE", "compute1"), (), []),
    # The copy or the finish fails: rolled back, the guest back on its source
    # and running as before: 'failed'.
    ("migrate_disk_and_power_off", "compute1", None, ("failed", "ACTIVE", "compute1"), (),
     []),
    ("disk_transfer", "compute1", None, ("failed", "ACTIVE", "compute1"), (), []),
    ("vif_plug", "compute2", None, ("failed", "ACTIVE", "compute1"), (), []),
    ("finish_migration", "compute2", None, ("failed", "ACTIVE", "compute1"), (), []),
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


def test_a_copy_whose_source_vanished_waits_for_it_then_goes_on(cloud_factory, tmp_path):
    """The source's agent dies during the copy (in-process: it stops answering and
    reporting). Past the phase's deadline the conductor cannot tell where the guest
    is: 'error', the instance ERROR with a fault naming the host, a hard reboot
    refused. When the agent returns, the move resumes where it was: the copy is
    done again from the set-aside files, the guest is built on the destination and
    waits for confirmation, and confirming leaves nothing on the source."""
    paths = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
    cloud = cloud_factory(hosts=HOSTS, host_paths=paths, cold_migration_step_timeout=3,
                          host_step_timeout=1, service_down_time=2,
                          migration_watchdog_interval=1)
    cloud.paths = paths
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, "compute1").root,
                           "faults.json"), "w") as f:
        json.dump(["migrate_disk_and_power_off:crash::once"], f)
    c.action(sid, "migrate")
    m = c.wait_migration(sid, timeout=60)
    assert m["status"] == "error" and "compute1" in m["error_message"], m
    server = c.server(sid)
    assert server["status"] == "ERROR" and "compute1" in server["fault"]["message"]
    with pytest.raises(APIError) as err:
        c.action(sid, "reboot", {"type": "HARD"})
    assert err.value.status == 409 and "unresolved" in err.value.message

    cloud.restart_compute("compute1")
    m = c.wait_migration(sid, timeout=60, until=("finished", "failed", "confirmed"))
    assert m["status"] == "finished", m
    server = c.wait_vm(sid, "VERIFY_RESIZE")
    assert server["OS-EXT-SRV-ATTR:host"] == "compute2"
    c.action(sid, "confirmResize", expect=204)
    assert c.wait_migration(sid)["status"] == "confirmed"
    assert kinds_on(cloud, "compute2", sid) == ("domains", "filters", "vifs")
    assert kinds_on(cloud, "compute1", sid) == ()
    assert files_on(cloud, "compute1", sid) == []
