"""The source's slots (max_concurrent_live_migrations), handed out through the database.

A live migration waits in 'queued' until ``Database.migration_take_slot``
moves it to 'preparing': only if its source has fewer than ``limit`` live
migrations in preparing, running, post-migrating or rolling-back. The count
and the move are one transaction, so two conductors cannot both take the
last slot, on any backend.
"""

import functools
import threading

import pytest
from sqlalchemy import event

from godwit import exception, states
from tests.unit.test_db_api import (  # noqa: F401 (the fixtures any_db uses)
    RACE_ROUNDS,
    _advance,
    _Commits,
    _flavor,
    _instance,
    _migration,
    _run_together,
    any_db,
    mariadb_url,
    sqlite_url,
)

# Events that lead a fresh live migration (accepted) to each status.
PATHS = {
    states.ACCEPTED: (),
    states.QUEUED: ("checked",),
    states.PREPARING: ("checked", "slot"),
    states.RUNNING_MIGRATION: ("checked", "slot", "prepared"),
    states.POST_MIGRATING: ("checked", "slot", "prepared", "switched"),
    states.ROLLING_BACK: ("checked", "slot", "fail"),
    states.COMPLETED: ("checked", "slot", "prepared", "switched", "done"),
    states.FAILED: ("checked", "slot", "fail", "rolled_back"),
    states.CANCELLED: ("checked", "abort"),
    states.ERROR_MIGRATION: ("refused",),
}
HOLDERS = (states.PREPARING, states.RUNNING_MIGRATION, states.POST_MIGRATING,
           states.ROLLING_BACK)


@pytest.fixture
def db(any_db):  # noqa: F811 (the imported fixture)
    """Every test here runs on SQLite, PostgreSQL and MariaDB."""
    return any_db


def _source(database, host="h1"):
    """A source host (its compute node row is what a slot taker locks) and an instance on it."""
    database.compute_node_upsert(host, {"hypervisor_hostname": host,
                                        "hypervisor_type": "fake"})
    return _instance(database, _flavor(database, name=f"f-{host}"), host=host)


def _live(database, inst, status=states.QUEUED, **values):
    mig = _advance(database, _migration(database, inst, **values), *PATHS[status])
    assert mig["status"] == status
    return mig


def _status(database, mig):
    return database.migration_get(mig["id"])["status"]


def test_the_limit_is_respected_and_a_freed_slot_is_taken_again(db):
    inst = _source(db)
    first, second, third = (_live(db, inst) for _ in range(3))

    assert db.migration_take_slot(first, 2)["status"] == states.PREPARING
    running = db.migration_advance(db.migration_take_slot(second, 2), "prepared")
    assert db.migration_take_slot(third, 2) is None
    assert _status(db, third) == states.QUEUED    # it waits; nothing was written

    _advance(db, running, "switched", "done")     # the running one ends: its slot is free
    taken = db.migration_take_slot(third, 2)
    assert taken["status"] == states.PREPARING and taken["id"] == third["id"]
    assert [_status(db, m) for m in (first, second, third)] == \
        [states.PREPARING, states.COMPLETED, states.PREPARING]


def test_limit_none_means_no_limit(db):
    inst = _source(db)
    _live(db, inst, states.RUNNING_MIGRATION)
    queued = [_live(db, inst) for _ in range(4)]
    for mig in queued:
        assert db.migration_take_slot(mig, None)["status"] == states.PREPARING
    assert {_status(db, m) for m in queued} == {states.PREPARING}


def test_a_limit_of_zero_starts_nothing(db):
    mig = _live(db, _source(db))
    assert db.migration_take_slot(mig, 0) is None
    assert _status(db, mig) == states.QUEUED


def test_by_default_the_limit_is_the_source_nodes_own(db):
    """The conductor passes no limit: the source node's max_live_migrations,
    read in the slot's own transaction, decides (unset: no limit)."""
    inst = _source(db)
    db.compute_node_upsert("h1", {"max_live_migrations": 1})
    first, second = _live(db, inst), _live(db, inst)
    assert db.migration_take_slot(first)["status"] == states.PREPARING
    assert db.migration_take_slot(second) is None
    assert _status(db, second) == states.QUEUED
    db.compute_node_upsert("h1", {"max_live_migrations": 2})
    assert db.migration_take_slot(second)["status"] == states.PREPARING
    db.compute_node_upsert("h1", {"max_live_migrations": None})
    third = _live(db, inst)
    assert db.migration_take_slot(third)["status"] == states.PREPARING


@pytest.mark.parametrize("holder", HOLDERS)
def test_each_phase_past_queued_holds_a_slot(db, holder):
    inst = _source(db)
    _live(db, inst, holder)
    mig = _live(db, inst)
    assert db.migration_take_slot(mig, 1) is None
    assert _status(db, mig) == states.QUEUED
    assert db.migration_take_slot(mig, 2)["status"] == states.PREPARING


def test_queued_accepted_and_final_moves_hold_no_slot(db):
    inst = _source(db)
    for status in PATHS:
        if status not in HOLDERS:
            _live(db, inst, status)
    mig = _live(db, inst)
    assert db.migration_take_slot(mig, 1)["status"] == states.PREPARING


def test_cold_migrations_and_other_sources_do_not_count(db):
    inst = _source(db, "h1")
    elsewhere = _source(db, "h2")
    # A cold migration from h1 in post-migrating (a holder's status, not a live move).
    cold = _migration(db, inst, mtype=states.COLD_MIGRATION)
    cold = _advance(db, cold, "prepped", "copy", "copied")
    assert cold["status"] == states.POST_MIGRATING
    # Live migrations from h2, one of them into h1.
    _live(db, elsewhere, states.RUNNING_MIGRATION, dest="h3")
    _live(db, elsewhere, states.RUNNING_MIGRATION, dest="h1")

    mig = _live(db, inst)
    assert db.migration_take_slot(mig, 1)["status"] == states.PREPARING
    # ... and now h1's one slot is taken, for h1 only.
    assert db.migration_take_slot(_live(db, inst), 1) is None
    other = _live(db, elsewhere)
    assert db.migration_take_slot(other, 3)["status"] == states.PREPARING
    assert db.migration_take_slot(_live(db, elsewhere), 3) is None


def test_the_slot_is_taken_only_from_queued_by_the_epoch_holder(db):
    inst = _source(db)
    accepted = _live(db, inst, states.ACCEPTED)
    with pytest.raises(exception.InvalidMigrationTransition):
        db.migration_take_slot(accepted, None)
    assert _status(db, accepted) == states.ACCEPTED

    queued = _live(db, inst)
    with pytest.raises(exception.MigrationFenced):
        db.migration_take_slot(dict(queued, epoch=queued["epoch"] - 1), 5)
    db.migration_take_slot(queued, 5)
    with pytest.raises(exception.ConcurrentUpdate):   # it left 'queued' meanwhile
        db.migration_take_slot(queued, 5)
    assert _status(db, queued) == states.PREPARING


def test_the_count_and_the_move_are_one_transaction(db):
    inst = _source(db)
    _live(db, inst, states.RUNNING_MIGRATION)
    mig = _live(db, inst)
    with _Commits(db) as commits:
        assert db.migration_take_slot(mig, 2)["status"] == states.PREPARING
    assert commits.count == 1


def test_migrations_queued_on_lists_the_source_in_arrival_order(db):
    inst, elsewhere = _source(db, "h1"), _source(db, "h2")
    first = _live(db, inst)
    _live(db, elsewhere)
    _live(db, inst, states.ACCEPTED)
    second = _live(db, inst)
    assert [m["id"] for m in db.migrations_queued_on("h1")] == [first["id"], second["id"]]
    db.migration_take_slot(first, None)
    assert [m["id"] for m in db.migrations_queued_on("h1")] == [second["id"]]


def test_two_takers_racing_for_the_last_slot_exactly_one_wins(db):
    for round_ in range(RACE_ROUNDS):
        inst = _source(db, f"src{round_}")
        _live(db, inst, states.RUNNING_MIGRATION)     # one of the two slots is held
        racers = [_live(db, inst), _live(db, inst)]

        outcomes = _run_together(*(functools.partial(db.migration_take_slot, m, 2)
                                   for m in racers))
        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        won = [o for o in outcomes if o is not None]
        assert len(won) == 1, f"round {round_}: {outcomes}"
        assert won[0]["status"] == states.PREPARING
        assert sorted(_status(db, m) for m in racers) == sorted([states.PREPARING,
                                                                 states.QUEUED])


def test_a_taker_that_has_counted_cannot_be_overtaken(db):
    """The race above, made deterministic: taker A has counted one free slot
    and stops there; taker B asks for the same source's last slot meanwhile.
    B must wait for A (or count A's move): it may not take the slot too."""
    inst = _source(db)
    _live(db, inst, states.RUNNING_MIGRATION)
    first, second = _live(db, inst), _live(db, inst)
    counted, second_done = threading.Event(), threading.Event()
    first_thread = {}
    results = {}

    def after_execute(_conn, _cursor, statement, *_args):
        if (threading.get_ident() == first_thread.get("id") and not counted.is_set()
                and "count(" in statement.lower()):
            counted.set()
            # A correct lock keeps B waiting on A's transaction: let A go on
            # after a while, and find out then what B was allowed to do.
            second_done.wait(2)

    def take(name, mig):
        try:
            results[name] = db.migration_take_slot(mig, 2)
        except Exception as e:  # the outcome is what the test asserts on
            results[name] = e

    def run_first():
        first_thread["id"] = threading.get_ident()
        take("first", first)

    def run_second():
        assert counted.wait(10)
        take("second", second)
        second_done.set()

    event.listen(db.engine, "after_cursor_execute", after_execute)
    try:
        threads = [threading.Thread(target=run_first), threading.Thread(target=run_second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
            assert not t.is_alive(), "a taker hung"
    finally:
        event.remove(db.engine, "after_cursor_execute", after_execute)

    assert counted.is_set()
    assert isinstance(results["first"], dict), results
    assert results["first"]["status"] == states.PREPARING
    assert results["second"] is None, results
    assert (_status(db, first), _status(db, second)) == (states.PREPARING, states.QUEUED)


def test_queueing_starts_a_move_whose_source_has_a_slot_in_the_same_transaction(db):
    """migration_queue: accepted -> queued, and -> preparing in the same
    transaction when a slot is free; the timeline has both phases."""
    inst = _source(db)
    db.compute_node_upsert("h1", {"max_live_migrations": 1})
    first = _live(db, inst, states.ACCEPTED)
    with _Commits(db) as commits:
        started = db.migration_queue(first, data={"k": 1})
    assert commits.count == 1
    assert started["status"] == states.PREPARING and _status(db, first) == states.PREPARING
    assert [e["name"] for e in db.timeline(first["id"]) if e["kind"] == "phase"][-2:] == \
        [states.QUEUED, states.PREPARING]
    # The source's one slot is taken: the next one is queued, and waits.
    second = db.migration_queue(_live(db, inst, states.ACCEPTED))
    assert second["status"] == states.QUEUED and _status(db, second) == states.QUEUED


def test_queueing_does_not_start_a_move_the_user_aborted(db):
    mig = _live(db, _source(db), states.ACCEPTED)
    db.migration_request(mig["id"], "abort", {states.ACCEPTED})
    queued = db.migration_queue(mig)
    assert queued["status"] == states.QUEUED and queued["abort_requested_at"] is not None


def test_a_queuer_and_a_taker_racing_for_the_last_slot_of_the_sources_own_limit(db):
    """migration_queue against migration_take_slot, both with the source node's
    own limit (read with the lock, by UPDATE ... RETURNING where there is one):
    exactly one of them starts its move."""
    for round_ in range(RACE_ROUNDS):
        inst = _source(db, f"q{round_}")
        db.compute_node_upsert(f"q{round_}", {"max_live_migrations": 2})
        _live(db, inst, states.RUNNING_MIGRATION)     # one of the two slots is held
        queued, accepted = _live(db, inst), _live(db, inst, states.ACCEPTED)

        outcomes = _run_together(functools.partial(db.migration_take_slot, queued),
                                 functools.partial(db.migration_queue, accepted))
        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        taken, queued_now = outcomes
        started = [taken is not None, queued_now["status"] == states.PREPARING]
        assert started.count(True) == 1, f"round {round_}: {outcomes}"
        assert sorted([_status(db, queued), _status(db, accepted)]) == sorted(
            [states.PREPARING, states.QUEUED])
