"""The durable side of a move (godwit.db.moves): leases, fencing, intents, step data.

Every test runs on SQLite, PostgreSQL and MariaDB (``any_db``).
"""

import datetime
import functools
import json
import time
import types

import pytest

from godwit import exception, phases, states
from godwit.db import moves
from godwit.timeutils import utcnow
from tests.unit.test_db_api import (  # noqa: F401 (the fixtures any_db uses)
    RACE_ROUNDS,
    _advance,
    _flavor,
    _instance,
    _migration,
    _run_together,
    _Statements,
    any_db,
    mariadb_url,
    sqlite_url,
)

MINUTE = datetime.timedelta(minutes=1)


@pytest.fixture
def db(any_db):  # noqa: F811 (the imported fixture)
    return any_db


@pytest.fixture
def inst(db):
    return _instance(db, _flavor(db), host="h1", task_state=states.MIGRATING)


def _get(db, mig):
    return db.migration_get(mig["id"])


# --------------------------------------------------------------------- clock
def test_clock_is_naive_utc_close_to_ours(db):
    now = db.clock()
    assert isinstance(now, datetime.datetime) and now.tzinfo is None
    assert abs(now - utcnow()) < datetime.timedelta(seconds=5)
    assert db.clock() >= now


# ------------------------------------------------------------ leases, fencing
def test_taking_an_unowned_move_raises_its_epoch(db, inst):
    mig = _migration(db, inst)
    assert (mig["owner"], mig["lease_until"], mig["epoch"]) == (None, None, 0)
    before = db.clock()
    taken = db.migration_take(mig["id"], "c1", 60)
    assert (taken["owner"], taken["epoch"]) == ("c1", 1)
    assert before + 50 * datetime.timedelta(seconds=1) < taken["lease_until"] \
        <= db.clock() + MINUTE
    assert _get(db, mig) == taken


def test_a_running_lease_keeps_others_out_and_an_expired_one_does_not(db, inst):
    mig = _migration(db, inst)
    held = db.migration_take(mig["id"], "c1", 60)
    assert db.migration_take(mig["id"], "c2", 60) is None
    assert _get(db, mig) == held

    # A lease that ran out (on the database's clock): another conductor takes over.
    short = db.migration_take(_migration(db, inst)["id"], "c1", 0.3)
    assert db.migration_take(short["id"], "c2", 60) is None
    time.sleep(0.5)
    taken = db.migration_take(short["id"], "c2", 60)
    assert (taken["owner"], taken["epoch"]) == ("c2", short["epoch"] + 1)


def test_a_lease_that_ended_in_the_past_is_free(db, inst):
    mig = _migration(db, inst, owner="c1", epoch=4, lease_until=db.clock() - MINUTE)
    taken = db.migration_take(mig["id"], "c2", 60)
    assert (taken["owner"], taken["epoch"]) == ("c2", 5)


def test_the_old_owner_is_fenced_off_after_a_takeover(db, inst):
    mig = _migration(db, inst, owner="c1", epoch=1, lease_until=db.clock() - MINUTE,
                     step_data=json.dumps({"from": "c1"}))
    old = db.migration_get(mig["id"])        # what the paused c1 still holds
    new = db.migration_take(mig["id"], "c2", 60)
    assert new["epoch"] == 2

    with pytest.raises(exception.MigrationFenced) as info:
        db.migration_advance(old, "checked", values={"error_message": "c1 was here"},
                             data={"from": "c1 again"},
                             instance_values={"task_state": None})
    assert (info.value.kwargs["epoch"], info.value.kwargs["found"]) == (1, 2)
    with pytest.raises(exception.MigrationFenced):
        db.migration_save_data(old, {"from": "c1 again"})
    db.migration_release(old, "c1")          # not c1's to release any more
    assert _get(db, mig) == new
    assert db.instance_get(inst["uuid"])["task_state"] == states.MIGRATING

    # The new owner moves on with the same calls.
    saved = db.migration_save_data(new, {"from": "c2"}, values={"error_message": "note"})
    assert (moves.step_data(saved), saved["error_message"]) == ({"from": "c2"}, "note")
    assert db.migration_advance(saved, "checked")["status"] == states.QUEUED


def test_a_conductor_taking_back_its_own_move_raises_the_epoch(db, inst):
    """Restarted under the same name: its old process may still be writing."""
    first = db.migration_take(_migration(db, inst)["id"], "c1", 60)
    again = db.migration_take(first["id"], "c1", 60)
    assert (again["owner"], again["epoch"]) == ("c1", first["epoch"] + 1)
    with pytest.raises(exception.MigrationFenced):
        db.migration_advance(first, "checked")


def test_force_takes_a_move_whose_lease_still_runs(db, inst):
    held = db.migration_take(_migration(db, inst)["id"], "c1", 600)
    assert db.migration_take(held["id"], "c2", 60) is None
    forced = db.migration_take(held["id"], "c2", 60, force=True)
    assert (forced["owner"], forced["epoch"]) == ("c2", held["epoch"] + 1)
    assert db.migration_take(12345, "c2", 60) is None


def test_racing_takers_exactly_one_wins(db, inst):
    for _ in range(RACE_ROUNDS):
        mig = _migration(db, inst)
        outcomes = _run_together(functools.partial(db.migration_take, mig["id"], "c1", 60),
                                 functools.partial(db.migration_take, mig["id"], "c2", 60))
        won = [o for o in outcomes if o is not None]
        assert len(won) == 1 and isinstance(won[0], dict), outcomes
        assert _get(db, mig)["owner"] == won[0]["owner"] and won[0]["epoch"] == 1


def test_an_unfenced_advance_is_a_users_intent(db, inst):
    """Confirm from 'finished' is the user's, not the owner's: no epoch needed,
    but the status is still compared."""
    mig = _advance(db, _migration(db, inst, mtype=states.RESIZE),
                   "prepped", "copy", "copied", "finished")
    assert mig["status"] == states.FINISHED
    seen_by_api = db.migration_get(mig["id"])
    db.migration_take(mig["id"], "c2", 60)   # a conductor took it meanwhile

    with pytest.raises(exception.MigrationFenced):
        db.migration_advance(seen_by_api, "confirm")
    row = db.migration_advance(seen_by_api, "confirm", fenced=False)
    assert (row["status"], row["owner"], row["epoch"]) == (states.CONFIRMING, "c2", 1)
    with pytest.raises(exception.ConcurrentUpdate) as info:   # a second confirm, or a revert
        db.migration_advance(seen_by_api, "revert", fenced=False)
    assert not isinstance(info.value, exception.MigrationFenced)
    assert info.value.kwargs["found"] == states.CONFIRMING
    assert _get(db, mig)["status"] == states.CONFIRMING


def test_renew_leases_returns_only_live_leases(db, inst):
    live = db.migration_take(_migration(db, inst)["id"], "c1", 30)
    lapsed = _migration(db, inst, owner="c1", epoch=1, lease_until=db.clock() - MINUTE)
    others = db.migration_take(_migration(db, inst)["id"], "c2", 30)

    assert db.migration_renew_leases("c1", 600) == [live["id"]]
    assert _get(db, live)["lease_until"] > live["lease_until"] + 5 * MINUTE
    assert _get(db, lapsed)["lease_until"] == lapsed["lease_until"]   # not revived
    assert _get(db, others)["lease_until"] == others["lease_until"]
    assert db.migration_take(lapsed["id"], "c2", 60) is not None
    assert db.migration_renew_leases("c3", 600) == []


def test_release_and_the_lists_of_moves_to_take(db, inst):
    free = _migration(db, inst)
    lapsed = _migration(db, inst, owner="c2", epoch=1, lease_until=db.clock() - MINUTE)
    held = db.migration_take(_migration(db, inst)["id"], "c2", 600)
    done = _advance(db, _migration(db, inst), "refused")
    assert done["status"] == states.ERROR_MIGRATION
    outgoing = _migration(db, _instance(db, _flavor(db, "f2"), host="h3"), dest="h4")

    ids = [m["id"] for m in db.migrations_to_take("c1")]
    assert free["id"] in ids and lapsed["id"] in ids and outgoing["id"] in ids
    assert held["id"] not in ids and done["id"] not in ids
    assert [m["id"] for m in db.migrations_owned("c2")] == [lapsed["id"], held["id"]]
    assert [m["id"] for m in db.migrations_of_host("h4")] == [outgoing["id"]]
    assert done["id"] not in [m["id"] for m in db.migrations_of_host("h1")]

    db.migration_release(dict(held, epoch=held["epoch"] - 1), "c2")   # stale: no effect
    assert _get(db, held)["owner"] == "c2"
    db.migration_release(held, "c2")
    assert (_get(db, held)["owner"], _get(db, held)["lease_until"]) == (None, None)
    assert held["id"] in [m["id"] for m in db.migrations_to_take("c1")]
    assert db.migrations_release_all("c2") == 1                      # the lapsed one
    assert db.migrations_owned("c2") == []


# ------------------------------------------------------------------- intents
def test_an_intent_is_recorded_once(db, inst):
    mig = _advance(db, _migration(db, inst), "checked", "slot", "prepared")
    first = db.migration_request(mig["id"], "abort", {states.RUNNING_MIGRATION})
    assert first["abort_requested_at"] is not None
    assert first["force_complete_requested_at"] is None
    time.sleep(0.05)
    again = db.migration_request(mig["id"], "abort", {states.RUNNING_MIGRATION})
    assert again["abort_requested_at"] == first["abort_requested_at"]
    forced = db.migration_request(mig["id"], "force_complete",
                                  {states.PREPARING, states.RUNNING_MIGRATION})
    assert forced["force_complete_requested_at"] is not None
    assert forced["abort_requested_at"] == first["abort_requested_at"]
    # The intent is no write of the owner's: its epoch and status are untouched.
    assert (forced["status"], forced["epoch"]) == (mig["status"], mig["epoch"])


def test_an_intent_for_a_status_not_allowed_is_refused(db, inst):
    mig = _advance(db, _migration(db, inst), "checked", "slot")
    with pytest.raises(exception.ConcurrentUpdate) as info:
        db.migration_request(mig["id"], "abort", {states.RUNNING_MIGRATION})
    assert info.value.kwargs["found"] == states.PREPARING
    assert _get(db, mig)["abort_requested_at"] is None
    with pytest.raises(exception.MigrationNotFound):
        db.migration_request(12345, "abort", {states.RUNNING_MIGRATION})
    with pytest.raises(KeyError):
        db.migration_request(mig["id"], "delete", {states.PREPARING})


# ---------------------------------------------------- unresolved and resumed
def _unresolved(db, inst, hosts=("h2",)):
    mig = _advance(db, _migration(db, inst), "checked", "slot", "prepared")
    row = db.migration_advance(mig, phases.UNRESOLVED,
                               values={"awaiting_hosts": json.dumps(list(hosts))},
                               data={"unresolved_phase": states.RUNNING_MIGRATION})
    assert row["status"] == states.ERROR_MIGRATION
    return row


def test_an_unresolved_error_resumes_only_while_it_awaits_hosts(db, inst):
    row = _unresolved(db, inst)
    assert moves.awaiting(row) == ["h2"]
    assert [m["id"] for m in db.migrations_awaiting("h2")] == [row["id"]]
    assert db.migrations_awaiting("h3") == []

    resumed = db.migration_advance(row, "resume:running", values={"awaiting_hosts": None})
    assert resumed["status"] == states.RUNNING_MIGRATION
    assert db.migrations_awaiting() == []

    # An error that awaits nobody is final: no resume.
    settled = db.migration_advance(_advance(db, resumed, "switched"), "fail")
    assert (settled["status"], settled["awaiting_hosts"]) == (states.ERROR_MIGRATION, None)
    with pytest.raises(exception.ConcurrentUpdate):
        db.migration_advance(settled, "resume:post-migrating")
    assert _get(db, settled) == settled


def test_only_a_phase_that_can_be_unresolved_is_resumed(db, inst):
    row = _unresolved(db, inst)
    for phase in (states.PREPARING, states.QUEUED, states.COMPLETED, "nowhere"):
        with pytest.raises(exception.InvalidMigrationTransition):
            db.migration_advance(row, phases.RESUME + phase)
    assert _get(db, row) == row


def test_a_normal_end_from_an_awaited_error_clears_awaiting_hosts(db, inst):
    row = _unresolved(db, inst, hosts=("h1", "h2"))
    resumed = db.migration_advance(row, "resume:running")   # the caller kept it set
    assert resumed["awaiting_hosts"] is not None
    failed = _advance(db, resumed, "fail", "rolled_back")
    assert (failed["status"], failed["awaiting_hosts"]) == (states.FAILED, None)


# ----------------------------------------------------------------- step data
def test_merge_data_merges_while_the_status_holds(db, inst):
    mig = _advance(db, _migration(db, inst), "checked", "slot")
    mig = db.migration_advance(mig, "prepared", data={"migrate_data": {"a": 1}})
    db.migration_merge_data(mig["id"], states.RUNNING_MIGRATION, {"tuning": {"step": 1}})
    db.migration_merge_data(mig["id"], states.RUNNING_MIGRATION, {"tuning": {"step": 2},
                                                                 "job": "seen"})
    assert moves.step_data(_get(db, mig)) == {"migrate_data": {"a": 1},
                                              "tuning": {"step": 2}, "job": "seen"}
    # Whoever owns it: the merge is no owner's write and needs no epoch.
    assert _get(db, mig)["epoch"] == mig["epoch"]


def test_merge_data_refuses_another_status(db, inst):
    mig = _advance(db, _migration(db, inst), "checked", data={"x": 1})
    with pytest.raises(exception.ConcurrentUpdate) as info:
        db.migration_merge_data(mig["id"], states.RUNNING_MIGRATION, {"tuning": {}})
    assert info.value.kwargs["found"] == states.QUEUED
    assert moves.step_data(_get(db, mig)) == {"x": 1}
    with pytest.raises(exception.MigrationNotFound):
        db.migration_merge_data(12345, states.RUNNING_MIGRATION, {"tuning": {}})


def test_merge_data_into_no_data_and_concurrent_merges_all_land(db, inst):
    mig = _advance(db, _migration(db, inst), "checked", "slot", "prepared")
    assert mig["step_data"] is None
    for round_ in range(RACE_ROUNDS // 4):
        _run_together(*(functools.partial(db.migration_merge_data, mig["id"],
                                          states.RUNNING_MIGRATION, {f"k{round_}.{i}": i})
                        for i in range(2)))
    data = moves.step_data(_get(db, mig))
    assert data == {f"k{r}.{i}": i for r in range(RACE_ROUNDS // 4) for i in range(2)}


def test_migrations_with_cleanup_match_the_host_exactly(db, inst):
    both = _migration(db, inst, cleanup_hosts=json.dumps(["h1", "h2"]))
    _migration(db, inst, cleanup_hosts=json.dumps(["h10"]))
    _migration(db, inst)
    assert [m["id"] for m in db.migrations_with_cleanup("h1")] == [both["id"]]
    assert [m["id"] for m in db.migrations_with_cleanup("h2")] == [both["id"]]
    assert db.migrations_with_cleanup("h") == []


# ------------------------------------------------------------------ deadlines
def test_each_phase_gets_its_deadline_and_a_final_phase_none(db, inst):
    db.deadlines = types.SimpleNamespace(live_migration_queued_timeout=60,
                                         live_migration_preparing_timeout=600)
    before = utcnow()
    queued = db.migration_advance(_migration(db, inst), "checked")
    assert before + MINUTE <= queued["deadline_at"] <= utcnow() + MINUTE
    preparing = db.migration_advance(queued, "slot")
    assert preparing["deadline_at"] >= before + 10 * MINUTE
    cancelled = db.migration_advance(_advance(db, _migration(db, inst), "checked"), "abort")
    assert cancelled["status"] == states.CANCELLED and cancelled["deadline_at"] is None


# --------------------------------------------------------------------- ledger
def _held(db, mig):
    return {(e["host"], e["kind"]): e["state"] for e in db.ledger(migration_id=mig["id"])}


def test_each_phase_writes_what_the_move_holds_in_the_same_advance(db, inst):
    mig = _advance(db, _migration(db, inst), "checked", "slot")
    assert _held(db, mig) == {("h2", "claim"): "present",
                              **{("h2", k): "planned"
                                 for k in ("instance_dir", "volumes", "vifs", "filter")}}
    mig = db.migration_advance(mig, "prepared")
    assert _held(db, mig) == {("h2", "claim"): "present",
                              **{("h2", k): "present"
                                 for k in ("instance_dir", "volumes", "vifs", "filter")},
                              ("h2", "domain"): "planned"}
    mig = db.migration_advance(mig, "switched")
    assert _held(db, mig)[("h2", "domain")] == "present"
    db.migration_advance(mig, "done")
    assert set(_held(db, mig).values()) == {"released"}


def test_an_error_keeps_what_its_move_left_but_releases_its_claim(db, inst):
    mig = _migration(db, inst)
    db.ledger_record(mig, [("h2", "claim", "present")])
    mig = _advance(db, mig, "checked", "slot", "prepared", "fail")
    assert mig["status"] == states.ROLLING_BACK
    db.migration_advance(mig, "fail")
    held = _held(db, mig)
    assert held.pop(("h2", "claim")) == "released"
    assert set(held.values()) == {"present", "planned"}, held


def test_an_unresolved_error_keeps_its_claim_and_a_resumed_one_only_on_its_destination(
        db, inst):
    mig = _advance(db, _migration(db, inst), "checked", "slot", "prepared")
    db.migration_update(mig["id"], {"dest_compute": "h3"})
    mig = db.migration_advance(db.migration_get(mig["id"]), "unresolved",
                               values={"awaiting_hosts": json.dumps(["h3"])})
    # It resumes when h3 returns, so h3's room stays held (claims.usage_on), and
    # what the move left is kept, as with any error.
    held = _held(db, mig)
    assert (held[("h3", "claim")], held[("h2", "vifs")]) == ("present", "present")
    db.migration_advance(mig, "resume:running")
    held = _held(db, mig)
    assert (held[("h2", "claim")], held[("h3", "claim")]) == ("released", "present")


def test_a_phase_change_writes_the_ledger_without_reading_it(db, inst):
    """One upsert per phase change, no SELECT of move_resources first; a row
    whose state stays keeps its updated_at."""
    mig = _advance(db, _migration(db, inst), "checked", "slot")
    before = {(e["host"], e["kind"]): e for e in db.ledger(migration_id=mig["id"])}
    with _Statements(db) as statements:
        mig = db.migration_advance(mig, "prepared")
    on_ledger = [t for t in statements.texts if "move_resources" in t]
    assert on_ledger and not any(t.startswith("SELECT") for t in on_ledger), on_ledger
    after = {(e["host"], e["kind"]): e for e in db.ledger(migration_id=mig["id"])}
    assert after[("h2", "claim")]["updated_at"] == before[("h2", "claim")]["updated_at"]
    assert after[("h2", "vifs")]["state"] == "present"
    assert after[("h2", "vifs")]["updated_at"] is not None
    assert after[("h2", "domain")]["state"] == "planned"


def test_a_refused_advance_writes_nothing_to_the_ledger(db, inst):
    mig = _advance(db, _migration(db, inst), "checked")
    old = db.migration_take(mig["id"], "c1", 60)
    db.migration_take(mig["id"], "c2", 60, force=True)
    before = _held(db, mig)
    assert before == {("h2", "claim"): "present"}
    with pytest.raises(exception.MigrationFenced):
        db.migration_advance(old, "slot")
    assert _held(db, mig) == before


def test_every_phase_holds_only_known_kinds_on_its_two_hosts():
    from godwit.db import ledger
    for table in phases.TABLES.values():
        for phase in table.phases.values():
            for role, kind, state in phase.holds:
                assert role in ("source", "dest") and kind in ledger.KINDS
                assert state in (ledger.PLANNED, ledger.PRESENT)
            assert not (phase.final and phase.holds)


# ------------------------------------------------ what an advance may set
def test_an_advance_sets_only_columns_and_plain_values(db, inst):
    """The advance's statement is built once and run with its values as
    parameters: a misspelt column or an SQL expression is refused, not dropped
    or sent as text, and nothing is written."""
    from godwit.db.common import _MIG
    mig = db.migration_take(_migration(db, inst)["id"], "c1", 60)
    with pytest.raises(ValueError, match="eror_message"):
        db.migration_advance(mig, "checked", values={"eror_message": "typo"})
    with pytest.raises(ValueError, match="memory_total"):
        db.migration_advance(mig, "checked", values={"memory_total": _MIG.c.epoch + 1})
    assert _get(db, mig) == mig
    new = db.migration_advance(mig, "checked", values={"memory_total": 5,
                                                       "block_migration": True},
                               instance_values={"progress": 5})
    assert new == _get(db, mig)         # the row RETURNING gave is the row as read
    assert (new["status"], new["memory_total"], new["block_migration"]) == \
        (states.QUEUED, 5, True)


def test_a_progress_report_that_moved_nothing_keeps_the_deadline(db, inst):
    """migration_update(deadline_if_moved=...): the frozen-job guard's deadline
    moves only when the job's bytes processed changed (a stall report does not
    put it off), and only while the move is still in the expected phase."""
    mig = _advance(db, db.migration_take(_migration(db, inst)["id"], "c1", 60),
                   "checked", "slot", "prepared")
    assert mig["status"] == states.RUNNING_MIGRATION
    first, later = utcnow() + MINUTE, utcnow() + 10 * MINUTE
    db.migration_update(mig["id"], {"memory_processed": 10, "disk_processed": 0},
                        states.RUNNING_MIGRATION, deadline_if_moved=first)
    assert abs(_get(db, mig)["deadline_at"] - first) < datetime.timedelta(seconds=1)
    db.migration_update(mig["id"], {"memory_processed": 10, "disk_processed": 0,
                                    "memory_remaining": 5},
                        states.RUNNING_MIGRATION, deadline_if_moved=later)
    row = _get(db, mig)
    assert abs(row["deadline_at"] - first) < datetime.timedelta(seconds=1)
    assert row["memory_remaining"] == 5
    db.migration_update(mig["id"], {"memory_processed": 11}, states.RUNNING_MIGRATION,
                        deadline_if_moved=later)
    assert abs(_get(db, mig)["deadline_at"] - later) < datetime.timedelta(seconds=1)
    switched = db.migration_advance(_get(db, mig), "switched")
    with pytest.raises(exception.ConcurrentUpdate):
        db.migration_update(mig["id"], {"memory_processed": 12}, states.RUNNING_MIGRATION,
                            deadline_if_moved=first)
    assert _get(db, mig)["deadline_at"] == switched["deadline_at"]
