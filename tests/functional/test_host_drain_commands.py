"""``godwit host drain|drain-status|drain-cancel`` against an in-process cloud, run
as tests/functional/test_client_commands.py runs the CLI: what each printed,
its exit code, and what it changed."""

from godwit.testing import wait_for
from godwit.testkit.asserts import assert_only_on
from godwit.testkit.hosts import fault
from tests.functional.test_client_commands import godwit, unshared  # noqa: F401 - fixtures

FAST = {"fake.migration_bandwidth_mb": 1024, "libvirt.live_migration_monitor_interval": 0.05,
        "max_concurrent_live_migrations": 2, "host_drain_interval": 1}
SLOW = dict(FAST, **{"fake.migration_bandwidth_mb": 128})


def _boot(cloud, n):
    return [cloud.client.create_server(f"vm{i}", host="compute1")["id"] for i in range(n)]


def test_drain_wait_reports_and_exits_3_when_a_guest_stays(unshared, godwit):  # noqa: F811
    cloud = unshared(**FAST)
    stuck, *others = _boot(cloud, 3)
    cloud.host("compute1").arm(fault("live_migration_converge", "fail", instance=stuck))

    run = godwit(cloud, "host", "drain", "compute1", "--guest-timeout", "3", "--wait",
                 "-f", "json")

    assert run.code == 3, run
    rows = {r["Guest"]: r for r in run.json}
    assert [r["Guest"] for r in run.json] == [stuck, *others]
    assert rows[stuck]["State"] == "skipped" and "per-guest timeout (3 s)" in \
        rows[stuck]["Reason"], rows[stuck]
    # 512 MiB at 1024 MiB/s, idle: the fake host's estimate, predicted.
    assert [r["Predicted"] for r in run.json] == ["0.5s"] * 3, run.json
    for sid in others:
        assert rows[sid]["State"] == "moved" and rows[sid]["Migration"].isdigit()
        assert_only_on(cloud, sid, rows[sid]["Destination"])
    # Not a terminal: a line per change of the drain, then the outcome.
    lines = run.err.splitlines()
    drain_id = cloud.client.get("/os-host-drains")["host_drains"][0]["id"]
    label = f"drain {drain_id} of compute1"
    assert lines[0].startswith(f"{label}: running  3 pending"), run.err
    assert any("1 moved" in line for line in lines), run.err
    assert lines[-1].startswith(f"{label} finished after "), run.err
    assert lines[-1].endswith(": 2 moved, 1 skipped"), run.err
    assert all(line.startswith(label) for line in lines)

    # drain-status by host: the newest drain's report, and its status on stderr.
    run = godwit(cloud, "host", "drain-status", "compute1", "-f", "value",
                 "-c", "Name", "-c", "State")
    assert run.code == 0, run
    assert run.out.splitlines() == ["vm0 skipped", "vm1 moved", "vm2 moved"]
    assert run.err == (f"drain {drain_id} of compute1: finished (2 moved, 1 skipped; "
                       "fallback skip, guest timeout 3s); guests in order of predicted "
                       "duration\n"), run.err

    # A drain that ended cannot be cancelled; the host stays disabled meanwhile.
    run = godwit(cloud, "host", "drain-cancel", drain_id)
    assert run.code == 1 and run.err.startswith("ERROR (409): "), run
    run = godwit(cloud, "host", "drain", "compute1", "--guest-timeout", "3", "--wait",
                 "-f", "value", "-c", "State")
    assert (run.code, run.out) == (3, "skipped\n"), run   # the stuck guest again

    run = godwit(cloud, "host", "drain-status", "compute2")
    assert run.code == 1 and "host compute2 has never been drained" in run.err, run


def test_drain_wait_exits_0_when_every_guest_moved(unshared, godwit):  # noqa: F811
    cloud = unshared(**FAST)
    sids = _boot(cloud, 2)

    run = godwit(cloud, "host", "drain", "compute1", "--wait", "-f", "value", "-c", "State")

    assert (run.code, run.out) == (0, "moved\nmoved\n"), run
    for sid in sids:
        assert cloud.client.server(sid)["OS-EXT-SRV-ATTR:host"] != "compute1"


def test_drain_without_wait_then_cancel(unshared, godwit):  # noqa: F811
    cloud = unshared(**SLOW)
    sids = _boot(cloud, 3)

    run = godwit(cloud, "host", "drain", "compute1", "--on-cancel", "abort", "-f", "value",
                 "-c", "State")

    assert run.code == 0, run
    assert run.out == "pending\npending\npending\n"
    drain_id = cloud.client.get("/os-host-drains?host=compute1")["host_drains"][0]["id"]
    assert run.err == (f"drain {drain_id} of compute1 started: 3 guests; "
                       f"`godwit host drain-status {drain_id}` follows it\n")

    run = godwit(cloud, "host", "drain-cancel", drain_id)

    assert (run.code, run.out) == (0, ""), run
    def cancelled():
        run = godwit(cloud, "host", "drain-status", drain_id, "-f", "value", "-c", "State")
        assert run.code == 0, run
        return run if f"drain {drain_id} of compute1: cancelled (3 left;" in run.err else None
    run = wait_for("the cancel", cancelled, timeout=30, interval=0.1)
    assert run.out == "left\nleft\nleft\n"
    for sid in sids:
        assert_only_on(cloud, sid, "compute1")

    run = godwit(cloud, "host", "drain", "compute9")
    assert run.code == 1 and "Compute host compute9 could not be found" in run.err, run
    run = godwit(cloud, "host", "drain", "compute1", "--fallback", "migrate")
    assert run.code == 2, run
