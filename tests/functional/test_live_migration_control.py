"""Steering live migrations: limits, abort in every phase, force-complete,
completion timeout, auto-converge, progress and notifications.

The fake driver simulates the transfer: ``[fake] migration_bandwidth_mb``
is the network, ``migration_dirty_rate_mb`` the guest's page dirtying. With
dirty rate >= bandwidth a migration never converges on its own.
"""

import json
import os

import oslo_messaging
import pytest
from oslo_messaging.notify import _impl_test

from godwit.testing import APIError, assert_only_on, fake_host, wait_for

SLOW = {"fake.migration_bandwidth_mb": 1024, "fake.migration_dirty_rate_mb": 0,
        "libvirt.live_migration_monitor_interval": 0.05}
STUCK = dict(SLOW, **{"fake.migration_dirty_rate_mb": 2048})


def test_concurrency_limit_queues_the_second_migration(cloud_factory):
    cloud = cloud_factory(**STUCK)
    c = cloud.client
    a = c.create_server("a", host="compute1")["id"]
    b = c.create_server("b", host="compute1")["id"]
    c.live_migrate(a, host="compute2")
    ma = c.wait_status(a, "running")
    c.live_migrate(b, host="compute3")
    mb = c.wait_status(b, "queued")
    # The first never converges, so the second must still be waiting.
    assert c.latest_migration(b)["status"] == "queued"
    assert [m["status"] for m in c.server_migrations(b)] == ["queued"]
    c.abort_migration(a, ma["id"])
    assert c.wait_migration(a)["status"] == "cancelled"
    # The slot is free: b starts. Let it converge by forcing completion.
    mb = c.wait_status(b, "running")
    c.force_complete(b, mb["id"])
    assert c.wait_migration(b)["status"] == "completed"
    assert_only_on(cloud, a, "compute1")
    assert_only_on(cloud, b, "compute3")


def test_abort_running_rolls_back(cloud_factory):
    cloud = cloud_factory(**STUCK)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    m = c.wait_status(sid, "running")
    c.abort_migration(sid, m["id"])
    m = c.wait_migration(sid)
    assert m["status"] == "cancelled"
    assert m["error_message"] == "aborted on request"
    server = c.server(sid)
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "compute1")
    assert server["OS-EXT-STS:task_state"] is None
    assert_only_on(cloud, sid, "compute1")


def test_abort_queued_needs_2_65_and_cancels_at_once(cloud_factory):
    cloud = cloud_factory(**STUCK)
    c = cloud.client
    a = c.create_server("a", host="compute1")["id"]
    b = c.create_server("b", host="compute1")["id"]
    c.live_migrate(a, host="compute2")
    ma = c.wait_status(a, "running")
    c.live_migrate(b, host="compute2")
    mb = c.wait_status(b, "queued")
    with pytest.raises(APIError) as err:
        c.abort_migration(b, mb["id"], version="2.64")
    assert err.value.status == 400 and "status queued" in err.value.message
    c.abort_migration(b, mb["id"])
    mb = c.wait_migration(b)
    assert mb["status"] == "cancelled" and "queued" in mb["error_message"]
    assert c.server(b)["OS-EXT-STS:task_state"] is None
    c.abort_migration(a, ma["id"])
    assert c.wait_migration(a)["status"] == "cancelled"
    assert_only_on(cloud, a, "compute1")
    assert_only_on(cloud, b, "compute1")


def test_abort_preparing_rolls_back_the_destination(cloud_factory):
    cloud = cloud_factory(**SLOW)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    faults = os.path.join(fake_host(cloud.conf.fake.hosts_path, "compute2").root,
                          "faults.json")
    with open(faults, "w") as f:
        json.dump(["pre_live_migration:delay:1.0"], f)
    c.live_migrate(sid, host="compute2")
    m = c.wait_status(sid, "preparing")
    c.abort_migration(sid, m["id"])
    m = c.wait_migration(sid)
    assert m["status"] == "cancelled"
    assert "preparing" in m["error_message"]
    assert_only_on(cloud, sid, "compute1")


def test_abort_of_a_final_migration_is_refused(cloud):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    m = c.wait_migration(sid)
    # As in Nova: the server is no longer migrating, so 409 (InstanceInvalidState).
    with pytest.raises(APIError) as err:
        c.abort_migration(sid, m["id"])
    assert err.value.status == 409
    with pytest.raises(APIError) as err:
        c.force_complete(sid, m["id"])
    assert err.value.status == 409


@pytest.mark.parametrize("post_copy", [False, True])
def test_force_complete(cloud_factory, post_copy):
    cloud = cloud_factory(**dict(STUCK, **{"libvirt.live_migration_permit_post_copy":
                                           post_copy}))
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    m = c.wait_status(sid, "running")
    c.force_complete(sid, m["id"])
    m = c.wait_migration(sid)
    assert m["status"] == "completed", m
    server = c.server(sid)
    assert server["OS-EXT-SRV-ATTR:host"] == "compute2"
    assert server["status"] == "ACTIVE"
    # A guest paused to converge runs again on the destination.
    dom = fake_host(cloud.conf.fake.hosts_path, "compute2").get("domains", sid)
    assert dom["power_state"] == 1 and dom["persistent"] is True
    assert_only_on(cloud, sid, "compute2")


@pytest.mark.parametrize("action,final", [("abort", "failed"),
                                          ("force_complete", "completed")])
def test_completion_timeout(cloud_factory, action, final):
    # 1 s per GiB x 2 GiB (a 512 MiB guest counts as 2) = 2 s.
    cloud = cloud_factory(**dict(STUCK, **{
        "libvirt.live_migration_completion_timeout": 1,
        "libvirt.live_migration_timeout_action": action}))
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    m = c.wait_migration(sid, timeout=20)
    assert m["status"] == final, m
    if action == "abort":
        assert "completion timeout of 2 s" in m["error_message"]
        assert_only_on(cloud, sid, "compute1")
    else:
        assert_only_on(cloud, sid, "compute2")


def test_auto_converge_lets_a_busy_guest_finish(cloud_factory):
    cloud = cloud_factory(**dict(SLOW, **{
        "fake.migration_dirty_rate_mb": 1024,
        "libvirt.live_migration_permit_auto_converge": True}))
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    assert c.wait_migration(sid, timeout=30)["status"] == "completed"


def test_progress_is_recorded_and_never_goes_backwards(cloud_factory):
    cloud = cloud_factory(**dict(SLOW, **{"fake.migration_bandwidth_mb": 256,
                                          "fake.migration_dirty_rate_mb": 64}))
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    mid = c.wait_status(sid, "running")["id"]
    seen, samples = [], []

    def sample():
        samples.append(c.server(sid)["progress"])
        ms = c.server_migrations(sid)
        if ms:
            seen.append(ms[0])
        return c.latest_migration(sid)["status"] == "completed"
    wait_for("completion", sample, timeout=30, interval=0.05)
    assert samples == sorted(samples), samples
    assert c.server(sid)["progress"] == 100
    running = [m for m in seen if m["id"] == mid and m["memory_total_bytes"]]
    assert running, "no progress was recorded while running"
    assert running[-1]["memory_total_bytes"] == 512 * 1024 * 1024
    assert any(0 < m["memory_remaining_bytes"] < m["memory_total_bytes"] for m in running)


def test_notifications_for_each_phase(cloud_factory):
    _impl_test.reset()
    cloud = cloud_factory(**{"oslo_messaging_notifications.driver": ["test"]})
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    assert c.wait_migration(sid)["status"] == "completed"
    # The test driver keeps (context, message, priority, retry) tuples.
    types = [msg["event_type"] for _ctxt, msg, _prio, _retry in _impl_test.NOTIFICATIONS
             if isinstance(msg["payload"], dict)
             and msg["payload"].get("godwit_object.data", {}).get("uuid") == sid]
    for phase in ("live_migration_pre", "live_migration_post", "live_migration_post_dest"):
        assert f"instance.{phase}.start" in types and f"instance.{phase}.end" in types
    assert oslo_messaging  # the test driver is oslo.messaging's own
