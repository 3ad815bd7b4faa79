"""A host's journal of move steps (compute.journal): once, joined, fenced, durable."""

import threading
import time

import pytest

from compute import journal
from godwit import exception


class Counted:
    """A step body that counts its calls; optionally blocks until released or fails."""

    def __init__(self, result=None, block=False, fail=None):
        self.result = result
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.fail = fail

    def __call__(self):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(10), "the step was never released"
        if self.fail is not None:
            raise self.fail
        return self.result


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "journal" / "steps.sqlite")


@pytest.fixture
def opened():
    journals = []
    yield journals
    for j in journals:
        j.close()


@pytest.fixture
def jnl(path, opened):
    j = journal.Journal(path, "h1")
    opened.append(j)
    return j


def in_thread(fn, *args, **kwargs):
    """Run ``fn`` in a thread; returns (thread, outcome dict with 'result' or 'error')."""
    outcome = {}

    def run():
        try:
            outcome["result"] = fn(*args, **kwargs)
        except Exception as e:  # the outcome is what the test asserts on
            outcome["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, outcome


def test_a_step_runs_once_and_replays_its_first_outcome(jnl):
    fn = Counted({"migrate_data": {"path": "/x"}, "n": [1, 2]})
    assert jnl.run(1, "pre_live_migration", 1, fn) == fn.result
    fn.result = "something else"
    for _ in range(3):
        assert jnl.run(1, "pre_live_migration", 1, fn) == \
            {"migrate_data": {"path": "/x"}, "n": [1, 2]}
    assert fn.calls == 1
    entry = jnl.get(1, "pre_live_migration")
    assert (entry["state"], entry["runs"], entry["replays"], entry["epoch"]) == \
        ("done", 1, 3, 1)
    assert entry["finished_at"] >= entry["started_at"]
    # Another step, or the same step of another migration, is its own entry.
    assert jnl.run(1, "other", 1, Counted(5)) == 5
    assert jnl.run(2, "pre_live_migration", 1, Counted(6)) == 6


def test_a_step_that_returned_nothing_replays_nothing(jnl):
    fn = Counted(None)
    assert jnl.run("7", "cleanup", 1, fn) is None
    assert jnl.run(7, "cleanup", 1, fn) is None     # ids are compared as text
    assert fn.calls == 1


def test_a_second_caller_joins_the_step_in_flight(jnl):
    fn = Counted("prepared", block=True)
    first, first_out = in_thread(jnl.run, 1, "pre", 1, fn)
    assert fn.entered.wait(10)
    second, second_out = in_thread(jnl.run, 1, "pre", 1, fn)
    second.join(0.3)
    assert second.is_alive()        # waiting for the first run, not running it again
    assert jnl.get(1, "pre")["state"] == "started"
    fn.release.set()
    for t in (first, second):
        t.join(10)
        assert not t.is_alive()
    assert first_out == second_out == {"result": "prepared"}
    assert fn.calls == 1
    assert jnl.get(1, "pre")["runs"] == 1


def test_a_joiner_of_a_failing_step_gets_its_error(jnl):
    fn = Counted(block=True, fail=RuntimeError("disk full"))
    first, first_out = in_thread(jnl.run, 1, "pre", 1, fn)
    assert fn.entered.wait(10)
    second, second_out = in_thread(jnl.run, 1, "pre", 1, fn)
    second.join(0.5)                # let it reach the step and wait for it
    fn.release.set()
    for t in (first, second):
        t.join(10)
    assert str(first_out["error"]) == str(second_out["error"]) == "disk full"
    assert fn.calls == 1


def test_a_caller_that_waits_too_long_is_told_the_step_is_in_progress(jnl):
    fn = Counted("done", block=True)
    first, first_out = in_thread(jnl.run, 1, "pre", 1, fn)
    try:
        assert fn.entered.wait(10)
        start = time.monotonic()
        with pytest.raises(exception.StepInProgress) as info:
            jnl.run(1, "pre", 1, fn, wait=0.2)
        assert 0.2 <= time.monotonic() - start < 5
        assert info.value.kwargs == {"step": "pre", "migration_id": "1", "host": "h1"}
        assert fn.calls == 1
    finally:
        fn.release.set()
        first.join(10)
    assert first_out == {"result": "done"}
    # Asked again once it finished, the caller gets the outcome.
    assert jnl.run(1, "pre", 1, fn, wait=0.2) == "done"
    assert fn.calls == 1


def test_a_failed_step_raises_its_first_error_again(jnl):
    fn = Counted("ok", fail=exception.HypervisorError(host="h1", reason="busy"))
    with pytest.raises(exception.HypervisorError):
        jnl.run(1, "pre", 1, fn)
    entry = jnl.get(1, "pre")
    assert entry["state"] == "failed" and "busy" in entry["error"]
    fn.fail = None
    # Asked again (a conductor whose call timed out), the step is not run a
    # second time: the same error comes back, of the same class.
    with pytest.raises(exception.HypervisorError) as info:
        jnl.run(1, "pre", 1, fn)
    assert "busy" in str(info.value)
    assert fn.calls == 1
    entry = jnl.get(1, "pre")
    assert (entry["state"], entry["runs"], entry["replays"]) == ("failed", 1, 1)


def test_a_failure_of_a_foreign_class_comes_back_as_a_godwit_error(jnl):
    fn = Counted(fail=RuntimeError("disk full"))
    with pytest.raises(RuntimeError):
        jnl.run(1, "pre", 1, fn)
    with pytest.raises(exception.GodwitException) as info:
        jnl.run(1, "pre", 1, fn)
    assert "disk full" in str(info.value) and fn.calls == 1


def test_an_older_epoch_is_refused(jnl):
    fn = Counted("v2")
    assert jnl.run(1, "pre", 2, fn) == "v2"
    other = Counted("v1")
    # The done step, and a step not run yet, alike: epoch 2 has been seen.
    for step in ("pre", "post"):
        with pytest.raises(exception.StaleEpoch) as info:
            jnl.run(1, step, 1, other)
        assert (info.value.kwargs["epoch"], info.value.kwargs["current"]) == (1, 2)
    with pytest.raises(exception.StaleEpoch):
        jnl.begin(1, "live_migration", 1)
    with pytest.raises(exception.StaleEpoch):
        jnl.fence(1, "live_migration", 1)
    assert other.calls == 0
    assert jnl.get(1, "post") is None and jnl.get(1, "live_migration") is None
    # A newer epoch is accepted (and replays the done step), and raises the fence.
    assert jnl.run(1, "pre", 3, fn) == "v2" and fn.calls == 1
    with pytest.raises(exception.StaleEpoch):
        jnl.run(1, "post", 2, other)
    # Fences are per migration.
    assert jnl.run(2, "pre", 1, other) == "v1"


def test_steps_without_an_epoch_are_not_fenced(jnl):
    """Power actions (``power:<instance>``) carry no epoch."""
    fn = Counted("running")
    assert jnl.run("power:abc", "start:req-1", None, fn) == "running"
    assert jnl.run("power:abc", "start:req-1", None, fn) == "running"
    assert fn.calls == 1
    jnl.run(5, "pre", 4, Counted())
    assert jnl.run(5, "unfenced", None, Counted("x")) == "x"


def test_a_started_but_unfinished_step_runs_again(jnl):
    """An earlier process of the agent began the step and died: it is re-run."""
    jnl.begin(1, "pre", 1)
    assert jnl.get(1, "pre")["state"] == "started"
    fn = Counted("finished now")
    assert jnl.run(1, "pre", 1, fn) == "finished now"
    assert fn.calls == 1
    entry = jnl.get(1, "pre")
    assert (entry["state"], entry["runs"]) == ("done", 2)


def test_a_recorded_outcome_is_replayed(jnl):
    jnl.begin(1, "live_migration", 1)
    jnl.record(1, "live_migration", 1, {"ok": True, "guest": "destination"})
    fn = Counted("never")
    assert jnl.run(1, "live_migration", 1, fn) == {"ok": True, "guest": "destination"}
    assert fn.calls == 0


def test_the_journal_survives_reopening(path, jnl, opened):
    fn = Counted({"disk": "copied"})
    jnl.run(1, "copy", 2, fn)
    jnl.begin(1, "half_done", 2)
    jnl.close()

    again = journal.Journal(path, "h1")
    opened.append(again)
    assert again.run(1, "copy", 2, fn) == {"disk": "copied"}
    assert fn.calls == 1
    with pytest.raises(exception.StaleEpoch):      # the fence survived too
        again.run(1, "copy", 1, fn)
    redo = Counted("redone")
    assert again.run(1, "half_done", 2, redo) == "redone" and redo.calls == 1
    entries = {e["step"]: e for e in journal.read(path)}
    assert set(entries) == {"copy", "half_done"}
    assert entries["copy"]["replays"] == 1 and entries["half_done"]["runs"] == 2
    assert [e["step"] for e in again.steps(1)] == [e["step"] for e in again.steps()]
    assert again.steps(2) == []


def test_steps_of_one_migration_run_one_at_a_time(jnl):
    slow = Counted("prepared", block=True)
    first, _ = in_thread(jnl.run, 1, "pre", 1, slow)
    assert slow.entered.wait(10)
    same = Counted("rolled back")
    second, second_out = in_thread(jnl.run, 1, "rollback", 1, same)
    other = Counted("elsewhere")
    assert jnl.run(2, "pre", 1, other) == "elsewhere"   # another migration is not held up
    assert not same.entered.wait(0.3)                    # the rollback waits for 'pre'
    slow.release.set()
    first.join(10)
    second.join(10)
    assert second_out == {"result": "rolled back"}


def test_prune_forgets_only_steps_finished_long_ago(jnl):
    jnl.run(1, "old", 1, Counted(1))
    jnl.begin(1, "unfinished", 1)
    time.sleep(0.05)
    jnl.prune(older_than=3600)
    assert {e["step"] for e in jnl.steps(1)} == {"old", "unfinished"}
    jnl.prune(older_than=0.01)
    assert {e["step"] for e in jnl.steps(1)} == {"unfinished"}
