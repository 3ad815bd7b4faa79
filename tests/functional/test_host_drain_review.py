"""Host drains: the paths added after review (f86a3f1, 1f5bb68), each with a test
of its own that fails without them. Fake hosts, the real conductor and
agents, through the REST API."""

from oslo_policy import policy

from conductor import cmd as conductor_cmd
from conductor import drain as drain_mod
from godwit import rpc
from godwit.testing import wait_for
from godwit.testkit.asserts import assert_only_on
from godwit.testkit.hosts import fault
from tests.functional.test_host_drain import (  # noqa: F401 - the fixture
    FAST,
    _crash_conductor,
    assert_moved,
    boot,
    make_cloud,
    migration,
    start_drain,
    wait_drain,
    wait_guests,
)


def _drainer(cloud):
    return cloud.local_cloud.conductor.manager.drains


def test_a_cold_fallback_whose_confirm_is_refused_does_not_hold_the_drain(make_cloud):  # noqa: F811
    """The drain's cold migration finished, but its confirm is refused (here:
    the conductor's policy lets the drain's requester move servers but not
    confirm them). The drain used to ask again at every look for ever, holding
    a slot and its end; now, after five refusals, the guest is failed with
    the reason and the drain finishes. The operator decides."""
    cloud = make_cloud(**FAST)
    c = cloud.client
    refused, other = boot(c, 2)
    for host in ("compute2", "compute3"):
        cloud.host(host).arm(fault("check_can_live_migrate_destination", "fail",
                                   instance=refused))
    # The rules the conductor's drains are checked with (not the REST API's):
    # the defaults, and this one.
    enforcer = _drainer(cloud).api.policy.enforcer
    enforcer.load_rules()
    enforcer.set_rules(policy.Rules.from_dict(
        {"os_compute_api:servers:confirm_resize": "!"}), overwrite=False, use_conf=False)

    d = wait_drain(c, start_drain(c, "compute1", fallback="cold")["id"], timeout=60)

    assert d["status"] == "finished", d
    by_id = {g["instance_uuid"]: g for g in d["guests"]}
    g = by_id[refused]
    cold = migration(c, g["migration_id"])
    assert (cold["migration_type"], cold["status"]) == ("migration", "finished"), cold
    assert g["state"] == "failed", g
    assert g["destination"] == cold["dest_compute"], g
    assert g["reason"] == (
        f"cold migration {cold['id']} to {cold['dest_compute']} finished but could not be "
        "confirmed (Policy does not allow os_compute_api:servers:confirm_resize to be "
        "performed.); confirm or revert it yourself"), g
    assert_moved(cloud, by_id[other], "live-migration", "completed")
    # The operator can: the REST API's rules are their own.
    c.post(f"/servers/{refused}/action", {"confirmResize": None}, expect=204)
    wait_for("the confirm", lambda: migration(c, cold["id"])["status"] == "confirmed")
    assert_only_on(cloud, refused, cold["dest_compute"])


def test_a_cancel_during_a_guests_checks_stops_the_look_and_its_fallback(make_cloud):  # noqa: F811
    """A cancel recorded while the look asks for a guest's live migration (its
    destination checks take seconds, then refuse it): that look starts no
    other guest and no cold fallback for the refused one."""
    cloud = make_cloud(**FAST)
    c = cloud.client
    first, second, third = boot(c, 3)
    for host in ("compute2", "compute3"):
        cloud.host(host).arm(
            fault("check_can_live_migrate_destination", "delay", 2, instance=first),
            fault("check_can_live_migrate_destination", "fail", instance=first))

    d = start_drain(c, "compute1", fallback="cold")
    wait_guests(c, d["id"], lambda gs: gs[0]["state"] == "moving", "the first guest asked for")
    # The look is inside the first guest's checks (two destinations, 2 s each).
    c.request("DELETE", f"/os-host-drains/{d['id']}", expect=202)

    d = wait_drain(c, d["id"], timeout=60)
    assert d["status"] == "cancelled", d
    assert [g["instance_uuid"] for g in d["guests"]] == [first, second, third]
    g = d["guests"][0]
    assert g["state"] == "left", g
    assert g["reason"].startswith("live migration refused: "), g
    assert g["reason"].endswith("; no fallback: the drain was cancelled"), g
    # No cold migration was asked for it; nothing at all for the others.
    assert [m["migration_type"] for m in c.migrations(instance_uuid=first)] == \
        ["live-migration"]
    for g in d["guests"][1:]:
        assert (g["state"], g["reason"], g["migrations"]) == \
            ("left", "the drain was cancelled before its turn", []), g
        assert c.migrations(instance_uuid=g["instance_uuid"]) == []
    for sid in (first, second, third):
        assert_only_on(cloud, sid, "compute1")


class _RequestLost(BaseException):
    """The conductor's request died with it: nothing recorded, nothing answered
    (not an Exception: no handler of the drain's sees it)."""


def test_a_request_that_never_makes_a_move_is_asked_three_times_more_then_failed(
        make_cloud, monkeypatch):  # noqa: F811
    """A guest marked moving whose move never appears (its conductor died
    asking) is asked for again, three times, then failed with the reason:
    the drain ends instead of asking for ever."""
    monkeypatch.setattr(drain_mod, "_LOST_REQUEST_AFTER", 1)
    cloud = make_cloud(**FAST)
    c = cloud.client
    lost, other = boot(c, 2)
    api = _drainer(cloud).api
    real = api.live_migrate
    asked = []

    def live_migrate(ctxt, server_id, *args, **kwargs):
        if server_id == lost:
            asked.append(server_id)
            raise _RequestLost()
        return real(ctxt, server_id, *args, **kwargs)

    monkeypatch.setattr(api, "live_migrate", live_migrate)

    d = wait_drain(c, start_drain(c, "compute1", fallback="cold")["id"], timeout=60)

    assert d["status"] == "finished", d
    by_id = {g["instance_uuid"]: g for g in d["guests"]}
    g = by_id[lost]
    assert g["state"] == "failed", g
    assert g["reason"] == "4 requests to move it left no move; see the conductors' logs", g
    assert len(asked) == 4, asked
    assert g["migrations"] == [] and c.migrations(instance_uuid=lost) == []
    assert_only_on(cloud, lost, "compute1")
    assert_moved(cloud, by_id[other], "live-migration", "completed")


def test_a_request_lost_with_its_conductor_is_asked_again_by_the_next_one_within_seconds(
        make_cloud, monkeypatch):  # noqa: F811
    """The conductor dies asking for a guest's move (nothing recorded). The
    conductor that takes the drain over (a higher epoch) gives a request of
    the one before it 10 s to show its move, not the 60 s it gives its own,
    then asks again: the drain does not stand still for a minute."""
    cloud = make_cloud(**FAST)
    c = cloud.client
    sid = boot(c, 1)[0]

    def lost(*args, **kwargs):
        raise _RequestLost()

    monkeypatch.setattr(_drainer(cloud).api, "live_migrate", lost)
    d = start_drain(c, "compute1")
    wait_guests(c, d["id"], lambda gs: gs[0]["state"] == "moving", "the guest asked for")
    epoch = cloud.db.drain_get(d["id"])["epoch"]

    _crash_conductor(cloud)
    local = cloud.local_cloud
    new = conductor_cmd.build(local.conf, rpc.get_transport(local.conf, local.transport_url))
    new.start()
    local.conductor = new

    # 10 s of grace and a move of half a second; 60 s would time this out.
    d = wait_drain(c, d["id"], timeout=40)
    assert d["status"] == "finished", d
    assert_moved(cloud, d["guests"][0], "live-migration", "completed")
    assert cloud.db.drain_get(d["id"])["epoch"] > epoch
    assert len(c.migrations(instance_uuid=sid)) == 1
