"""Each pre-check refuses with a clear reason and changes nothing; each mode works."""

import json
import os
import time

import pytest

from godwit.testing import APIError, fake_host, wait_for


def refused(c, sid, status, *fragments, **kwargs):
    before = c.server(sid)
    migrations_before = len(c.migrations(instance_uuid=sid))
    with pytest.raises(APIError) as err:
        c.live_migrate(sid, **kwargs)
    assert err.value.status == status, err.value
    for fragment in fragments:
        assert fragment in err.value.message, err.value.message
    after = c.server(sid)
    for key in ("status", "OS-EXT-SRV-ATTR:host", "OS-EXT-STS:task_state"):
        assert after[key] == before[key]
    return len(c.migrations(instance_uuid=sid)) - migrations_before


@pytest.mark.parametrize("change,fragment", [
    ({"hypervisor_type": "xen"}, "runs hypervisor xen"),
    ({"hypervisor_version": 999}, "older than the source's"),
    ({"cpu_info": json.dumps({"model": "Nehalem", "arch": "x86_64"})}, "CPU of destination"),
    ({"security_driver": "apparmor"}, "Unable to find security driver for label"),
    ({"memory_mb": 256}, "lacks RAM: 512 MiB needed"),
    ({"vcpus": 0}, "lacks vCPUs"),
])
def test_destination_checks_change_nothing(cloud, change, fragment):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    cloud.db.compute_node_upsert("compute2", change)
    assert refused(c, sid, 400, fragment, "compute2", host="compute2") == 0


def test_already_migrating_is_409(cloud_factory):
    cloud = cloud_factory(**{"fake.migration_bandwidth_mb": 1024,
                             "fake.migration_dirty_rate_mb": 2048,
                             "libvirt.live_migration_monitor_interval": 0.05})
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    m = c.wait_status(sid, "running")
    with pytest.raises(APIError) as err:
        c.live_migrate(sid, host="compute3")
    assert err.value.status == 409 and "busy with task migrating" in err.value.message
    c.abort_migration(sid, m["id"])
    assert c.wait_migration(sid)["status"] == "cancelled"


def _stop_listening(cloud, host):
    """The fake hypervisor on ``host`` no longer listens for migrations."""
    path = os.path.join(fake_host(cloud.conf.fake.hosts_path, host).root, "hypervisor.json")
    with open(path, "w") as f:
        json.dump({"listening": False, "uri": f"qemu+tcp://{host}/system"}, f)


def test_hypervisor_not_listening(cloud):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    _stop_listening(cloud, "compute2")
    # Refused by the hosts themselves: the migration is recorded as error.
    assert refused(c, sid, 400, "not listening for migrations",
                   "qemu+tcp://compute2/system", host="compute2") == 1
    m = c.latest_migration(sid)
    assert m["status"] == "error" and "not listening" in m["error_message"]


@pytest.mark.parametrize("claim_s", [0.5, 2.5])
def test_a_refusal_that_comes_before_the_claim_is_recorded_with_its_action(cloud_factory,
                                                                           claim_s):
    """The requested destination's pre-check runs while the move is claimed
    (decision 34). Here the claim is held, so the hosts' refusal reaches the
    conductor before the action it belongs to exists: its event is tried again
    every second, for as long as a claim may take, instead of being dropped
    (2.5 s: longer than the one retry a second later there used to be)."""
    cloud = cloud_factory(conductor_faults=[f"claim:delay:{claim_s}"])
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    _stop_listening(cloud, "compute2")
    assert refused(c, sid, 400, "not listening for migrations", host="compute2") == 1
    m = c.latest_migration(sid)
    assert m["status"] == "error"
    # The refusal's timeline entry is the check's own time, stamped when it was
    # sent: before the move was recorded, and without the 0.5 s the claim took.
    entries = c.get(f"/servers/{sid}/migrations/{m['id']}/timeline")["timeline"]
    [check] = [e for e in entries if e["name"] == "check_can_live_migrate_destination"]
    accepted = next(e for e in entries if e["kind"] == "phase" and e["name"] == "accepted")
    assert "not listening" in check["detail"]["outcome"], check
    assert check["duration_ms"] < 400 and check["at"] < accepted["at"], (check, accepted)
    wait_for("the destination's refusal event", lambda: {
        e["event"]: e["result"] for e in c.events(sid)}.get(
        "compute_check_can_live_migrate_destination") == "Error", timeout=10)


def test_scheduler_lists_why_each_candidate_was_refused(cloud):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    for host in ("compute2", "compute3"):
        with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, host).root,
                               "faults.json"), "w") as f:
            json.dump(["check_can_live_migrate_destination:fail"], f)
    refused(c, sid, 400, "No valid host", "compute2: pre-check failed: Injected fault",
            "compute3: pre-check failed: Injected fault")
    assert c.server(sid)["OS-EXT-STS:task_state"] is None


def test_migrate_max_retries_bounds_the_candidates_tried(cloud_factory):
    cloud = cloud_factory(migrate_max_retries=0)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    for host in ("compute2", "compute3"):
        with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, host).root,
                               "faults.json"), "w") as f:
            json.dump(["check_can_live_migrate_destination:fail"], f)
    refused(c, sid, 400, "not tried: migrate_max_retries=0")


def test_scheduler_skips_a_refusing_host(cloud):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    # compute2 has the most free RAM, so it is tried first and refuses.
    c.create_server("filler", flavor="3", host="compute3")
    with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, "compute2").root,
                           "faults.json"), "w") as f:
        json.dump(["check_can_live_migrate_destination:fail"], f)
    c.live_migrate(sid)
    m = c.wait_migration(sid)
    assert (m["status"], m["dest_compute"]) == ("completed", "compute3")


def test_volume_backed_live_migration(cloud):
    c = cloud.client
    vol = "6e7a8c1e-1d1f-4d8e-9a51-0c7a7d0e3b11"
    sid = c.create_server("vm", host="compute1", block_device_mapping_v2=[
        {"boot_index": 0, "uuid": vol, "source_type": "volume",
         "destination_type": "volume"}])["id"]
    hosts = {h: fake_host(cloud.conf.fake.hosts_path, h) for h in cloud.host_names}
    assert list(hosts["compute1"].records("volumes")) == [f"{sid}-{vol}"]
    c.live_migrate(sid, host="compute2")
    assert c.wait_migration(sid)["status"] == "completed"
    assert list(hosts["compute2"].records("volumes")) == [f"{sid}-{vol}"]
    assert hosts["compute1"].records("volumes") == {}

    # The transfer (on the source, compute2) fails after the destination
    # connected the volume: the rollback removes that connection.
    with open(os.path.join(hosts["compute2"].root, "faults.json"), "w") as f:
        json.dump(["live_migration:fail"], f)
    c.live_migrate(sid, host="compute1")
    assert c.wait_migration(sid)["status"] == "failed"
    assert hosts["compute1"].records("volumes") == {}
    assert list(hosts["compute2"].records("volumes")) == [f"{sid}-{vol}"]


@pytest.mark.parametrize("extra,fragment", [
    ({"config_drive": True}, "config drive"),
    ({"block_device_mapping_v2": [{"uuid": "0d7d7e5c-53c1-4a31-9a5b-1c0f2d0fd0b9",
                                   "source_type": "volume", "destination_type": "volume",
                                   "device_type": "cdrom", "boot_index": 1}]}, "CD-ROM"),
])
def test_block_migration_refuses_devices_that_cannot_move(cloud_factory, tmp_path, extra,
                                                          fragment):
    paths = {h: str(tmp_path / f"inst-{h}") for h in ("compute1", "compute2")}
    cloud = cloud_factory(hosts=("compute1", "compute2"), host_paths=paths)
    c = cloud.client
    sid = c.create_server("vm", host="compute1", **extra)["id"]
    refused(c, sid, 400, fragment, host="compute2", block_migration=True)
    assert fake_host(cloud.conf.fake.hosts_path, "compute2").is_empty_for(sid)


def test_block_migration_requested_on_shared_storage_is_refused(cloud):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    refused(c, sid, 400, "share the instance directory", host="compute2",
            block_migration=True)


def test_a_check_left_running_by_a_refused_claim_holds_up_no_other_request(cloud_factory):
    """An early pre-check cannot be recalled once sent (decision 34). With one
    check thread, a request refused for room leaves its check hanging on
    compute2 for 10 s; the next request asks its own check after its claim
    instead of queueing behind one nobody awaits (it took 10 s)."""
    cloud = cloud_factory(conductor_workers=1, **{"fake.memory_mb": 1024})
    c = cloud.client
    for i in range(2):
        c.create_server(f"fill-{i}", host="compute2")
    first = c.create_server("first", host="compute1")["id"]
    second = c.create_server("second", host="compute1")["id"]
    with open(os.path.join(fake_host(cloud.conf.fake.hosts_path, "compute2").root,
                           "faults.json"), "w") as f:
        json.dump(["check_can_live_migrate_destination:delay:10"], f)
    with pytest.raises(APIError) as full:
        c.live_migrate(first, host="compute2")
    assert full.value.status == 400 and "compute2 lacks RAM" in full.value.message
    started = time.monotonic()
    c.live_migrate(second, host="compute3")
    assert c.wait_migration(second)["status"] == "completed"
    assert time.monotonic() - started < 5, time.monotonic() - started
    assert c.server(first)["OS-EXT-SRV-ATTR:host"] == "compute1"
