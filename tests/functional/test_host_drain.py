"""Server-side host drains (conductor/drain.py, /os-host-drains): against fake hosts
with the real conductor, through the REST API. Each test checks the ground
truth too: where each guest runs (its domain on exactly one host), the
migration rows, the host's compute service."""

import pytest

from conductor import cmd as conductor_cmd
from godwit import rpc
from godwit.testing import APIError, Client, wait_for
from godwit.testkit.asserts import STATE_TABLES, assert_only_on, assert_unchanged
from godwit.testkit.hosts import fault

HOSTS = ("compute1", "compute2", "compute3")
# Tiny guests (512 MiB) move in about half a second; two at a time per source;
# the drains are looked at every second.
FAST = {"fake.migration_bandwidth_mb": 1024, "libvirt.live_migration_monitor_interval": 0.05,
        "max_concurrent_live_migrations": 2, "host_drain_interval": 1}
# Four seconds per tiny guest: long enough to cancel or crash in the middle.
SLOW = dict(FAST, **{"fake.migration_bandwidth_mb": 128})


@pytest.fixture
def make_cloud(cloud_factory, tmp_path):
    """Three hosts with instance directories of their own (block migration, and
    cold migration copying disks)."""
    def make(**options):
        paths = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
        return cloud_factory(hosts=HOSTS, host_paths=paths, **options)
    return make


def start_drain(c, host, **options):
    return c.post("/os-host-drains", {"host_drain": dict(host=host, **options)},
                  expect=202)["host_drain"]


def get_drain(c, drain_id):
    return c.get(f"/os-host-drains/{drain_id}")["host_drain"]


def wait_drain(c, drain_id, statuses=("finished", "cancelled"), timeout=60):
    return wait_for(f"drain {drain_id} in {statuses}", lambda: (
        lambda d: d if d["status"] in statuses else None)(get_drain(c, drain_id)),
        timeout, interval=0.1)


def wait_guests(c, drain_id, predicate, what, timeout=30):
    return wait_for(what, lambda: (lambda d: d if predicate(d["guests"]) else None)(
        get_drain(c, drain_id)), timeout, interval=0.05)


def boot(c, n, host="compute1", flavor="1"):
    return [c.create_server(f"vm{i}", flavor=flavor, host=host)["id"] for i in range(n)]


def compute_service(c, host):
    return next(s for s in c.services() if s["host"] == host)


def host_of(c, sid):
    return c.server(sid)["OS-EXT-SRV-ATTR:host"]


def migration(c, mid):
    return next(m for m in c.migrations() if m["id"] == mid)


def assert_moved(cloud, guest, kind, status, retried=False):
    """The guest left compute1 by exactly the drain's one move of ``kind`` (with
    ``retried``: its last, the ones before ended failed)."""
    c = cloud.client
    assert guest["state"] == "moved", guest
    assert guest["destination"] in ("compute2", "compute3"), guest
    if retried:
        assert all(migration(c, mid)["status"] == "failed"
                   for mid in guest["migrations"][:-1]), guest
    else:
        assert len(guest["migrations"]) == 1, guest
    m = migration(c, guest["migrations"][-1])
    assert (m["migration_type"], m["status"], m["dest_compute"]) == \
        (kind, status, guest["destination"]), m
    assert host_of(c, guest["instance_uuid"]) == guest["destination"]
    assert c.server(guest["instance_uuid"])["status"] == "ACTIVE"
    assert_only_on(cloud, guest["instance_uuid"], guest["destination"])


def test_six_guests_one_never_converges_the_drain_finishes_and_says_why(make_cloud):
    """The acceptance test of issue 13: six guests, one of which cannot be
    live-migrated (its memory is dirtied as fast as the network carries it),
    fallback skip, a per-guest timeout of 4 s."""
    cloud = make_cloud(**FAST)
    c = cloud.client
    sids = boot(c, 6)
    stuck = sids[0]   # first in the drain's order (all the same size): it holds a slot
    cloud.host("compute1").arm(fault("live_migration_converge", "fail", instance=stuck))

    d = start_drain(c, "compute1", fallback="skip", guest_timeout=4)

    assert d["status"] == "running"
    assert [g["instance_uuid"] for g in d["guests"]] == sids
    assert {g["state"] for g in d["guests"]} == {"pending"}
    svc = compute_service(c, "compute1")
    assert (svc["status"], svc["disabled_reason"]) == ("disabled", f"drain {d['id']}")
    # The stuck guest holds one of the two slots; the others go through the other.
    d = wait_drain(c, d["id"], timeout=90)

    assert d["status"] == "finished", d
    assert d["summary"] == {"moved": 5, "skipped": 1}, d["guests"]
    by_id = {g["instance_uuid"]: g for g in d["guests"]}
    skipped = by_id[stuck]
    assert skipped["state"] == "skipped"
    assert "did not finish within the drain's per-guest timeout (4 s)" in \
        skipped["reason"], skipped
    assert len(skipped["migrations"]) == 1 and skipped["destination"] is None
    assert migration(c, skipped["migrations"][0])["status"] == "cancelled"
    for sid in sids[1:]:
        assert_moved(cloud, by_id[sid], "live-migration", "completed")
    # Nothing is left on the drained host but the stuck guest, which still runs.
    assert set(cloud.host("compute1").domains()) == {stuck}
    assert_only_on(cloud, stuck, "compute1")
    assert c.server(stuck)["status"] == "ACTIVE"
    assert compute_service(c, "compute1")["status"] == "disabled"
    # The drain's moves say whose they are.
    mid = by_id[sids[1]]["migrations"][0]
    intents = [e for e in c.get(f"/servers/{sids[1]}/migrations/{mid}/timeline")["timeline"]
               if e["kind"] == "intent"]
    assert [(e["name"], e["detail"]["drain"]) for e in intents] == [("drain", d["id"])]


def test_fallback_cold_migrates_and_confirms_a_guest_live_migration_refuses(make_cloud):
    cloud = make_cloud(**FAST)
    c = cloud.client
    refused, live = boot(c, 2)
    # Every destination refuses the live migration's pre-check for this guest.
    for host in ("compute2", "compute3"):
        cloud.host(host).arm(fault("check_can_live_migrate_destination", "fail",
                                   instance=refused))

    d = wait_drain(c, start_drain(c, "compute1", fallback="cold")["id"])

    assert d["status"] == "finished", d
    by_id = {g["instance_uuid"]: g for g in d["guests"]}
    cold = by_id[refused]
    assert cold["kind"] == "cold", cold
    assert cold["reason"].startswith("live migration refused: "), cold
    assert "Injected fault" in cold["reason"], cold
    assert_moved(cloud, cold, "migration", "confirmed")
    assert_moved(cloud, by_id[live], "live-migration", "completed")
    assert cloud.host("compute1").domains() == {}


def test_cancel_with_abort_aborts_the_moves_under_way(make_cloud):
    cloud = make_cloud(**SLOW)
    c = cloud.client
    sids = boot(c, 4)
    d = start_drain(c, "compute1", on_cancel="abort")
    wait_guests(c, d["id"], lambda gs: [g["state"] for g in gs] ==
                ["moving", "moving", "pending", "pending"], "two guests moving")
    # (A guest is 'moving' from just before its live migration is asked for:
    # its migration row may not exist yet.)
    running = wait_for("both moves running", lambda: all(
        (c.latest_migration(s) or {}).get("status") == "running" for s in sids[:2]))
    assert running

    c.request("DELETE", f"/os-host-drains/{d['id']}", expect=202)

    d = wait_drain(c, d["id"])
    assert d["status"] == "cancelled" and d["cancel_requested_at"], d
    assert d["summary"] == {"left": 4}, d["guests"]
    for g in d["guests"][:2]:
        assert "the drain was cancelled; its live migration" in g["reason"], g
        assert g["destination"] is None, g      # it stayed
        assert migration(c, g["migrations"][0])["status"] == "cancelled"
    for g in d["guests"][2:]:
        assert g["reason"] == "the drain was cancelled before its turn" and \
            not g["migrations"], g
    for sid in sids:
        assert_only_on(cloud, sid, "compute1")
    # The operator enables the host again: a cancel does not.
    assert compute_service(c, "compute1")["status"] == "disabled"
    # A drain that ended cannot be cancelled again.
    with pytest.raises(APIError) as e:
        c.request("DELETE", f"/os-host-drains/{d['id']}")
    assert e.value.status == 409 and "already ended (cancelled)" in e.value.message


def test_cancel_with_finish_lets_the_moves_under_way_end(make_cloud):
    cloud = make_cloud(**SLOW)
    c = cloud.client
    sids = boot(c, 4)
    d = start_drain(c, "compute1", on_cancel="finish")
    wait_guests(c, d["id"], lambda gs: [g["state"] for g in gs] ==
                ["moving", "moving", "pending", "pending"], "two guests moving")

    c.request("DELETE", f"/os-host-drains/{d['id']}", expect=202)

    assert get_drain(c, d["id"])["status"] == "cancelling"
    d = wait_drain(c, d["id"])
    assert d["status"] == "cancelled", d
    assert [g["state"] for g in d["guests"]] == ["moved", "moved", "left", "left"]
    for g in d["guests"][:2]:
        assert_moved(cloud, g, "live-migration", "completed")
    for sid in sids[2:]:
        assert_only_on(cloud, sid, "compute1")
        assert c.migrations(instance_uuid=sid) == []


def _services(c):
    return sorted((s["host"], s["binary"], s["status"], s["disabled_reason"])
                  for s in c.services(binary=None))


def test_refusals_change_nothing(make_cloud):
    cloud = make_cloud(**SLOW)
    c = cloud.client
    stuck = boot(c, 1)[0]
    tables = STATE_TABLES + ("host_drains",)

    def refused(status, body, client=c, tables=tables):
        before = _services(c)
        with assert_unchanged(cloud, tables), pytest.raises(APIError) as e:
            client.post("/os-host-drains", body)
        assert e.value.status == status, e.value
        assert _services(c) == before
        return e.value.message

    message = refused(404, {"host_drain": {"host": "nowhere"}})
    assert "Compute host nowhere could not be found" in message
    conductor_host = c.services(binary="godwit-conductor")[0]["host"]
    if conductor_host not in HOSTS:
        message = refused(400, {"host_drain": {"host": conductor_host}})
        assert "has no compute service" in message
    message = refused(400, {"host_drain": {"host": "compute1", "fallback": "migrate"}})
    assert "fallback" in message and "'skip', 'cold', 'leave'" in message, message
    assert '"fallback": "skip|cold|leave"' in message   # says what to send
    message = refused(400, {"host_drain": {"host": "compute1", "guest_timeout": 0}})
    assert "guest_timeout" in message
    refused(400, {"host": "compute1"})
    alice = Client(cloud.api_url, user="alice", project="p1")
    message = refused(403, {"host_drain": {"host": "compute1"}}, client=alice)
    assert "os_compute_api:os-host-drains:create" in message
    for path in ("/os-host-drains", f"/os-host-drains/{stuck}"):
        with pytest.raises(APIError) as e:
            alice.get(path)
        assert e.value.status == 403

    # One drain per host: a second one while the first runs is refused.
    cloud.host("compute1").arm(fault("live_migration_converge", "fail", instance=stuck))
    # (fallback leave: every guest is tried, even one predicted never to
    # converge, so its move runs while the second drain is asked for.)
    first = start_drain(c, "compute1", fallback="leave", guest_timeout=600)
    mid = wait_guests(c, first["id"], lambda gs: gs[0]["migration_id"],
                      "the move")["guests"][0]["migration_id"]
    wait_for("the transfer", lambda: c.get(f"/servers/{stuck}/migrations/{mid}")[
        "migration"]["memory_processed_bytes"])
    # (The running move's progress and the drain's lease are written meanwhile:
    # what must not change is the hosts' records, the services and the drains.)
    message = refused(409, {"host_drain": {"host": "compute1"}}, tables=())
    assert f"already being drained (drain {first['id']}, running)" in message
    assert compute_service(c, "compute1")["disabled_reason"] == f"drain {first['id']}"
    assert [d["id"] for d in c.get("/os-host-drains?host=compute1")["host_drains"]] == \
        [first["id"]]
    c.request("DELETE", f"/os-host-drains/{first['id']}", expect=202)
    assert wait_drain(c, first["id"])["summary"] == {"left": 1}


def _crash_conductor(cloud):
    """The conductor vanishes as if SIGKILLed: it stops looking and answering,
    and hands nothing over (its leases stay until taken)."""
    old = cloud.local_cloud.conductor
    for task in old.periodic:
        task.stop()
    for server in old.rpcservers:
        server.stop()
    old.manager.drains.stopping.set()
    old.manager.engine.stopping.set()
    return old


def test_a_conductor_restart_mid_drain_the_drain_still_finishes(make_cloud):
    cloud = make_cloud(**SLOW)
    c = cloud.client
    sids = boot(c, 4)
    d = start_drain(c, "compute1")
    wait_guests(c, d["id"], lambda gs: gs[0]["state"] == "moved" and
                gs[2]["state"] == "moving", "one guest moved and another moving", 60)
    epoch_before = cloud.db.drain_get(d["id"])["epoch"]

    _crash_conductor(cloud)
    local = cloud.local_cloud
    new = conductor_cmd.build(local.conf, rpc.get_transport(local.conf, local.transport_url))
    new.start()
    local.conductor = new

    d = wait_drain(c, d["id"], timeout=90)
    assert d["status"] == "finished", d
    assert d["summary"] == {"moved": 4}, d["guests"]
    for g in d["guests"]:
        # A move whose checks the dying conductor was running ends failed
        # (interrupted) and the drain asks for the guest's move again.
        assert_moved(cloud, g, "live-migration", "completed", retried=True)
    # The new conductor took the drain back, fencing the old one's writes.
    assert cloud.db.drain_get(d["id"])["epoch"] > epoch_before
    assert set(sids) == {g["instance_uuid"] for g in d["guests"]}


def test_a_guest_deleted_before_its_turn_is_gone(make_cloud):
    cloud = make_cloud(**SLOW)
    c = cloud.client
    sids = boot(c, 3)
    d = start_drain(c, "compute1")
    wait_guests(c, d["id"], lambda gs: [g["state"] for g in gs] ==
                ["moving", "moving", "pending"], "two guests moving")

    c.delete_server(sids[2])

    d = wait_drain(c, d["id"])
    assert d["status"] == "finished", d
    assert d["summary"] == {"moved": 2, "gone": 1}, d["guests"]
    assert (d["guests"][2]["state"], d["guests"][2]["reason"], d["guests"][2]["migrations"]) \
        == ("gone", "deleted before its turn", [])
    assert cloud.host("compute1").domains() == {}
