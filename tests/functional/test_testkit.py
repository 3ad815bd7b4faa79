"""The test kit against a cloud: what users' tests lean on must hold."""

import pytest

from godwit.testkit import (
    APIError,
    assert_final,
    assert_no_leftovers,
    assert_only_on,
    assert_unchanged,
    fault,
    wait_migration_status,
    wait_server_status,
)


def test_host_handles_show_what_a_server_has(godwit_cloud):
    c = godwit_cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    h1, h2 = godwit_cloud.host("compute1"), godwit_cloud.host("compute2")
    assert list(h1.domains()) == [sid]
    assert [v["instance_uuid"] for v in h1.vifs().values()] == [sid]
    assert list(h1.filters()) == [sid]
    assert h1.volume_connections() == {}
    assert h1.disks() == {sid: ["disk"]}
    assert h1.holds(sid) and not h2.holds(sid)
    with pytest.raises(KeyError):
        godwit_cloud.host("nosuch")


def test_rollback_after_armed_fault_leaves_nothing(godwit_cloud):
    c = godwit_cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    dest = godwit_cloud.host("compute2")
    dest.arm(fault("pre_live_migration", "fail"))
    assert dest.armed() == ["pre_live_migration:fail"]
    c.live_migrate(sid, host="compute2")
    assert wait_migration_status(c, sid)["status"] == "failed"
    assert_final(c, sid, "failed")
    assert_only_on(godwit_cloud, sid, "compute1")
    assert_no_leftovers(godwit_cloud)

    dest.disarm()
    c.live_migrate(sid, host="compute2")
    wait_migration_status(c, sid, "completed")
    assert_only_on(godwit_cloud, sid, "compute2")
    assert_no_leftovers(godwit_cloud)


def test_leftovers_and_changes_are_caught(godwit_cloud):
    c = godwit_cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    # A domain of the server where it does not live.
    godwit_cloud.local_cloud.computes["compute2"].manager.driver.fake.put(
        "domains", sid, {"instance_uuid": sid, "power_state": 4})
    with pytest.raises(AssertionError, match=f"compute2: domains {sid}"):
        assert_no_leftovers(godwit_cloud)
    with pytest.raises(AssertionError, match="left on compute2"):
        assert_only_on(godwit_cloud, sid, "compute1")

    with pytest.raises(AssertionError, match="table instances changed"):
        with assert_unchanged(godwit_cloud):
            c.action(sid, "os-stop", expect=202)
            wait_server_status(c, sid, "SHUTOFF")


def test_refused_request_changes_nothing(godwit_cloud):
    c = godwit_cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    with assert_unchanged(godwit_cloud):
        with pytest.raises(APIError) as err:
            c.live_migrate(sid, host="compute1")
    assert err.value.status == 400


def test_conductor_rpc_for_callers_that_speak_rpc(godwit_cloud):
    sid = godwit_cloud.client.create_server("vm", host="compute1")["id"]
    ctxt = godwit_cloud.admin_context()
    migration = godwit_cloud.conductor_rpc.live_migrate_instance(ctxt, sid, "compute2", "auto")
    assert migration["dest_compute"] == "compute2"
    assert wait_migration_status(godwit_cloud.client, sid)["status"] == "completed"
    assert godwit_cloud.conductor_rpc.instance_get(ctxt, sid)["instance"]["host"] == "compute2"


@pytest.mark.godwit_cloud(hosts=["a1", "a2", "a3"], options={"fake.memory_mb": 4096})
def test_marker_sets_the_cloud(godwit_cloud):
    assert godwit_cloud.host_names == ["a1", "a2", "a3"]
    hypervisors = godwit_cloud.client.get("/os-hypervisors/detail")["hypervisors"]
    assert {h["memory_mb"] for h in hypervisors} == {4096}


def test_crashed_host_is_judged_from_its_records(godwit_cloud):
    c = godwit_cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    godwit_cloud.crash_host("compute2")
    assert_no_leftovers(godwit_cloud)
    godwit_cloud.stop_host("compute1")
    assert_no_leftovers(godwit_cloud)
    assert_only_on(godwit_cloud, sid, "compute1")


def test_one_in_process_cloud_at_a_time(godwit_cloud, godwit_cloud_factory):
    # Their queues would be the same: the second would answer the first's calls.
    with pytest.raises(RuntimeError, match="another FakeCloud"):
        godwit_cloud_factory()
    godwit_cloud.stop()
    assert godwit_cloud_factory(hosts=1).host_names == ["compute1"]
