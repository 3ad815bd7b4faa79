"""Cold migration and resize with confirm and revert, on real qcow2 files.

Three fake hosts with their own instance directories (no shared storage), so
every move copies disks through the transfer driver. Servers boot from a
qcow2 overlay on a base image; a pattern written into the base image and
another into the overlay must both read back from the destination's copy,
which proves the backing chain was merged before the copy.
"""

import os
import subprocess

import pytest

from godwit.testing import SETTLED_COLD, APIError, fake_host, wait_for

HOSTS = ("compute1", "compute2", "compute3")
MIB = 1024 * 1024


def qemu_io(path, command):
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, path], check=True,
                   capture_output=True)


def pattern_ok(path, command):
    r = subprocess.run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c", command, path],
                       capture_output=True, text=True)
    return r.returncode == 0 and "Pattern verification failed" not in r.stdout


def virtual_size(path):
    from compute import disk
    return disk.info(path)["virtual_size"]


@pytest.fixture
def cold_cloud(cloud_factory, tmp_path):
    paths = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
    for path in paths.values():
        os.makedirs(os.path.join(path, "_base"))
    base = os.path.join(paths["compute1"], "_base", "img1")
    subprocess.run(["qemu-img", "create", "-f", "qcow2", base, "1G"], check=True,
                   capture_output=True)
    qemu_io(base, "write -P 0x5a 0 1M")

    def make(**overrides):
        cloud = cloud_factory(hosts=HOSTS, host_paths=paths,
                              **dict({"fake.disk_format": "qcow2"}, **overrides))
        cloud.paths = paths
        return cloud
    return make


def boot(cloud, host="compute1", flavor="1", **extra):
    c = cloud.client
    server = c.create_server("vm", flavor=flavor, host=host, imageRef="img1", **extra)
    assert server["status"] == "ACTIVE", server
    disk = os.path.join(cloud.paths[host], server["id"], "disk")
    qemu_io(disk, "write -P 0x6b 1M 1M")  # the guest's own data, in the overlay
    return server["id"]


def disk_of(cloud, host, sid):
    return os.path.join(cloud.paths[host], sid, "disk")


def assert_content(path):
    assert pattern_ok(path, "read -P 0x5a 0 1M"), "base image data lost"
    assert pattern_ok(path, "read -P 0x6b 1M 1M"), "the guest's own data lost"


def assert_only_on(cloud, sid, host):
    for name in HOSTS:
        fh = fake_host(cloud.conf.fake.hosts_path, name)
        files = [n for n in os.listdir(cloud.paths[name]) if n.startswith(sid)]
        if name == host:
            assert sid in fh.snapshot()["domains"]
            assert files == [sid], files
        else:
            assert fh.is_empty_for(sid), (name, fh.snapshot())
            assert files == [], (name, files)


def held(cloud, m):
    """The ledger of migration ``m``: {(host, kind): state}."""
    return {(e["host"], e["kind"]): e["state"] for e in cloud.db.ledger(migration_id=m["id"])}


def finished(c, sid):
    m = c.wait_migration(sid, until=SETTLED_COLD)
    assert m["status"] == "finished", m
    server = c.wait_vm(sid, "VERIFY_RESIZE")
    return m, server


def test_cold_migrate_and_confirm(cold_cloud):
    cloud = cold_cloud()
    c = cloud.client
    sid = boot(cloud)
    c.action(sid, "migrate", {"host": "compute2"})
    m, server = finished(c, sid)
    assert m["migration_type"] == "migration"
    assert (m["source_compute"], m["dest_compute"]) == ("compute1", "compute2")
    assert server["OS-EXT-SRV-ATTR:host"] == "compute2"
    new_disk = disk_of(cloud, "compute2", sid)
    assert_content(new_disk)
    from compute import disk
    assert disk.info(new_disk)["backing_file"] is None  # flattened
    # Until confirmed, the originals wait on the source, and the ledger says
    # what the move holds where.
    assert os.path.isdir(os.path.join(cloud.paths["compute1"], sid + "_resize"))
    assert held(cloud, m) == {
        ("compute1", "resize_dir"): "present", ("compute2", "claim"): "present",
        **{("compute2", k): "present"
           for k in ("instance_dir", "domain", "vifs", "volumes", "filter")}}

    c.action(sid, "confirmResize", expect=204)
    assert c.wait_migration(sid)["status"] == "confirmed"
    assert set(held(cloud, m).values()) == {"released"}
    server = c.wait_vm(sid, "ACTIVE")
    assert server["OS-EXT-STS:task_state"] is None
    assert_only_on(cloud, sid, "compute2")
    # Step events may land just after the final status (godwit.events.Deferred).
    wait_for("the cold migration's step events", lambda: {
        "compute_prep_resize", "compute_resize_instance", "compute_finish_resize"} <= {
        e["event"] for e in c.events(sid, action="migrate")})


def assert_nowhere(cloud, sid):
    for name in HOSTS:
        fh = fake_host(cloud.conf.fake.hosts_path, name)
        assert fh.is_empty_for(sid), (name, fh.snapshot())
        assert [n for n in os.listdir(cloud.paths[name]) if n.startswith(sid)] == [], name


def test_deleting_a_server_in_verify_resize_confirms_its_resize_first(cold_cloud):
    """As Nova does: the source's copy is removed (the move ends 'confirmed'),
    then the server; nothing is left on either host and nothing stays held."""
    cloud = cold_cloud()
    c = cloud.client
    sid = boot(cloud)
    c.action(sid, "resize", {"flavorRef": "2"})
    m, _server = finished(c, sid)
    assert os.path.isdir(os.path.join(cloud.paths["compute1"], sid + "_resize"))
    c.delete_server(sid)       # 204, then waits until the server is gone
    m = cloud.db.migration_get(m["id"])
    assert m["status"] == "confirmed", m
    assert set(held(cloud, m).values()) == {"released"}
    assert_nowhere(cloud, sid)
    for host in HOSTS:
        assert cloud.db.host_usage(host)["memory_mb"] == 0, host
    intents = [e for e in cloud.db.timeline(m["id"]) if e["kind"] == "intent"]
    assert [(e["name"], e["detail"]["why"]) for e in intents] == \
        [("confirm", "the server is deleted")], intents


def test_a_delete_whose_confirm_fails_still_deletes_and_says_what_is_left(cold_cloud):
    """The source refuses the confirm: the move ends 'error' saying why, the
    ledger keeps the source's copy for an operator, and the server the user
    deleted is deleted all the same."""
    cloud = cold_cloud()
    c = cloud.client
    sid = boot(cloud)
    c.action(sid, "resize", {"flavorRef": "2"})
    m, _server = finished(c, sid)
    with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, "compute1").root,
                           "faults.json"), "w") as f:
        f.write('["confirm_migration:fail"]')
    c.delete_server(sid)
    m = cloud.db.migration_get(m["id"])
    assert m["status"] == "error" and "Injected fault" in m["error_message"], m
    assert held(cloud, m)[("compute1", "resize_dir")] == "present"
    assert os.path.isdir(os.path.join(cloud.paths["compute1"], sid + "_resize"))
    assert not fake_host(cloud.conf.fake.hosts_path, "compute2").snapshot()["domains"]


def test_a_delete_left_after_its_confirm_by_a_failed_conductor_is_swept(cold_cloud):
    """The conductor fails right after writing 'confirmed', before the delete it
    owes: the server stays 'deleting' with its move over, and the sweep (two
    host step timeouts after the move ended) deletes it."""
    cloud = cold_cloud(conductor_faults=["advance.confirmed:fail:0:once"],
                       host_step_timeout=1, migration_lease_time=3)
    c = cloud.client
    sid = boot(cloud)
    c.action(sid, "resize", {"flavorRef": "2"})
    m, _server = finished(c, sid)
    c.delete_server(sid, wait=False)
    wait_for("the confirmed move", lambda: cloud.db.migration_get(m["id"])["status"]
             == "confirmed")
    assert c.server(sid)["OS-EXT-STS:task_state"] == "deleting"
    wait_for("the swept delete", lambda: _gone(c, sid), timeout=30)
    assert_nowhere(cloud, sid)


def _gone(c, sid):
    try:
        c.server(sid)
    except APIError as e:
        return e.status == 404
    return False


def test_a_server_whose_resize_is_being_confirmed_cannot_be_deleted(cold_cloud):
    cloud = cold_cloud()
    c = cloud.client
    sid = boot(cloud)
    c.action(sid, "resize", {"flavorRef": "2"})
    finished(c, sid)
    with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, "compute1").root,
                           "faults.json"), "w") as f:
        f.write('["confirm_migration:delay:3"]')
    c.action(sid, "confirmResize", expect=204)
    with pytest.raises(APIError) as busy:
        c.delete_server(sid)
    assert busy.value.status == 409 and "confirming" in busy.value.message, busy.value
    assert c.wait_migration(sid)["status"] == "confirmed"
    assert c.wait_vm(sid, "ACTIVE")["OS-EXT-STS:task_state"] is None
    c.delete_server(sid)
    assert_nowhere(cloud, sid)


def test_cold_migrate_and_revert(cold_cloud):
    cloud = cold_cloud()
    c = cloud.client
    sid = boot(cloud)
    c.action(sid, "migrate")
    m, _server = finished(c, sid)
    dest = m["dest_compute"]
    assert dest != "compute1"
    c.action(sid, "revertResize")
    assert c.wait_migration(sid)["status"] == "reverted"
    server = c.wait_vm(sid, "ACTIVE")
    assert server["OS-EXT-SRV-ATTR:host"] == "compute1"
    assert_only_on(cloud, sid, "compute1")
    assert_content(disk_of(cloud, "compute1", sid))


def test_resize_up_and_confirm(cold_cloud):
    cloud = cold_cloud()
    c = cloud.client
    sid = boot(cloud)
    c.action(sid, "resize", {"flavorRef": "2"})
    m, server = finished(c, sid)
    assert m["migration_type"] == "resize"
    assert server["flavor"]["original_name"] == "m1.small"
    new_disk = disk_of(cloud, m["dest_compute"], sid)
    assert virtual_size(new_disk) == 20 * 1024 * MIB
    assert_content(new_disk)
    c.action(sid, "confirmResize", expect=204)
    assert c.wait_migration(sid)["status"] == "confirmed"
    server = c.wait_vm(sid, "ACTIVE")
    assert server["flavor"]["ram"] == 2048
    assert_only_on(cloud, sid, m["dest_compute"])


def test_resize_and_revert_restores_the_flavor(cold_cloud):
    cloud = cold_cloud()
    c = cloud.client
    sid = boot(cloud)
    c.action(sid, "resize", {"flavorRef": "2"})
    m, _server = finished(c, sid)
    c.action(sid, "revertResize")
    assert c.wait_migration(sid)["status"] == "reverted"
    assert held(cloud, m) and set(held(cloud, m).values()) == {"released"}
    server = c.wait_vm(sid, "ACTIVE")
    assert server["flavor"]["original_name"] == "m1.tiny"
    assert server["OS-EXT-SRV-ATTR:host"] == "compute1"
    assert virtual_size(disk_of(cloud, "compute1", sid)) == 1024 * MIB
    assert_only_on(cloud, sid, "compute1")


def test_auto_confirm(cold_cloud):
    cloud = cold_cloud(resize_confirm_window=1)
    c = cloud.client
    sid = boot(cloud)
    c.action(sid, "migrate", {"host": "compute3"})
    m = wait_for("auto-confirm", lambda: (lambda m: m if m["status"] == "confirmed"
                                          else None)(c.latest_migration(sid)), timeout=30)
    assert m["dest_compute"] == "compute3"
    c.wait_vm(sid, "ACTIVE")
    assert_only_on(cloud, sid, "compute3")


def test_reschedule_when_prep_resize_fails(cold_cloud):
    cloud = cold_cloud()
    c = cloud.client
    sid = boot(cloud)
    # compute2 and compute3 tie on free RAM; make compute2 the first choice.
    c.create_server("filler", flavor="3", host="compute3")
    with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, "compute2").root,
                           "faults.json"), "w") as f:
        f.write('["prep_resize:fail"]')
    c.action(sid, "migrate")
    m, _server = finished(c, sid)
    assert m["dest_compute"] == "compute3"
    c.action(sid, "confirmResize", expect=204)
    assert c.wait_migration(sid)["status"] == "confirmed"
    assert_only_on(cloud, sid, "compute3")


def test_same_host_resize_when_allowed(cloud_factory, tmp_path):
    path = str(tmp_path / "inst")
    cloud = cloud_factory(hosts=("compute1",), host_paths={"compute1": path},
                          allow_resize_to_same_host=True)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    with pytest.raises(APIError) as err:
        c.action(sid, "migrate", {"host": "compute2"})
    assert err.value.status == 400
    c.action(sid, "resize", {"flavorRef": "2"})
    m = c.wait_migration(sid, until=SETTLED_COLD)
    assert (m["status"], m["dest_compute"]) == ("finished", "compute1")
    c.action(sid, "confirmResize", expect=204)
    assert c.wait_migration(sid)["status"] == "confirmed"
    server = c.wait_vm(sid, "ACTIVE")
    assert server["flavor"]["original_name"] == "m1.small"
    assert sorted(os.listdir(path)) == [sid]
    dom = fake_host(cloud.conf.fake.hosts_path, "compute1").get("domains", sid)
    assert dom["memory_mb"] == 2048 and dom["power_state"] == 1


def test_stopped_server_stays_stopped(cold_cloud):
    cloud = cold_cloud()
    c = cloud.client
    sid = boot(cloud)
    c.action(sid, "os-stop")
    c.wait_vm(sid, "SHUTOFF")
    c.action(sid, "migrate", {"host": "compute2"})
    finished(c, sid)
    dom = fake_host(cloud.conf.fake.hosts_path, "compute2").get("domains", sid)
    assert dom["power_state"] == 4  # defined, not started
    c.action(sid, "confirmResize", expect=204)
    c.wait_vm(sid, "SHUTOFF")
    assert c.wait_migration(sid)["status"] == "confirmed"
    c.action(sid, "os-start")
    c.wait_vm(sid, "ACTIVE")


def test_bad_requests_change_nothing(cold_cloud):
    cloud = cold_cloud()
    c = cloud.client
    sid = boot(cloud)
    big = c.create_server("big", flavor="2", host="compute1")["id"]
    before = c.server(sid)

    def refused(status, fragment, server, action, args=None):
        with pytest.raises(APIError) as err:
            c.action(server, action, args)
        assert err.value.status == status, err.value
        assert fragment in err.value.message, err.value.message

    refused(400, "could not be found", sid, "resize", {"flavorRef": "nosuch"})
    refused(400, "already has flavor m1.tiny", sid, "resize", {"flavorRef": "1"})
    refused(400, "disks cannot shrink", big, "resize", {"flavorRef": "1"})
    refused(409, "VERIFY_RESIZE", sid, "confirmResize")
    refused(409, "VERIFY_RESIZE", sid, "revertResize")
    refused(400, "is the host the instance already runs on", sid, "migrate",
            {"host": "compute1"})
    refused(400, "flavorRef", sid, "resize", {})
    assert c.migrations(instance_uuid=sid) == []
    assert c.server(sid)["status"] == before["status"]

    c.action(sid, "migrate", {"host": "compute2"})
    refused(409, "busy", sid, "migrate", {"host": "compute3"})
    with pytest.raises(APIError) as err:
        c.live_migrate(sid, host="compute3")
    assert err.value.status == 409
    finished(c, sid)
    c.action(sid, "confirmResize", expect=204)
    assert c.wait_migration(sid)["status"] == "confirmed"
    assert len(c.migrations(instance_uuid=sid)) == 1
