"""The ``godwit`` client's commands against an in-process cloud.

Each test runs the CLI (api.client.shell.main, in this process) against the
cloud fixture's HTTP API and then checks the ground truth through
:class:`godwit.testing.Client`: what the command printed, its exit code, and
what it changed (or, for a refusal, that it changed nothing).
"""

import datetime
import io
import json
import logging
import threading

import pytest

from api.client import common, progress, shell
from godwit.testing import wait_for

HOSTS = ("compute1", "compute2", "compute3")
# A live migration that takes about two seconds for m1.tiny (512 MiB) ...
SLOW = {"fake.migration_bandwidth_mb": 256, "libvirt.live_migration_monitor_interval": 0.1}
# ... and one that never converges: the guest dirties memory faster than it goes.
STUCK = {"fake.migration_bandwidth_mb": 256, "fake.migration_dirty_rate_mb": 512,
         "libvirt.live_migration_monitor_interval": 0.1}


class Run:
    def __init__(self, code, out, err, usage):
        self.code, self.out, self.err = code, out, err
        self.usage = usage  # argparse writes usage errors to sys.stderr itself

    @property
    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"Run(code={self.code}, out={self.out!r}, err={self.err!r})"


class _OnlyThisThread(logging.Filter):
    """The cloud runs in this process too, and logs through the root logger:
    keep its threads' records out of the CLI's stderr."""

    def __init__(self):
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record):
        return record.thread == self.thread


@pytest.fixture
def godwit(capsys, monkeypatch):
    """``godwit(cloud, *argv)``: run the CLI against ``cloud``; a :class:`Run`."""
    for var in ("GODWIT_USER", "GODWIT_PROJECT", "GODWIT_COMPUTE_API_VERSION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(common, "POLL_INTERVAL", 0.05)
    configure_logging = shell.GodwitApp.configure_logging

    def cli_logging_only(app):
        configure_logging(app)
        for handler in logging.getLogger().handlers:
            if getattr(handler, "stream", None) is app.stderr:
                handler.addFilter(_OnlyThisThread())
    monkeypatch.setattr(shell.GodwitApp, "configure_logging", cli_logging_only)

    def run(cloud, *argv):
        capsys.readouterr()
        out, err = io.StringIO(), io.StringIO()
        try:
            code = shell.main(["--os-endpoint", cloud.api_url, *argv], stdout=out,
                              stderr=err)
        except SystemExit as exc:  # argparse's exit on a usage error
            code = exc.code
        return Run(code, out.getvalue(), err.getvalue(), capsys.readouterr().err)
    return run


@pytest.fixture
def unshared(cloud_factory, tmp_path):
    """Three hosts with instance directories of their own (moves copy disks)."""
    def make(**options):
        paths = {h: str(tmp_path / f"inst-{h}") for h in HOSTS}
        return cloud_factory(hosts=HOSTS, host_paths=paths, **options)
    return make


def _boot(cloud, host="compute1", flavor="1"):
    server = cloud.client.create_server("vm", flavor=flavor, host=host)
    assert server["status"] == "ACTIVE", server
    return server["id"]


def _where(cloud, sid):
    s = cloud.client.server(sid)
    return s["status"], s["OS-EXT-SRV-ATTR:host"], s["flavor"]["original_name"]


# -- cold migration, resize, confirm, revert ----------------------------------

def test_migrate_wait_then_resize_confirm(unshared, godwit):
    cloud = unshared()
    sid = _boot(cloud)

    run = godwit(cloud, "server", "migrate", sid, "--host", "compute2", "--wait", "-f", "json")

    assert run.code == 0, run
    migration = run.json
    assert (migration["status"], migration["source_compute"], migration["dest_compute"]) == \
        ("finished", "compute1", "compute2")
    assert _where(cloud, sid) == ("VERIFY_RESIZE", "compute2", "m1.tiny")
    # Not a terminal: a line per phase seen, then the outcome.
    lines = run.err.splitlines()
    assert lines[-1].startswith(f"migration {migration['id']} finished: compute1 -> compute2 "
                                "after "), run.err
    assert all(line.startswith(f"migration {migration['id']}: ") for line in lines[:-1])

    run = godwit(cloud, "server", "resize-confirm", sid, "--wait", "-f", "json")

    assert run.code == 0, run
    assert (run.json["id"], run.json["status"]) == (migration["id"], "confirmed")
    assert run.err.splitlines()[-1].startswith(
        f"migration {migration['id']} confirmed: compute1 -> compute2 after ")
    assert _where(cloud, sid) == ("ACTIVE", "compute2", "m1.tiny")


def test_resize_wait_then_revert(unshared, godwit):
    cloud = unshared()
    sid = _boot(cloud)

    run = godwit(cloud, "server", "resize", sid, "2", "--wait", "-f", "json")

    assert run.code == 0, run
    assert run.json["status"] == "finished"
    dest = run.json["dest_compute"]
    assert dest in ("compute2", "compute3")
    assert _where(cloud, sid) == ("VERIFY_RESIZE", dest, "m1.small")
    resize = cloud.client.latest_migration(sid)
    assert resize["migration_type"] == "resize"

    run = godwit(cloud, "server", "resize-revert", sid, "--wait", "-f", "json")

    assert run.code == 0, run
    assert (run.json["id"], run.json["status"]) == (resize["id"], "reverted")
    assert _where(cloud, sid) == ("ACTIVE", "compute1", "m1.tiny")


def test_migrate_without_wait_returns_at_once(unshared, godwit):
    cloud = unshared()
    sid = _boot(cloud)

    run = godwit(cloud, "server", "migrate", sid)

    assert (run.code, run.out, run.err) == (0, "", "")
    m = cloud.client.wait_migration(sid, until=("finished", "error", "failed"))
    assert m["status"] == "finished" and m["migration_type"] == "migration"


@pytest.mark.parametrize("command", ["resize-confirm", "resize-revert"])
def test_confirm_or_revert_refused_unless_verify_resize(unshared, godwit, command):
    cloud = unshared()
    sid = _boot(cloud)

    for extra in ((), ("--wait",)):
        run = godwit(cloud, "server", command, sid, *extra)

        assert run.code == 1, run
        assert run.out == ""
        (line,) = run.err.splitlines()
        assert line.startswith("ERROR (409): ") and \
            "Only a server in VERIFY_RESIZE can be confirmed or reverted" in line, line
    assert _where(cloud, sid) == ("ACTIVE", "compute1", "m1.tiny")
    assert cloud.client.migrations(instance_uuid=sid) == []


def test_resize_to_unknown_flavor_is_refused(unshared, godwit):
    cloud = unshared()
    sid = _boot(cloud)

    run = godwit(cloud, "server", "resize", sid, "nope", "--wait")

    assert run.code == 1, run
    assert run.err.startswith("ERROR (400): ") or run.err.startswith("ERROR (404): "), run
    assert len(run.err.splitlines()) == 1
    assert _where(cloud, sid) == ("ACTIVE", "compute1", "m1.tiny")
    assert cloud.client.migrations(instance_uuid=sid) == []


def test_usage_error_exits_2(unshared, godwit):
    cloud = unshared()

    run = godwit(cloud, "server", "resize", "some-server")  # no flavor

    assert run.code == 2
    assert "the following arguments are required: flavor" in run.usage


# -- power ---------------------------------------------------------------------

def test_stop_start_reboot(unshared, godwit):
    cloud = unshared()
    sid = _boot(cloud)

    run = godwit(cloud, "server", "stop", sid, "--wait", "-f", "json")
    assert run.code == 0, run
    assert (run.json["status"], run.json["OS-EXT-STS:power_state"]) == ("SHUTOFF", "Shutdown")

    # A soft reboot needs a running guest; the refusal says what would do.
    run = godwit(cloud, "server", "reboot", sid)
    assert run.code == 1, run
    assert run.err.startswith("ERROR (409): ") and "A soft reboot needs" in run.err, run
    assert cloud.client.server(sid)["status"] == "SHUTOFF"

    run = godwit(cloud, "server", "start", sid, "--wait", "-f", "value", "-c", "status")
    assert (run.code, run.out) == (0, "ACTIVE\n"), run

    run = godwit(cloud, "server", "start", sid)
    assert run.code == 1 and run.err.startswith("ERROR (409): "), run

    run = godwit(cloud, "server", "reboot", sid, "--hard", "--wait", "-f", "value",
                 "-c", "status")
    assert (run.code, run.out) == (0, "ACTIVE\n"), run
    actions = [a["action"] for a in cloud.client.get(
        f"/servers/{sid}/os-instance-actions")["instanceActions"]]
    assert actions[:3] == ["reboot", "start", "stop"]


# -- live migration: progress, abort, force-complete, failures ---------------------

def _percents(text):
    return [int(f.rstrip("%")) for f in text.split() if f.endswith("%")]


def test_live_migrate_wait_shows_progress_on_a_terminal(unshared, godwit, monkeypatch):
    cloud = unshared(**SLOW)
    sid = _boot(cloud)
    # What a terminal gets: the line rewritten with \r.
    monkeypatch.setattr(progress, "_isatty", lambda stream: True)

    run = godwit(cloud, "server", "live-migrate", sid, "--host", "compute2", "--wait",
                 "-f", "json")

    assert run.code == 0, run
    assert (run.json["status"], run.json["dest_compute"]) == ("completed", "compute2")
    # Every update on one line, each after a \r; then the outcome on a line of its own.
    rewritten, _, rest = run.err.partition("\n")
    updates = [u.removesuffix("\x1b[K") for u in rewritten.split("\r") if u]
    outcome = rest.splitlines()[0]
    mid = run.json["id"]
    assert outcome.startswith(f"live-migration {mid} completed: compute1 -> compute2 after ")
    assert all(u.startswith(f"live-migration {mid}: ") for u in updates)
    running = [u for u in updates if f"{mid}: running" in u]
    assert len(running) >= 3, updates
    percents = _percents(" ".join(running))
    assert percents == sorted(percents) and percents[-1] > percents[0], running
    assert any("MiB left" in u for u in running), running
    assert any("MiB/s" in u and "ETA " in u for u in running), running
    # Once it ended, no stale figures from the last sample.
    assert updates[-1].startswith(f"live-migration {mid}: completed  ") and \
        "%" not in updates[-1], updates[-1]
    # The dirty rate (none here) and the max downtime (the first of the
    # monitor's steps: 500 ms / 10), from the timeline's progress samples.
    assert any("dirty 0 B/s" in u and "max downtime 50 ms" in u for u in running), \
        running


def test_live_migrate_wait_without_terminal_prints_phases(unshared, godwit):
    cloud = unshared(**SLOW)
    sid = _boot(cloud)

    run = godwit(cloud, "server", "live-migrate", sid, "--wait")

    assert run.code == 0, run
    lines = run.err.splitlines()
    phases = [line.split(": ", 1)[1].split()[0] for line in lines[:-1]]
    assert "running" in phases and phases == sorted(set(phases), key=phases.index), lines
    assert "\r" not in run.err
    assert " completed: compute1 -> " in lines[-1]
    assert "| status         | completed" in run.out


def test_live_migrate_aborted_while_waiting_exits_3_with_the_reason(unshared, godwit):
    cloud = unshared(**STUCK)
    sid = _boot(cloud)
    c = cloud.client

    def abort_when_running():
        m = c.wait_status(sid, "running")
        c.request("DELETE", f"/servers/{sid}/migrations/{m['id']}", expect=202)
    aborter = threading.Thread(target=abort_when_running)
    aborter.start()

    run = godwit(cloud, "server", "live-migrate", sid, "--host", "compute2", "--wait",
                 "-f", "json")
    aborter.join()

    assert run.code == 3, run
    assert run.json["status"] == "cancelled"
    lines = run.err.splitlines()
    assert lines[-2].startswith(f"live-migration {run.json['id']} ended cancelled "
                                "(compute1 -> compute2): "), lines
    assert lines[-1] == f"server {sid} is ACTIVE on compute1"
    assert _where(cloud, sid) == ("ACTIVE", "compute1", "m1.tiny")


def test_live_migration_abort_command(unshared, godwit):
    cloud = unshared(**STUCK)
    sid = _boot(cloud)
    c = cloud.client
    c.live_migrate(sid, host="compute2")
    m = c.wait_status(sid, "running")

    run = godwit(cloud, "live-migration", "abort", sid, str(m["id"]))

    assert (run.code, run.out, run.err) == (0, "", ""), run
    assert c.wait_migration(sid)["status"] == "cancelled"
    assert _where(cloud, sid) == ("ACTIVE", "compute1", "m1.tiny")

    # Once it ended there is nothing to abort: a refusal that changes nothing.
    run = godwit(cloud, "live-migration", "abort", sid, str(m["id"]))
    assert run.code == 1, run
    assert run.err.startswith("ERROR (409): ") and "has a live migration to steer" in run.err, \
        run
    assert c.latest_migration(sid)["status"] == "cancelled"


def test_live_migration_force_complete_command(unshared, godwit):
    cloud = unshared(**STUCK)
    sid = _boot(cloud)
    c = cloud.client
    c.live_migrate(sid, host="compute2")
    m = c.wait_status(sid, "running")

    run = godwit(cloud, "live-migration", "force-complete", sid, m["uuid"])

    assert (run.code, run.out, run.err) == (0, "", ""), run
    assert c.wait_migration(sid)["status"] == "completed"
    assert _where(cloud, sid) == ("ACTIVE", "compute2", "m1.tiny")

    run = godwit(cloud, "live-migration", "force-complete", sid, m["uuid"])
    assert run.code == 1 and run.err.startswith("ERROR (4"), run


def test_live_migrate_wait_times_out_exits_4(unshared, godwit):
    cloud = unshared(**STUCK)
    sid = _boot(cloud)

    run = godwit(cloud, "server", "live-migrate", sid, "--wait", "--timeout", "1")

    assert run.code == 4, run
    last = run.err.splitlines()[-1]
    assert last.startswith("ERROR: timed out after 1s waiting for live-migration "), last
    assert f"it may still be under way: `godwit migration list --instance {sid}`" in last
    m = cloud.client.latest_migration(sid)
    assert m["status"] in ("queued", "preparing", "running")  # it does go on
    cloud.client.abort_migration(sid, m["id"])
    assert cloud.client.wait_migration(sid)["status"] == "cancelled"


def test_live_migrate_failing_step_exits_3_with_the_error(unshared, godwit):
    cloud = unshared(**{"fake.faults": ["pre_live_migration:fail"]})
    sid = _boot(cloud)

    run = godwit(cloud, "server", "live-migrate", sid, "--host", "compute2", "--wait",
                 "-f", "json")

    assert run.code == 3, run
    m = cloud.client.latest_migration(sid)
    assert run.json["status"] == m["status"] and m["status"] in ("failed", "error")
    assert m.get("error_message") and run.json["error_message"] == m["error_message"]
    assert f"ended {m['status']} (compute1 -> compute2): {m['error_message']}" in run.err
    assert f"server {sid} is " in run.err


# -- migration list ----------------------------------------------------------------

def test_migration_list_every_filter(unshared, godwit):
    cloud = unshared()
    c = cloud.client
    a, b = _boot(cloud), _boot(cloud, host="compute2")
    c.live_migrate(a, host="compute3")
    assert c.wait_migration(a)["status"] == "completed"
    c.action(b, "migrate", {"host": "compute1"})
    assert c.wait_migration(b, until=("finished",))["status"] == "finished"
    live, cold = c.latest_migration(a), c.latest_migration(b)

    def ids(*filters):
        run = godwit(cloud, "migration", "list", *filters, "-f", "json")
        assert run.code == 0, run
        return [row["Id"] for row in run.json]

    assert ids() == [cold["id"], live["id"]]
    assert ids("--type", "live-migration") == [live["id"]]
    assert ids("--type", "migration") == [cold["id"]]
    assert ids("--status", "finished") == [cold["id"]]
    assert ids("--instance", a) == [live["id"]]
    assert ids("--server", b) == [cold["id"]]
    assert ids("--host", "compute3") == [live["id"]]
    assert ids("--source-compute", "compute2") == [cold["id"]]
    assert ids("--user", "admin", "--project", "admin") == [cold["id"], live["id"]]
    assert ids("--user", "someone-else") == []
    assert ids("--limit", "1") == [cold["id"]]
    assert ids("--marker", cold["uuid"]) == [live["id"]]
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    assert ids("--changes-since", future.strftime("%Y-%m-%dT%H:%M:%SZ")) == []
    assert ids("--changes-since", "2000-01-01T00:00:00Z") == [cold["id"], live["id"]]
    assert ids("--changes-before", past.strftime("%Y-%m-%dT%H:%M:%SZ")) == []

    run = godwit(cloud, "migration", "list", "--long", "--instance", b, "-f", "json")
    (row,) = run.json
    assert set(row) >= {"Old Flavor", "New Flavor", "User", "Project", "Error"}
    assert (row["User"], row["Project"], row["Error"]) == ("admin", "admin", None)

    run = godwit(cloud, "migration", "list", "--marker", "no-such-uuid")
    assert run.code == 1 and run.err == "ERROR (400): Marker no-such-uuid could not be found.\n"
    run = godwit(cloud, "migration", "list", "--type", "teleport")
    assert run.code == 2


# -- services, hypervisors, events ----------------------------------------------------

def test_service_disable_and_enable(unshared, godwit):
    cloud = unshared()

    run = godwit(cloud, "service", "disable", "compute3", "--reason", "disk swap", "-f",
                 "json")

    assert run.code == 0, run
    assert (run.json["host"], run.json["status"], run.json["disabled_reason"]) == \
        ("compute3", "disabled", "disk swap")
    (svc,) = [s for s in cloud.client.services() if s["host"] == "compute3"]
    assert (svc["status"], svc["disabled_reason"]) == ("disabled", "disk swap")
    listed = godwit(cloud, "service", "list", "--host", "compute3", "-f", "json").json
    assert [(s["Status"], s["Disabled Reason"]) for s in listed] == [("disabled", "disk swap")]

    run = godwit(cloud, "service", "enable", "compute3", "-f", "json")

    assert run.code == 0, run
    assert (run.json["status"], run.json["disabled_reason"]) == ("enabled", None)
    (svc,) = [s for s in cloud.client.services() if s["host"] == "compute3"]
    assert (svc["status"], svc["disabled_reason"]) == ("enabled", None)


def test_service_disable_refusals(unshared, godwit):
    cloud = unshared()

    run = godwit(cloud, "service", "disable", "nohost")
    assert run.code == 1
    assert run.err == ("ERROR: no godwit-compute service on host nohost; 'godwit service "
                       "list' shows the services\n")

    conductor_host = next(s["host"] for s in cloud.client.services("godwit-conductor"))
    run = godwit(cloud, "service", "disable", conductor_host, "--binary", "godwit-conductor")
    assert run.code == 1 and run.err.startswith("ERROR (400): Updating a godwit-conductor"), run
    assert all(s["status"] == "enabled" for s in cloud.client.services())


def test_service_disable_before_2_53_uses_the_action_form(unshared, godwit):
    cloud = unshared()

    run = godwit(cloud, "--os-compute-api-version", "2.52", "service", "disable",
                 "compute2", "--reason", "old client", "-f", "json")

    assert run.code == 0, run
    assert run.json == {"binary": "godwit-compute", "host": "compute2", "status": "disabled",
                        "disabled_reason": "old client"}
    (svc,) = [s for s in cloud.client.services() if s["host"] == "compute2"]
    assert (svc["status"], svc["disabled_reason"]) == ("disabled", "old client")


def test_hypervisor_show_by_hostname_and_id(unshared, godwit):
    cloud = unshared()
    _boot(cloud, host="compute2")

    by_name = godwit(cloud, "hypervisor", "show", "compute2", "-f", "json")

    assert by_name.code == 0, by_name
    shown = by_name.json
    assert (shown["hypervisor_hostname"], shown["service_host"], shown["state"],
            shown["running_vms"], shown["memory_mb_used"]) == \
        ("compute2", "compute2", "up", 1, 512)
    by_id = godwit(cloud, "hypervisor", "show", shown["id"], "-f", "json")
    assert by_id.json == shown

    run = godwit(cloud, "hypervisor", "show", "compute9")
    assert run.code == 1
    assert run.err == ("ERROR: no hypervisor with id or hostname compute9; 'godwit "
                       "hypervisor list' shows them\n")


def test_server_event_show(unshared, godwit):
    cloud = unshared()
    sid = _boot(cloud)
    cloud.client.live_migrate(sid, host="compute2")
    assert cloud.client.wait_migration(sid)["status"] == "completed"
    actions = cloud.client.get(f"/servers/{sid}/os-instance-actions")["instanceActions"]
    request_id = next(a["request_id"] for a in actions if a["action"] == "live-migration")
    # Step events may land just after the final status (godwit.events.Deferred):
    # the two conductor steps' and the six hosts'.
    wait_for("the live migration's eight step events",
             lambda: len(cloud.client.events(sid)) >= 8)

    run = godwit(cloud, "server", "event", "show", sid, request_id, "-f", "json")

    assert run.code == 0, run
    shown = run.json
    assert (shown["request_id"], shown["action"], shown["instance_uuid"]) == \
        (request_id, "live-migration", sid)
    events = cloud.client.events(sid)
    assert shown["events"] == events and events
    assert {e["host"] for e in events} >= {"compute1", "compute2"}

    table = godwit(cloud, "server", "event", "show", sid, request_id)
    for e in events:
        assert f"{e['event']}: {e['result']} on {e['host']}" in table.out

    run = godwit(cloud, "server", "event", "show", sid, "req-nope")
    assert run.code == 1 and run.err.startswith("ERROR (404): Action req-nope not found"), run


def test_live_migration_set_speed_and_set_downtime_commands(unshared, godwit):
    # A guest dirtying 512 MiB/s over a 256 MiB/s network never converges on
    # its own; slowed down to 128 MiB/s even less.
    cloud = unshared(**dict(STUCK, **{"libvirt.live_migration_stall_timeout": 0}))
    sid = _boot(cloud)
    c = cloud.client
    c.live_migrate(sid, host="compute2")
    mid = str(c.wait_status(sid, "running")["id"])

    run = godwit(cloud, "live-migration", "set-speed", sid, mid, "128", "--wait")

    assert (run.code, run.out, run.err) == (0, "set-speed: applied on compute1\n", ""), run
    assert c.latest_migration(sid)["status"] == "running"

    # Refusals change nothing: a bad value (exit 1, the API says what to send),
    # not a number (usage, exit 2).
    run = godwit(cloud, "live-migration", "set-downtime", sid, mid, "0")
    assert run.code == 1, run
    assert run.err.startswith("ERROR (400): Invalid set-downtime: ms 0 is out of range; "
                              'send {"set-downtime": {"ms": <an integer from 1 to 60000>}}'), \
        run
    run = godwit(cloud, "live-migration", "set-downtime", sid, mid, "lots")
    assert run.code == 2 and "invalid int value: 'lots'" in run.usage, run
    timeline = c.get(f"/servers/{sid}/migrations/{mid}/timeline")["timeline"]
    assert [(e["name"], e["detail"]) for e in timeline if e["kind"] == "intent"] == [
        ("set-speed", {"bandwidth_mib": 128, "status": "running"})]

    # 4 s: what remains (512 MiB) at 128 MiB/s, so it converges.
    run = godwit(cloud, "live-migration", "set-downtime", sid, mid, "4500", "--wait")
    assert (run.code, run.out) == (0, "set-downtime: applied on compute1\n"), run
    assert c.wait_migration(sid)["status"] == "completed"

    run = godwit(cloud, "migration", "timeline", sid, mid, "-f", "json")
    assert run.code == 0, run
    rows = [(r["Kind"], r["What"], r["Host"], r["Detail"]) for r in run.json]
    assert ("intent", "set-downtime", "", "max_downtime_ms=4500, status=running") in rows, rows
    user = [r for r in rows if r[:2] == ("tuning", "user")]
    # What the source was given each time: the user's values so far.
    assert [(r[2], r[3]) for r in user] == [
        ("compute1", "bandwidth_mib=128, outcome=ok, seq=1"),
        ("compute1", "bandwidth_mib=128, max_downtime_ms=4500, outcome=ok, seq=2")], user
    assert any("downtime_steps=stopped: the user set the max downtime" in r[3]
               for r in rows if r[:2] == ("tuning", "monitor")), rows
