"""Each move's timeline (godwit/db/timeline.py), read through the API extension
GET /servers/{id}/migrations/{mid}/timeline: every phase with its time, every
host step with host, duration and outcome, intents, tuning and progress."""

from datetime import datetime

import pytest

from godwit.testing import SETTLED_COLD, APIError, Client, wait_for
from godwit.testkit import fault

HOSTS = ("compute1", "compute2", "compute3")
SLOW = {"fake.migration_bandwidth_mb": 256, "fake.migration_dirty_rate_mb": 0,
        "libvirt.live_migration_monitor_interval": 0.05}
STUCK = dict(SLOW, **{"fake.migration_dirty_rate_mb": 2048})


@pytest.fixture
def make_cloud(cloud_factory, tmp_path):
    def make(**options):
        paths = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
        return cloud_factory(hosts=HOSTS, host_paths=paths, **options)
    return make


def timeline(c, sid, mid):
    return c.get(f"/servers/{sid}/migrations/{mid}/timeline")


def phases(entries):
    out = [e for e in entries if e["kind"] == "phase"]
    for before, after in zip(out, out[1:]):
        assert after["detail"]["from"] == before["name"], (before, after)
        assert after["at"] >= before["at"], (before, after)
    return [e["name"] for e in out]


def steps(entries):
    return [(e["name"], e["host"], e["detail"]["outcome"]) for e in entries
            if e["kind"] == "step"]


def test_a_live_migration_s_phases_steps_and_progress(make_cloud):
    cloud = make_cloud(**SLOW)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    m = c.wait_migration(sid)
    assert m["status"] == "completed"
    body = timeline(c, sid, m["id"])
    assert body["migration"]["id"] == m["id"] and body["migration"]["status"] == "completed"
    entries = body["timeline"]
    assert phases(entries) == ["accepted", "queued", "preparing", "running",
                               "post-migrating", "completed"]
    assert steps(entries)[:3] == [
        ("check_can_live_migrate_destination", "compute2", "ok"),
        ("pre_live_migration", "compute2", "ok"),
        ("live_migration_start", "compute1", "ok")]
    # Asked together (decision 33): either may be stamped first.
    assert sorted(steps(entries)[3:]) == [
        ("post_live_migration_at_destination", "compute2", "ok"),
        ("post_live_migration_at_source", "compute1", "ok")]
    assert all(e["duration_ms"] >= 0 for e in entries if e["kind"] == "step")
    # The step is written with the phase it led to, before it.
    names = [e["name"] for e in entries]
    assert names.index("pre_live_migration") < names.index("running")
    samples = [e for e in entries if e["kind"] == "progress"]
    assert samples and samples[0]["detail"]["memory_total"] > 0, samples


def test_the_two_post_steps_are_asked_together(make_cloud):
    """Decision 33: the source's and the destination's post steps do not depend
    on each other, so they run at the same time: each held 1.5 s here, the
    phase takes about 1.5 s, not 3."""
    cloud = make_cloud()
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    cloud.host("compute1").arm(fault("post_live_migration_at_source", "delay", 1.5))
    cloud.host("compute2").arm(fault("post_live_migration_at_destination", "delay", 1.5))
    c.live_migrate(sid, host="compute2")
    m = c.wait_migration(sid)
    assert m["status"] == "completed", m
    entries = timeline(c, sid, m["id"])["timeline"]

    def at(e):
        return datetime.fromisoformat(e["at"]).timestamp()
    spans = {e["name"]: (at(e), at(e) + e["duration_ms"] / 1000.0) for e in entries
             if e["kind"] == "step" and e["name"].startswith("post_live_migration")}
    src = spans["post_live_migration_at_source"]
    dst = spans["post_live_migration_at_destination"]
    assert src[1] - src[0] >= 1.5 and dst[1] - dst[0] >= 1.5, spans
    assert src[0] < dst[1] and dst[0] < src[1], spans     # they overlap
    entered = {e["name"]: at(e) for e in entries if e["kind"] == "phase"}
    assert entered["completed"] - entered["post-migrating"] < 3.0, entered


def test_an_abort_and_the_monitor_s_tuning(make_cloud):
    cloud = make_cloud(**STUCK)
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.live_migrate(sid, host="compute2")
    m = c.wait_status(sid, "running")
    # Wait for the monitor to have stepped the downtime at least once.
    wait_for("a tuning entry", lambda: [e for e in timeline(c, sid, m["id"])["timeline"]
                                        if e["kind"] == "tuning"], timeout=30)
    c.abort_migration(sid, m["id"])
    assert c.wait_migration(sid)["status"] == "cancelled"
    entries = timeline(c, sid, m["id"])["timeline"]
    assert phases(entries)[-3:] == ["running", "rolling-back", "cancelled"]
    intents = [e for e in entries if e["kind"] == "intent"]
    assert [(e["name"], e["detail"]["status"]) for e in intents] == [("abort", "running")]
    tuning = [e for e in entries if e["kind"] == "tuning"]
    assert tuning and all(e["detail"] for e in tuning), tuning
    assert ("rollback_live_migration_at_destination", "compute2", "ok") in steps(entries)


def test_a_cold_migration_confirmed_and_a_failed_step(make_cloud):
    cloud = make_cloud()
    c = cloud.client
    sid = c.create_server("vm", host="compute1")["id"]
    c.action(sid, "migrate", {"host": "compute2"})
    m = c.wait_migration(sid, until=SETTLED_COLD)
    c.action(sid, "confirmResize", None, 204)
    assert c.wait_migration(sid)["status"] == "confirmed"
    entries = timeline(c, sid, m["id"])["timeline"]
    assert phases(entries) == ["accepted", "pre-migrating", "migrating", "post-migrating",
                               "finished", "confirming", "confirmed"]
    assert [s[0] for s in steps(entries)] == ["prep_resize", "resize_instance",
                                              "finish_resize", "confirm_resize"]
    confirm = [e for e in entries if e["kind"] == "intent"]
    assert [e["name"] for e in confirm] == ["confirm"]

    # A step that fails: its error is in the timeline, and the phase it led to.
    cloud.host("compute1").arm("pre_live_migration:fail")
    c.live_migrate(sid, host="compute1")
    failed = c.wait_migration(sid)
    assert failed["status"] == "failed"
    entries = timeline(c, sid, failed["id"])["timeline"]
    pre = [s for s in steps(entries) if s[0] == "pre_live_migration"]
    assert pre and "Injected fault" in pre[0][2], pre
    assert phases(entries)[-1] == "failed"
    assert "Injected fault" in entries[-1]["detail"]["reason"]


def test_refusals(make_cloud):
    cloud = make_cloud()
    c = cloud.client
    a = c.create_server("a", host="compute1")["id"]
    b = c.create_server("b", host="compute1")["id"]
    c.live_migrate(a, host="compute2")
    m = c.wait_migration(a)
    with pytest.raises(APIError) as info:      # another server's migration
        timeline(c, b, m["id"])
    assert info.value.status == 404
    with pytest.raises(APIError) as info:
        timeline(c, a, "999999")
    assert info.value.status == 404
    # A member of the server's project (noauth2: any user but 'admin').
    member = Client(c.url, user="someone", project="admin")
    with pytest.raises(APIError) as info:
        timeline(member, a, m["id"])
    assert info.value.status == 403
