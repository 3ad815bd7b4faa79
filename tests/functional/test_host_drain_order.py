"""Host drains: the order of the guests (the prediction, or memory without an
estimate), skip against leave, guests that arrive during a drain, and the cold
fallback's deadline. Fake hosts, the real conductor and agents, through the
REST API (docs/host-drain.md)."""

from conductor import prediction
from godwit.testkit.asserts import assert_only_on
from godwit.testkit.hosts import fault
from tests.functional.test_host_drain import (  # noqa: F401 - the fixture
    FAST,
    SLOW,
    assert_moved,
    boot,
    get_drain,
    make_cloud,
    migration,
    start_drain,
    wait_drain,
    wait_guests,
)

# 512 MiB/s: a tiny guest (512 MiB) idle moves in about a second, a small
# one (2048 MiB) in four. The allowed downtime reaches its maximum within a few
# seconds (the prediction assumes the maximum; the default steps take minutes).
MEASURED = dict(FAST, **{"fake.migration_bandwidth_mb": 512,
                         "libvirt.live_migration_downtime_delay": 3})
DOWNTIME_MS = 500   # [libvirt] live_migration_downtime's default


def ordered(c, drain_id):
    """The drain once its first look ordered it."""
    return wait_guests(c, drain_id, lambda gs: all(g.get("prediction") for g in gs),
                       "the drain's order")


def test_guests_move_in_order_of_predicted_duration(make_cloud):  # noqa: F811
    """Memory alone would move the three tiny guests first; the prediction
    puts the small idle guest before the tiny one that dirties its memory
    almost as fast as the network carries it, and the one that never
    converges last."""
    cloud = make_cloud(**MEASURED)
    c = cloud.client
    idle, busy, stuck = boot(c, 3)                       # 512 MiB each
    small = c.create_server("small", flavor="2", host="compute1")["id"]   # 2048 MiB
    src = cloud.host("compute1")
    src.set_dirty_rate(busy, 470)
    src.arm(fault("live_migration_converge", "fail", instance=stuck))

    d = start_drain(c, "compute1", fallback="leave", guest_timeout=15)

    # As created: memory, then disk, then age.
    assert [g["instance_uuid"] for g in d["guests"]] == [idle, busy, stuck, small]
    d = ordered(c, d["id"])
    assert d["ordered_by"] == "predicted duration", d
    assert [g["instance_uuid"] for g in d["guests"]] == [idle, small, busy, stuck], d["guests"]
    by_id = {g["instance_uuid"]: g for g in d["guests"]}
    for sid, memory, dirty in ((idle, 512, 0), (small, 2048, 0), (busy, 512, 470)):
        expected = prediction.predict(memory, 512, dirty, DOWNTIME_MS)["duration_s"]
        assert by_id[sid]["predicted_s"] == expected, by_id[sid]
        assert by_id[sid]["prediction"] == \
            f"about {expected:g} s ({memory} MiB at 512 MiB/s, dirtying {dirty} MiB/s)"
    assert by_id[stuck]["predicted_s"] is None
    assert by_id[stuck]["prediction"].startswith("never converges (512 MiB at 512 MiB/s, "
                                                 "dirtying 512 MiB/s"), by_id[stuck]

    d = wait_drain(c, d["id"], timeout=90)
    assert d["status"] == "finished", d
    by_id = {g["instance_uuid"]: g for g in d["guests"]}
    for sid in (idle, small, busy):
        assert_moved(cloud, by_id[sid], "live-migration", "completed")
    # Leave: tried like the others, aborted at the per-guest timeout, left.
    assert by_id[stuck]["state"] == "left", by_id[stuck]
    assert "per-guest timeout (15 s)" in by_id[stuck]["reason"], by_id[stuck]
    assert migration(c, by_id[stuck]["migrations"][0])["status"] == "cancelled"
    # The moves were asked for in the drain's order.
    started = [migration(c, g["migrations"][0]) for g in d["guests"]]
    assert [m["id"] for m in started] == sorted(m["id"] for m in started), started
    assert [m["created_at"] for m in started] == sorted(m["created_at"] for m in started)


def test_pinned_to_compute_rpc_2_0_the_order_is_by_memory(make_cloud):  # noqa: F811
    """No estimate (a conductor capped at compute RPC 2.0): the drain moves
    the guests in the order of their memory, and says why."""
    cloud = make_cloud(**dict(MEASURED, **{"upgrade_levels.compute": "2.0"}))
    c = cloud.client
    small = c.create_server("small", flavor="2", host="compute1")["id"]
    busy = boot(c, 1)[0]
    cloud.host("compute1").set_dirty_rate(busy, 470)   # slower than small, predicted

    d = ordered(c, start_drain(c, "compute1")["id"])

    assert d["ordered_by"] == "memory size", d
    assert [g["instance_uuid"] for g in d["guests"]] == [busy, small]
    for g in d["guests"]:
        assert g["predicted_s"] is None
        assert g["prediction"] == "no estimate: compute RPC is pinned below 2.1 " \
                                  "([upgrade_levels] compute)", g
    d = wait_drain(c, d["id"])
    assert d["summary"] == {"moved": 2}, d["guests"]
    first, second = (migration(c, g["migrations"][0]) for g in d["guests"])
    assert first["id"] < second["id"]


def test_skip_does_not_try_a_guest_predicted_never_to_converge(make_cloud):  # noqa: F811
    """Skip: a guest the prediction says cannot move live is not tried at all
    (no migration; reported skipped, with the prediction). Leave, above, tries
    it and reports it left with what happened."""
    cloud = make_cloud(**SLOW)        # 128 MiB/s: 512 MiB does not fit in 0.5 s
    c = cloud.client
    stuck, other = boot(c, 2)
    cloud.host("compute1").arm(fault("live_migration_converge", "fail", instance=stuck))

    d = wait_drain(c, start_drain(c, "compute1", fallback="skip", guest_timeout=600)["id"])

    assert d["status"] == "finished", d
    assert [g["instance_uuid"] for g in d["guests"]] == [other, stuck]
    skipped = d["guests"][1]
    assert skipped["state"] == "skipped", skipped
    assert skipped["reason"].startswith("not tried: its live migration is predicted never "
                                        "to converge (512 MiB at 128 MiB/s, dirtying 128"), \
        skipped
    assert skipped["migrations"] == [] and c.migrations(instance_uuid=stuck) == []
    assert_only_on(cloud, stuck, "compute1")
    assert_moved(cloud, d["guests"][0], "live-migration", "completed")


def test_skip_does_not_try_a_guest_predicted_to_outlast_the_guest_timeout(make_cloud):  # noqa: F811
    cloud = make_cloud(**SLOW)
    c = cloud.client
    small = c.create_server("small", flavor="2", host="compute1")["id"]  # 2048/128: 16 s
    tiny = boot(c, 1)[0]                                                  # 4 s

    d = wait_drain(c, start_drain(c, "compute1", fallback="skip", guest_timeout=10)["id"])

    by_id = {g["instance_uuid"]: g for g in d["guests"]}
    assert by_id[small]["state"] == "skipped", by_id[small]
    assert by_id[small]["reason"] == (
        "not tried: its live migration is predicted to take 16 s, longer than the "
        "drain's per-guest timeout (10 s)"), by_id[small]
    assert c.migrations(instance_uuid=small) == []
    assert_moved(cloud, by_id[tiny], "live-migration", "completed")


def test_a_guest_put_on_the_host_during_the_drain_is_drained_too(make_cloud):  # noqa: F811
    """The host is disabled, but a forced host still places a guest there: a
    running drain adds it to its report (``arrived``) and moves it."""
    cloud = make_cloud(**SLOW)
    c = cloud.client
    sids = boot(c, 2)
    d = start_drain(c, "compute1")
    wait_guests(c, d["id"], lambda gs: [g["state"] for g in gs] == ["moving", "moving"],
                "both guests moving")

    late = c.create_server("late", host="compute1")["id"]
    assert c.server(late)["OS-EXT-SRV-ATTR:host"] == "compute1"

    d = wait_drain(c, d["id"], timeout=90)
    assert d["status"] == "finished", d
    assert [g["instance_uuid"] for g in d["guests"]] == sids + [late]
    assert [g["arrived"] for g in d["guests"]] == [False, False, True]
    for g in d["guests"]:
        assert_moved(cloud, g, "live-migration", "completed")
    assert cloud.host("compute1").domains() == {}


def test_a_cold_fallback_that_does_not_finish_is_given_up_at_the_guest_timeout(make_cloud):  # noqa: F811
    """A cold migration cannot be aborted: past the per-guest timeout the drain
    stops waiting for it (the guest is failed, with the migration to follow)
    and ends, instead of hanging on it."""
    cloud = make_cloud(**FAST)
    c = cloud.client
    refused, other = boot(c, 2)
    for host in ("compute2", "compute3"):
        cloud.host(host).arm(fault("check_can_live_migrate_destination", "fail",
                                   instance=refused))
    # The source's first cold step hangs (until the cloud stops).
    cloud.host("compute1").arm(fault("migrate_disk_and_power_off", "hang",
                                     instance=refused))

    d = wait_drain(c, start_drain(c, "compute1", fallback="cold", guest_timeout=3)["id"],
                   timeout=30)

    assert d["status"] == "finished", d
    by_id = {g["instance_uuid"]: g for g in d["guests"]}
    g = by_id[refused]
    assert g["state"] == "failed", g
    cold = migration(c, g["migration_id"])
    assert cold["migration_type"] == "migration" and cold["status"] not in (
        "finished", "confirmed", "failed", "error", "reverted"), cold
    assert g["reason"].startswith("live migration refused: "), g
    assert f"then cold migration {cold['id']} did not finish within the drain's per-guest " \
           "timeout (3 s;" in g["reason"], g
    assert f"godwit migration show {cold['id']}" in g["reason"], g
    assert_moved(cloud, by_id[other], "live-migration", "completed")
    assert get_drain(c, d["id"])["status"] == "finished"
