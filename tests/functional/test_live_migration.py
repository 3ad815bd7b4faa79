"""Live migration end to end in one process (kombu+memory, SQLite, fake hosts).

Each test drives the REST API and then checks the ground truth: the
database through the API, and each fake host's records, through the test
kit (godwit.testkit) our users' tests use.
"""

import concurrent.futures
import os

import pytest

from godwit import testkit
from godwit.testkit import APIError, assert_no_leftovers, assert_unchanged, fault, wait_for


def assert_only_on(cloud, sid, host):
    """The instance exists on ``host`` with domain, VIF and filter, and nowhere else."""
    testkit.assert_only_on(cloud, sid, host)
    here = cloud.host(host)
    assert here.domains()[sid]["persistent"] is True
    assert any(v["instance_uuid"] == sid for v in here.vifs().values())
    assert sid in here.filters()


def test_live_migration_there_and_back(cloud):
    c = cloud.client
    server = c.create_server("vm1", host="compute1")
    sid = server["id"]
    assert server["status"] == "ACTIVE"
    assert_only_on(cloud, sid, "compute1")

    c.live_migrate(sid, host="compute2")
    m = c.wait_migration(sid)
    assert m["status"] == "completed", m
    assert (m["source_compute"], m["dest_compute"]) == ("compute1", "compute2")
    server = c.server(sid)
    assert server["OS-EXT-SRV-ATTR:host"] == "compute2"
    assert server["status"] == "ACTIVE"
    assert server["OS-EXT-STS:task_state"] is None
    assert server["progress"] == 100
    assert_only_on(cloud, sid, "compute2")

    c.live_migrate(sid, host="compute1")
    m2 = c.wait_migration(sid)
    assert m2["status"] == "completed" and m2["id"] != m["id"]
    assert c.server(sid)["OS-EXT-SRV-ATTR:host"] == "compute1"
    assert_only_on(cloud, sid, "compute1")

    expected = (("conductor_live_migrate_instance", cloud.conductor.server_name),
                ("compute_check_can_live_migrate_destination", "compute1"),
                ("compute_check_can_live_migrate_source", "compute2"),
                ("compute_pre_live_migration_at_destination", "compute1"),
                ("compute_live_migration", "compute2"),
                ("compute_post_live_migration_at_destination", "compute1"))
    # Step events are written after the steps, when no move is driven
    # (godwit.events.Deferred): they may land just after the final status.
    events = wait_for("the step events", lambda: (lambda found: found if all(
        n in found for n, _ in expected) else None)({e["event"]: e for e in c.events(sid)}))
    for name, host in expected:
        assert events[name]["result"] == "Success", events[name]
        assert events[name]["host"] == host


def test_scheduler_picks_a_destination_with_room(cloud):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    # Fill compute2 so that only compute3 has room for another m1.small.
    c.create_server("big", flavor="4", host="compute2")
    c.create_server("big2", flavor="4", host="compute2")
    c.create_server("big3", flavor="4", host="compute2")
    c.create_server("big4", flavor="4", host="compute2")  # 32 GiB of 32 used
    c.live_migrate(sid)
    m = c.wait_migration(sid)
    assert m["status"] == "completed", m
    assert m["dest_compute"] == "compute3"
    assert_only_on(cloud, sid, "compute3")


def test_block_migration_between_unshared_hosts(cloud_factory, tmp_path):
    paths = {h: str(tmp_path / f"inst-{h}") for h in ("compute1", "compute2")}
    cloud = cloud_factory(hosts=("compute1", "compute2"), host_paths=paths)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    disk1 = os.path.join(paths["compute1"], sid, "disk")
    with open(disk1) as f:
        content = f.read()
    with pytest.raises(APIError) as err:
        c.live_migrate(sid, host="compute2", block_migration=False)
    assert err.value.status == 400
    assert "do not share the instance directory" in err.value.message
    assert c.server(sid)["OS-EXT-STS:task_state"] is None

    c.live_migrate(sid, host="compute2", block_migration="auto")
    assert c.wait_migration(sid)["status"] == "completed"
    disk2 = os.path.join(paths["compute2"], sid, "disk")
    with open(disk2) as f:
        assert f.read() == content
    assert not os.path.exists(os.path.join(paths["compute1"], sid))


# Every failure before the switch-over is rolled back with the guest safe on
# its source: 'failed' (Nova says 'error' when pre_live_migration fails;
# docs/decisions.md 14).
@pytest.mark.parametrize("step,final,vm_status", [
    ("pre_live_migration", "failed", "ACTIVE"),
    # Armed on both hosts: the source's own re-plug fails too, so the rollback
    # is incomplete and says so.
    ("vif_plug", "error", "ACTIVE"),
    ("live_migration", "failed", "ACTIVE"),
    ("live_migration_switch", "failed", "ACTIVE"),
])
def test_failure_before_switch_rolls_back(cloud, step, final, vm_status):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    # Arm the fault in the running agents, as a user's test would.
    for host in ("compute1", "compute2"):
        cloud.host(host).arm(fault(step, "fail"))
    c.live_migrate(sid, host="compute2")
    m = c.wait_migration(sid)
    assert m["status"] == final, m
    assert step in m["error_message"] or "Injected fault" in m["error_message"]
    server = c.server(sid)
    assert server["OS-EXT-SRV-ATTR:host"] == "compute1"
    assert server["status"] == vm_status
    assert server["OS-EXT-STS:task_state"] is None
    assert_only_on(cloud, sid, "compute1")
    assert_no_leftovers(cloud)
    # Hosts' events are casts: they may land just after the final status.
    wait_for("the rollback's events", lambda: (lambda events: any(
        e["event"] == "compute_rollback_live_migration_at_destination"
        and e["result"] == "Success" for e in events) and any(
        e["result"] == "Error" and "InjectedFault" in (e["traceback"] or "")
        for e in events))(c.events(sid)))


def test_failure_after_switch_keeps_guest_on_destination(cloud):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    cloud.host("compute2").arm(fault("post_live_migration_at_destination", "fail"))
    c.live_migrate(sid, host="compute2")
    m = c.wait_migration(sid)
    assert m["status"] == "error"
    assert "finishing the instance on compute2" in m["error_message"]
    server = c.server(sid)
    # The guest runs on compute2 and the database says so; the instance is
    # ERROR because its domain there could not be made persistent.
    assert server["OS-EXT-SRV-ATTR:host"] == "compute2"
    assert server["status"] == "ERROR"
    assert "compute2" in server["fault"]["message"]
    assert sid in cloud.host("compute2").domains()
    assert not cloud.host("compute1").holds(sid)


def test_bad_requests_change_nothing(cloud_factory):
    cloud = cloud_factory(service_down_time=3)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    before = c.server(sid)

    def refused(status, fragment, **kwargs):
        with assert_unchanged(cloud), pytest.raises(APIError) as err:
            c.live_migrate(sid, **kwargs)
        assert err.value.status == status, err.value
        assert fragment in err.value.message, err.value.message
        after = c.server(sid)
        for key in ("status", "OS-EXT-SRV-ATTR:host", "OS-EXT-STS:task_state"):
            assert after[key] == before[key]
        assert c.migrations(instance_uuid=sid) == []

    refused(400, "is the host the instance already runs on", host="compute1")
    refused(400, "Compute host nosuch could not be found", host="nosuch")
    refused(400, "block_migration", host="compute2", block_migration="sometimes")
    with pytest.raises(APIError) as err:
        c.live_migrate("00000000-0000-0000-0000-000000000000", host="compute2")
    assert err.value.status == 404

    # A down host: stop its agent and wait past service_down_time.
    cloud.stop_compute("compute3")
    wait_for("compute3 down", lambda: any(
        s["host"] == "compute3" and s["state"] == "down" for s in c.services()), timeout=10)
    refused(400, "compute3 is down", host="compute3")

    # A disabled host.
    svc = next(s for s in c.services() if s["host"] == "compute2")
    c.request("PUT", f"/os-services/{svc['id']}",
              json={"status": "disabled", "disabled_reason": "maintenance"})
    refused(400, "disabled (maintenance)", host="compute2")


def test_instance_not_active_is_409(cloud):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    cloud.db.instance_update(sid, {"vm_state": "stopped", "power_state": 4})
    with pytest.raises(APIError) as err:
        c.live_migrate(sid, host="compute2")
    assert err.value.status == 409
    assert "vm_state stopped" in err.value.message
    assert c.migrations(instance_uuid=sid) == []


def test_concurrent_requests_exactly_one_wins(cloud):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    cloud.conf.set_override("migration_bandwidth_mb", 2048, group="fake")

    def attempt(dest):
        try:
            c.live_migrate(sid, host=dest)
            return 202
        except APIError as e:
            return e.status

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(attempt, ["compute2", "compute3"] * 3))
    assert results.count(202) == 1, results
    assert set(results) == {202, 409}, results
    assert c.wait_migration(sid)["status"] == "completed"
    assert len(c.migrations(instance_uuid=sid)) == 1


def test_server_lifecycle_and_listing(cloud):
    c = cloud.client
    ids = [c.create_server(f"vm{i}")["id"] for i in range(3)]
    listed = c.get("/servers/detail")["servers"]
    assert {s["id"] for s in listed} == set(ids)
    assert all(s["status"] == "ACTIVE" for s in listed)
    # Spread by free RAM: three servers land on three hosts.
    assert len({s["OS-EXT-SRV-ATTR:host"] for s in listed}) == 3
    c.delete_server(ids[0])
    assert {s["id"] for s in c.get("/servers")["servers"]} == set(ids[1:])
    for host in cloud.host_names:
        assert not cloud.host(host).holds(ids[0])
    assert_no_leftovers(cloud)
    flavors = c.get("/flavors/detail")["flavors"]
    assert [f["name"] for f in flavors][:2] == ["m1.tiny", "m1.small"]
    hyps = c.get("/os-hypervisors/detail")["hypervisors"]
    assert sum(h["running_vms"] for h in hyps) == 2


def test_non_admin_cannot_live_migrate(cloud):
    from godwit.testing import Client

    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    cloud.db.instance_update(sid, {"project_id": "demo"})
    user = Client(cloud.api_url, user="alice", project="demo")
    assert user.server(sid)["id"] == sid
    with pytest.raises(APIError) as err:
        user.live_migrate(sid, host="compute2")
    assert err.value.status == 403
    assert c.server(sid)["OS-EXT-STS:task_state"] is None
