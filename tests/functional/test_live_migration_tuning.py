"""Tuning a running live migration and handling stalls, against the fake driver
with the real conductor and agents in this process.

The fake driver simulates the transfer: ``[fake] migration_bandwidth_mb`` is
the network, capped by the job's max speed, and ``migration_dirty_rate_mb``
the guest's page dirtying; the switch-over happens once what remains fits in
the allowed downtime. So a speed or a downtime set through the API decides
whether a migration converges, which is what these tests look at, along with
the timeline and the refusals (which must change nothing).
"""

import oslo_messaging as messaging
import pytest

from godwit import controller, exception, rpc
from godwit.testing import APIError, assert_only_on, wait_for

FAST = {"libvirt.live_migration_monitor_interval": 0.05,
        # No stall handling unless a test asks for it.
        "libvirt.live_migration_stall_timeout": 0}
# The config caps the transfer at 64 MiB/s while the guest dirties 128 MiB/s:
# it never converges, unless the speed is raised (the network carries 1 GiB/s).
CAPPED = dict(FAST, **{"fake.migration_bandwidth_mb": 1024,
                       "fake.migration_dirty_rate_mb": 128,
                       "libvirt.live_migration_bandwidth": 64})
# The guest dirties memory faster than the network carries it: 512 MiB stay
# to send, 500 ms at 1 GiB/s, more than the first downtime steps allow.
STUCK = dict(FAST, **{"fake.migration_bandwidth_mb": 1024,
                      "fake.migration_dirty_rate_mb": 2048})


def timeline(c, sid, mid):
    return c.get(f"/servers/{sid}/migrations/{mid}/timeline")["timeline"]


def tune(c, sid, mid, body):
    return c.post(f"/servers/{sid}/migrations/{mid}/action", body, expect=202)


def refused(c, sid, mid, body, **kw):
    with pytest.raises(APIError) as err:
        c.post(f"/servers/{sid}/migrations/{mid}/action", body, **kw)
    return err.value


def running(cloud, **kw):
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    m = c.wait_status(sid, "running")
    return c, sid, m["id"]


def user_tunings(entries):
    return [e for e in entries if e["kind"] == "tuning" and e["name"] == "user"]


def monitor_tunings(entries):
    return [e["detail"] for e in entries if e["kind"] == "tuning" and e["name"] == "monitor"]


def test_set_speed_lets_a_capped_migration_converge(cloud_factory):
    cloud = cloud_factory(**CAPPED)
    c, sid, mid = running(cloud)
    # Capped below the dirty rate it stays running.
    wait_for("a progress sample at the capped rate", lambda: [
        e for e in timeline(c, sid, mid) if e["kind"] == "progress"
        and e["detail"].get("transfer_rate") == 64 * 2 ** 20], timeout=10)
    assert c.latest_migration(sid)["status"] == "running"

    tune(c, sid, mid, {"set-speed": {"mib_per_s": 1024}})

    m = c.wait_migration(sid)
    assert m["status"] == "completed", m
    assert_only_on(cloud, sid, "compute2")
    entries = timeline(c, sid, mid)
    intents = [(e["name"], e["detail"]) for e in entries if e["kind"] == "intent"]
    assert intents == [("set-speed", {"bandwidth_mib": 1024, "status": "running"})]
    applied = user_tunings(entries)
    assert [(e["host"], e["detail"]["bandwidth_mib"], e["detail"]["outcome"])
            for e in applied] == [("compute1", 1024, "ok")]
    assert any(t.get("user_bandwidth_mib") == 1024 and t.get("bandwidth_mib") == 1024
               for t in monitor_tunings(entries)), monitor_tunings(entries)
    # The samples before the change show the configured cap and the dirty rate.
    samples = [e["detail"] for e in entries if e["kind"] == "progress"]
    assert samples[0]["dirty_rate"] == 128 * 2 ** 20, samples[0]


def test_set_downtime_stops_the_steps_and_lets_it_converge(cloud_factory):
    cloud = cloud_factory(**STUCK)
    c, sid, mid = running(cloud)
    # 50 ms: less than the 500 ms the rest needs, so it keeps running ...
    tune(c, sid, mid, {"set-downtime": {"ms": 50}})
    wait_for("the monitor's tuning with the user's downtime", lambda: [
        t for t in monitor_tunings(timeline(c, sid, mid)) if t.get("user_downtime_ms") == 50])
    assert c.latest_migration(sid)["status"] == "running"
    entries = timeline(c, sid, mid)
    mine = [t for t in monitor_tunings(entries) if t.get("user_downtime_ms") == 50][-1]
    assert mine["max_downtime_ms"] == 50
    assert mine["downtime_steps"] == "stopped: the user set the max downtime"
    # ... 600 ms lets it switch over.
    tune(c, sid, mid, {"set-downtime": {"ms": 600}})
    m = c.wait_migration(sid)
    assert m["status"] == "completed", m
    entries = timeline(c, sid, mid)
    assert [(e["name"], e["detail"]["max_downtime_ms"]) for e in entries
            if e["kind"] == "intent"] == [("set-downtime", 50), ("set-downtime", 600)]
    assert [(e["detail"]["max_downtime_ms"], e["detail"]["outcome"])
            for e in user_tunings(entries)] == [(50, "ok"), (600, "ok")]
    # Once the user set it, every later report of the monitor keeps it.
    after = monitor_tunings(entries)
    first = next(i for i, t in enumerate(after) if t.get("user_downtime_ms"))
    assert all(t["max_downtime_ms"] == t["user_downtime_ms"] for t in after[first:]), after


@pytest.mark.parametrize("body", [
    {"set-speed": {"mib_per_s": 0}},
    {"set-speed": {"mib_per_s": -5}},
    {"set-speed": {"mib_per_s": 10 ** 9}},
    {"set-speed": {"mib_per_s": "100"}},
    {"set-speed": {"mib_per_s": 1.5}},
    {"set-speed": {"mib_per_s": True}},
    {"set-speed": {"mbps": 100}},
    {"set-speed": 100},
    {"set-downtime": {"ms": 0}},
    {"set-downtime": {"ms": 60001}},
    {"set-downtime": {"ms": None}},
    {"set-downtime": {"ms": 100, "extra": 1}},
])
def test_bad_values_are_refused_and_change_nothing(cloud_factory, body):
    cloud = cloud_factory(**STUCK)
    c, sid, mid = running(cloud)
    before = [e for e in timeline(c, sid, mid) if e["kind"] in ("intent", "tuning")
              and e["name"] != "monitor"]
    err = refused(c, sid, mid, body)
    action = next(iter(body))
    assert err.status == 400, err.message
    assert action in err.message and "an integer from 1 to" in err.message, err.message
    after = [e for e in timeline(c, sid, mid) if e["kind"] in ("intent", "tuning")
             and e["name"] != "monitor"]
    assert after == before == []
    assert cloud.db.migration_get(mid)["step_data"].find("user_tuning") == -1
    c.abort_migration(sid, mid)
    assert c.wait_migration(sid)["status"] == "cancelled"


def test_refused_when_not_running_not_live_or_pinned(cloud_factory):
    cloud = cloud_factory(**dict(FAST, **{"fake.migration_bandwidth_mb": 0}))
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    done = c.wait_migration(sid)
    assert done["status"] == "completed"
    # Not migrating any more: 409, as force_complete.
    err = refused(c, sid, done["id"], {"set-speed": {"mib_per_s": 100}})
    assert err.status == 409 and "being live-migrated" in err.message, err.message
    # A cold migration: no live migration to tune.
    c.action(sid, "migrate", {"host": "compute3"})
    cold = c.wait_migration(sid, until=("finished", "error", "failed"))
    err = refused(c, sid, cold["id"], {"set-downtime": {"ms": 100}})
    assert err.status == 409, err.message
    assert [e for e in timeline(c, sid, done["id"]) + timeline(c, sid, cold["id"])
            if e["kind"] == "intent"] == []


@pytest.mark.parametrize("level", ["2.1", "auto"])
def test_a_compute_cap_below_2_2_is_a_409_that_records_nothing(cloud_factory, level):
    # Pinned to 2.1, or auto with every agent serving 2.1 (the test kit's older
    # agents): the API reads the same cap the conductors do.
    cloud = cloud_factory(compute_rpc_version="2.1" if level == "auto" else None,
                          **dict(STUCK, **{"upgrade_levels.compute": level}))
    c, sid, mid = running(cloud)
    err = refused(c, sid, mid, {"set-downtime": {"ms": 600}})
    assert err.status == 409
    assert "compute RPC 2.2" in err.message and "upgrade every compute agent" in err.message
    assert f"up to 2.1 ([upgrade_levels] compute = {level})" in err.message
    assert [e for e in timeline(c, sid, mid) if e["kind"] == "intent"] == []
    assert "user_tuning" not in (cloud.db.migration_get(mid)["step_data"] or "")
    # A non-admin is refused by policy first.
    with pytest.raises(APIError) as err:
        c.__class__(cloud.api_url, user="bob", project="p1").post(
            f"/servers/{sid}/migrations/{mid}/action", {"set-speed": {"mib_per_s": 10}})
    assert err.value.status in (403, 404)
    c.abort_migration(sid, mid)
    assert c.wait_migration(sid)["status"] == "cancelled"


# -- stalls -------------------------------------------------------------------------

STALL = dict(STUCK, **{"libvirt.live_migration_stall_timeout": 1})


@pytest.mark.parametrize("action,status,says,forced", [
    ("abort", "failed", "no progress for 1 s: aborted", None),
    ("raise_downtime", "completed", "no progress for 1 s: max downtime raised to 500 ms",
     None),
    ("pause", "completed", "no progress for 1 s: paused the guest", "paused"),
    ("post_copy", "completed", "no progress for 1 s: switched to post-copy", "post-copy"),
])
def test_a_stall_takes_the_configured_action(cloud_factory, action, status, says, forced):
    cloud = cloud_factory(**dict(STALL, **{
        "libvirt.live_migration_stall_action": action,
        "libvirt.live_migration_permit_post_copy": action == "post_copy"}))
    c, sid, mid = running(cloud)
    m = c.wait_migration(sid, timeout=30)
    assert m["status"] == status, m
    if status == "failed":
        assert "no progress for 1 s" in m["error_message"], m
        assert_only_on(cloud, sid, "compute1")
    else:
        assert_only_on(cloud, sid, "compute2")
    stalls = [t for t in monitor_tunings(timeline(c, sid, mid)) if t.get("stalls")]
    assert stalls and stalls[0]["stall"] == says, stalls
    assert stalls[0]["forced"] == forced
    if action == "raise_downtime":
        assert stalls[0]["max_downtime_ms"] == 500


def test_a_stall_with_action_none_is_only_recorded(cloud_factory):
    cloud = cloud_factory(**dict(STALL, **{"libvirt.live_migration_stall_action": "none"}))
    c, sid, mid = running(cloud)
    wait_for("two stalls recorded", lambda: [
        t for t in monitor_tunings(timeline(c, sid, mid)) if t.get("stalls", 0) >= 2],
        timeout=15)
    assert c.latest_migration(sid)["status"] == "running"
    c.abort_migration(sid, mid)
    assert c.wait_migration(sid)["status"] == "cancelled"


def test_a_user_downtime_is_not_raised_by_a_stall(cloud_factory):
    cloud = cloud_factory(**dict(STALL, **{"libvirt.live_migration_stall_timeout": 2}))
    c, sid, mid = running(cloud)
    tune(c, sid, mid, {"set-downtime": {"ms": 50}})
    wait_for("a stall after the user's downtime", lambda: [
        t for t in monitor_tunings(timeline(c, sid, mid))
        if t.get("stall") == "no progress for 2 s: downtime left as the user set it"],
        timeout=15)
    assert c.latest_migration(sid)["status"] == "running"
    c.abort_migration(sid, mid)
    assert c.wait_migration(sid)["status"] == "cancelled"


def test_a_conductor_that_cannot_send_2_2_records_that_it_did_not_apply(cloud_factory,
                                                                         monkeypatch):
    # The API allows it, but the owning conductor is capped below 2.2 (its own
    # [upgrade_levels], or a cap the API did not share).
    cloud = cloud_factory(**STUCK)
    monkeypatch.setattr(cloud.conductor.manager.compute_rpc, "can_tune", lambda: False)
    c, sid, mid = running(cloud)
    tune(c, sid, mid, {"set-downtime": {"ms": 600}})
    entry = wait_for("the conductor's answer", lambda: user_tunings(timeline(c, sid, mid)))
    assert entry[0]["detail"]["outcome"].startswith(
        "not applied: [upgrade_levels] compute caps this conductor below compute RPC 2.2")
    # Not applied: the guest still does not converge; and it is not tried again.
    assert c.latest_migration(sid)["status"] == "running"
    cloud.conductor.manager.sweep()
    assert len(user_tunings(timeline(c, sid, mid))) == 1
    assert not [t for t in monitor_tunings(timeline(c, sid, mid)) if t.get("user_downtime_ms")]
    c.abort_migration(sid, mid)
    assert c.wait_migration(sid)["status"] == "cancelled"


def test_parallel_connections_are_in_the_timeline(cloud_factory):
    cloud = cloud_factory(**dict(STUCK, **{"libvirt.live_migration_parallel_connections": 4}))
    c, sid, mid = running(cloud)
    wait_for("the monitor's first tuning", lambda: monitor_tunings(timeline(c, sid, mid)))
    assert monitor_tunings(timeline(c, sid, mid))[0]["parallel_connections"] == 4
    c.abort_migration(sid, mid)
    assert c.wait_migration(sid)["status"] == "cancelled"


def test_auto_with_agents_of_this_release_lets_the_user_tune(cloud_factory):
    cloud = cloud_factory(**dict(STUCK, **{"upgrade_levels.compute": "auto"}))
    c, sid, mid = running(cloud)
    c.post(f"/servers/{sid}/migrations/{mid}/action", {"set-downtime": {"ms": 600}},
           expect=202)
    assert c.wait_migration(sid)["status"] == "completed"


def test_the_controllers_interface_1_2(cloud_factory):
    cloud = cloud_factory(**STUCK)
    c, sid, mid = running(cloud)
    transport = rpc.get_transport(cloud.conf, cloud.transport_url)
    ctl = controller.ControllerClient(transport=transport)
    with pytest.raises(exception.Invalid) as err:
        ctl.live_migration_set_downtime(sid, mid, 0)
    assert "an integer from 1 to 60000" in str(err.value)
    assert [e for e in timeline(c, sid, mid) if e["kind"] == "intent"] == []
    m = ctl.live_migration_set_downtime(sid, mid, 600)
    assert (m["id"], m["status"]) == (mid, "running")
    assert c.wait_migration(sid)["status"] == "completed"
    assert [(e["detail"]["max_downtime_ms"], e["detail"]["outcome"])
            for e in user_tunings(timeline(c, sid, mid))] == [(600, "ok")]
    # A client capped at 1.1 does not send the 1.2 calls.
    old = controller.ControllerClient(transport=transport, version_cap="1.1")
    with pytest.raises(messaging.RPCVersionCapError):
        old.live_migration_set_speed(sid, mid, 100)


def test_the_user_s_downtime_survives_an_agent_restart(cloud_factory):
    # The job runs as a process of its own and outlives the source's agent; the
    # monitor the restarted agent attaches keeps the user's downtime.
    cloud = cloud_factory(**dict(STUCK, **{"fake.migration_job_runner": "process"}))
    c, sid, mid = running(cloud)
    tune(c, sid, mid, {"set-downtime": {"ms": 50}})
    wait_for("the user's downtime applied", lambda: user_tunings(timeline(c, sid, mid)))
    cloud.stop_compute("compute1")
    agent = cloud.start_compute("compute1")
    monitor = wait_for("the monitor attached again", lambda: agent.manager.live.monitors.get(
        mid), timeout=30)
    assert (monitor.user_downtime_ms, monitor.max_downtime_ms) == (50, 50)
    assert monitor.tuning["downtime_steps"] == "stopped: the user set the max downtime"
    assert c.latest_migration(sid)["status"] == "running"
    # And it is still the user's to change.
    tune(c, sid, mid, {"set-downtime": {"ms": 600}})
    assert c.wait_migration(sid)["status"] == "completed"
    assert_only_on(cloud, sid, "compute2")


def test_a_tuning_recorded_as_not_applied_stays_not_applied_after_an_agent_restart(
        cloud_factory, monkeypatch):
    cloud = cloud_factory(**dict(STUCK, **{"fake.migration_job_runner": "process"}))
    monkeypatch.setattr(cloud.conductor.manager.compute_rpc, "can_tune", lambda: False)
    c, sid, mid = running(cloud)
    tune(c, sid, mid, {"set-downtime": {"ms": 600}})
    entry = wait_for("the conductor's answer", lambda: user_tunings(timeline(c, sid, mid)))
    assert entry[0]["detail"]["outcome"].startswith("not applied")
    cloud.stop_compute("compute1")
    agent = cloud.start_compute("compute1")
    monitor = wait_for("the monitor attached again", lambda: agent.manager.live.monitors.get(
        mid), timeout=30)
    # The timeline says the 600 ms were not applied; the new monitor must not use them.
    assert monitor.user_downtime_ms is None, monitor.tuning
