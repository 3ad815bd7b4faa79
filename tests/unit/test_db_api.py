"""``godwit.db.api.Database`` against real databases.

Most tests use a SQLite file made by ``db_sync``; the compare-and-swap and
race tests also run on PostgreSQL and MariaDB, each in a fresh database.
"""

import collections
import datetime
import functools
import json
import os
import threading
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from conductor.flows.cold import flavor_values
from godwit import exception, states
from godwit.db import api as db_api
from godwit.db import flavors as db_flavors
from godwit.db import migration as db_migration
from godwit.timeutils import utcnow
from tests.conftest import require_service

MARIADB_ADMIN_URL = os.environ.get("GODWIT_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/")
RACE_ROUNDS = 20


# ------------------------------------------------------------------ fixtures
def _open(url):
    db_migration.db_sync(url)
    return db_api.Database(url)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/g.sqlite"


@pytest.fixture
def mariadb_url():
    """A fresh MariaDB database for one test, dropped afterwards."""
    require_service("MariaDB", "127.0.0.1", 3306)
    name = "godwit_t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(MARIADB_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        yield MARIADB_ADMIN_URL.rstrip("/") + f"/{name}?charset=utf8mb4"
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        admin.dispose()


@pytest.fixture
def db(sqlite_url):
    database = _open(sqlite_url)
    yield database
    database.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_db(request):
    """The same schema on each backend Godwit supports."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url",
               "mariadb": "mariadb_url"}[request.param]
    database = _open(request.getfixturevalue(fixture))
    yield database
    database.engine.dispose()


# ------------------------------------------------------------------ helpers
def _flavor(database, name="f1", memory_mb=512, vcpus=1, root_gb=1, ephemeral_gb=0):
    return database.flavor_create({"flavorid": name, "name": name, "memory_mb": memory_mb,
                                   "vcpus": vcpus, "root_gb": root_gb,
                                   "ephemeral_gb": ephemeral_gb})


def _instance(database, flavor, host="h1", **values):
    row = {"display_name": "vm", "instance_type_id": flavor["id"], "host": host,
           "memory_mb": flavor["memory_mb"], "vcpus": flavor["vcpus"],
           "root_gb": flavor["root_gb"], "ephemeral_gb": flavor["ephemeral_gb"],
           "vm_state": states.ACTIVE, "task_state": None}
    row.update(values)
    return database.instance_create(row)


def _migration(database, instance, dest="h2", mtype=states.LIVE_MIGRATION, **values):
    row = {"instance_uuid": instance["uuid"], "migration_type": mtype,
           "source_compute": instance["host"], "dest_compute": dest}
    row.update(values)
    return database.migration_create(row)


def _resize(database, instance, dest, old, new):
    """A resize of ``instance`` from flavor ``old`` to ``new`` towards ``dest``."""
    return _migration(database, instance, dest=dest, mtype=states.RESIZE,
                      old_instance_type_id=old["id"], new_instance_type_id=new["id"])


def _advance(database, migration, *events, **kwargs):
    """Walk ``migration`` along ``events`` one advance each; the last row."""
    for event_name in events:
        migration = database.migration_advance(migration, event_name, **kwargs)
    return migration


def _run_together(*funcs):
    """Run each function in its own thread, released together; return outcomes."""
    barrier = threading.Barrier(len(funcs), timeout=10)
    outcomes = [None] * len(funcs)

    def run(i, func):
        barrier.wait()
        try:
            outcomes[i] = func()
        except Exception as e:  # the outcome is what the test asserts on
            outcomes[i] = e

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(funcs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "a racing thread hung"
    return outcomes


# ------------------------------------------ migration_advance (event-based CAS)
def test_advance_moves_status_and_sets_values(any_db):
    inst = _instance(any_db, _flavor(any_db))
    mig = _migration(any_db, inst)
    assert (mig["status"], mig["epoch"]) == (states.ACCEPTED, 0)

    row = any_db.migration_advance(mig, "checked", values={"error_message": "note"},
                                   data={"migrate_data": {"k": 1}})
    assert row["status"] == states.QUEUED          # the phase table's target
    assert row["error_message"] == "note"
    assert row["updated_at"] is not None
    assert json.loads(row["step_data"]) == {"migrate_data": {"k": 1}}
    assert row["epoch"] == 0                       # advancing is not taking
    assert any_db.migration_get(mig["id"]) == row

    # ``data`` replaces the step data, it does not merge into it.
    row = any_db.migration_advance(row, "slot", data={"other": 2})
    assert row["status"] == states.PREPARING
    assert json.loads(row["step_data"]) == {"other": 2}


def test_advance_from_a_stale_status_raises_and_changes_nothing(any_db):
    inst = _instance(any_db, _flavor(any_db))
    mig = _migration(any_db, inst)
    any_db.migration_advance(mig, "checked")
    before = any_db.migration_get(mig["id"])

    # 'refused' is an event of 'accepted', but the row is no longer accepted.
    with pytest.raises(exception.ConcurrentUpdate) as info:
        any_db.migration_advance(mig, "refused", values={"error_message": "x"},
                                 data={"x": 1})
    assert not isinstance(info.value, exception.MigrationFenced)   # same epoch
    assert info.value.kwargs["expected"] == states.ACCEPTED
    assert info.value.kwargs["found"] == states.QUEUED
    assert any_db.migration_get(mig["id"]) == before


def test_advance_along_an_event_the_phase_lacks_raises_and_changes_nothing(any_db):
    inst = _instance(any_db, _flavor(any_db))
    mig = any_db.migration_get(_migration(any_db, inst)["id"])
    with pytest.raises(exception.InvalidMigrationTransition):
        any_db.migration_advance(mig, "done")           # post-migrating's event
    with pytest.raises(exception.InvalidMigrationTransition):   # a cold-only event
        any_db.migration_advance(mig, "prepped")
    with pytest.raises(exception.InvalidMigrationTransition):   # not an error: no resume
        any_db.migration_advance(mig, "resume:running")
    assert any_db.migration_get(mig["id"]) == mig

    cold = any_db.migration_get(_migration(any_db, inst, mtype=states.COLD_MIGRATION)["id"])
    with pytest.raises(exception.InvalidMigrationTransition):   # a live-only event
        any_db.migration_advance(cold, "checked")
    assert any_db.migration_get(cold["id"]) == cold
    assert any_db.migration_advance(cold, "prepped")["status"] == states.PRE_MIGRATING


def test_advance_of_missing_migration_raises_not_found(any_db):
    ghost = {"id": 12345, "migration_type": states.LIVE_MIGRATION,
             "status": states.ACCEPTED, "epoch": 0}
    with pytest.raises(exception.MigrationNotFound):
        any_db.migration_advance(ghost, "checked")
    with pytest.raises(exception.MigrationNotFound):
        any_db.migration_advance(ghost, "checked", fenced=False)


def test_advance_updates_instance_in_same_transaction(any_db):
    inst = _instance(any_db, _flavor(any_db), host="h1", task_state=states.MIGRATING)
    mig = _advance(any_db, _migration(any_db, inst, dest="h2"), "checked", "slot", "prepared")
    assert mig["status"] == states.RUNNING_MIGRATION

    row = any_db.migration_advance(
        mig, "switched", instance_values={"host": "h2", "node": "h2"},
        instance_expected={"host": "h1", "task_state": states.MIGRATING})
    assert row["status"] == states.POST_MIGRATING
    moved = any_db.instance_get(inst["uuid"])
    assert (moved["host"], moved["node"], moved["task_state"]) == ("h2", "h2", states.MIGRATING)


def test_advance_rolls_back_when_instance_guard_fails(any_db):
    inst = _instance(any_db, _flavor(any_db), host="h1", task_state=states.MIGRATING)
    mig = any_db.migration_get(_migration(any_db, inst, dest="h2")["id"])
    inst_before = any_db.instance_get(inst["uuid"])

    with pytest.raises(exception.ConcurrentUpdate) as info:
        any_db.migration_advance(
            mig, "refused", values={"error_message": "refused"}, data={"why": "x"},
            instance_values={"task_state": None, "vm_state": states.ERROR},
            instance_expected={"task_state": states.DELETING})
    assert info.value.kwargs["found"] == {"task_state": states.MIGRATING}

    # Neither row changed: the migration's update was rolled back with the instance's.
    assert any_db.migration_get(mig["id"]) == mig
    assert any_db.instance_get(inst["uuid"]) == inst_before


def test_racing_the_same_event_exactly_one_wins(any_db):
    inst = _instance(any_db, _flavor(any_db))
    for _ in range(RACE_ROUNDS):
        mig = _migration(any_db, inst)

        def attempt(mig=mig):
            return any_db.migration_advance(mig, "checked")

        outcomes = _run_together(attempt, attempt)
        winners = [o for o in outcomes if isinstance(o, dict)]
        losers = [o for o in outcomes if isinstance(o, exception.ConcurrentUpdate)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        assert winners[0]["status"] == states.QUEUED
        assert any_db.migration_get(mig["id"])["status"] == states.QUEUED


def test_racing_two_events_from_one_phase_exactly_one_wins(any_db):
    """'checked' and 'refused' both leave 'accepted': one of them, never both."""
    inst = _instance(any_db, _flavor(any_db))
    for _ in range(RACE_ROUNDS):
        mig = _migration(any_db, inst)
        outcomes = _run_together(functools.partial(any_db.migration_advance, mig, "checked"),
                                 functools.partial(any_db.migration_advance, mig, "refused"))
        winners = [o for o in outcomes if isinstance(o, dict)]
        assert len(winners) == 1, outcomes
        assert sum(isinstance(o, exception.ConcurrentUpdate) for o in outcomes) == 1
        assert any_db.migration_get(mig["id"])["status"] == winners[0]["status"]


def test_race_loser_is_told_the_winners_status(any_db):
    # On MySQL/MariaDB this holds because the engine runs at READ COMMITTED.
    inst = _instance(any_db, _flavor(any_db))
    found = []
    for _ in range(RACE_ROUNDS):
        mig = _migration(any_db, inst)

        def attempt(mig=mig):
            return any_db.migration_advance(mig, "checked")

        found += [o.kwargs["found"] for o in _run_together(attempt, attempt)
                  if isinstance(o, exception.ConcurrentUpdate)]
    assert found == [states.QUEUED] * RACE_ROUNDS


def test_racing_two_migrations_for_one_instance_exactly_one_wins(any_db):
    """The instance guard inside migration_advance is a CAS too."""
    inst = _instance(any_db, _flavor(any_db))
    for _ in range(RACE_ROUNDS):
        migs = [_migration(any_db, inst), _migration(any_db, inst)]

        def attempt(mig):
            return any_db.migration_advance(
                mig, "checked", instance_values={"task_state": states.MIGRATING},
                instance_expected={"task_state": None})

        outcomes = _run_together(functools.partial(attempt, migs[0]),
                                 functools.partial(attempt, migs[1]))
        won = [i for i, o in enumerate(outcomes) if isinstance(o, dict)]
        lost = [i for i, o in enumerate(outcomes) if isinstance(o, exception.ConcurrentUpdate)]
        assert len(won) == 1 and len(lost) == 1, outcomes
        assert any_db.migration_get(migs[won[0]]["id"])["status"] == states.QUEUED
        assert any_db.migration_get(migs[lost[0]]["id"])["status"] == states.ACCEPTED
        assert any_db.instance_get(inst["uuid"])["task_state"] == states.MIGRATING
        any_db.instance_update(inst["uuid"], {"task_state": None})


# ------------------------------------------------------- instance_update CAS
def test_instance_update_with_matching_expected(db):
    inst = _instance(db, _flavor(db), task_state=None)
    row = db.instance_update(inst["uuid"], {"task_state": states.MIGRATING},
                             expected={"task_state": None, "vm_state": states.ACTIVE})
    assert row["task_state"] == states.MIGRATING
    assert db.instance_get(inst["uuid"])["task_state"] == states.MIGRATING


def test_instance_update_expected_none_does_not_match_a_value(db):
    inst = _instance(db, _flavor(db), task_state=states.MIGRATING)
    with pytest.raises(exception.ConcurrentUpdate) as info:
        db.instance_update(inst["uuid"], {"task_state": states.DELETING},
                           expected={"task_state": None})
    assert info.value.kwargs["found"] == {"task_state": states.MIGRATING}
    assert db.instance_get(inst["uuid"])["task_state"] == states.MIGRATING


def test_instance_update_mismatch_changes_nothing(db):
    inst = _instance(db, _flavor(db))
    before = db.instance_get(inst["uuid"])
    with pytest.raises(exception.ConcurrentUpdate):
        db.instance_update(inst["uuid"], {"host": "elsewhere", "task_state": states.DELETING},
                           expected={"vm_state": states.STOPPED})
    assert db.instance_get(inst["uuid"]) == before


@pytest.mark.parametrize("current, accepted, matches", [
    (None, (None, states.MIGRATING), True),
    (states.MIGRATING, (None, states.MIGRATING), True),
    (states.DELETING, (None, states.MIGRATING), False),
    (None, (states.MIGRATING, states.SPAWNING), False),
    (states.SPAWNING, [states.MIGRATING, states.SPAWNING], True),
    (None, (None,), True),
    (states.SPAWNING, (None,), False),
    (states.SPAWNING, (), False),
])
def test_instance_update_expected_tuple_of_values(db, current, accepted, matches):
    inst = _instance(db, _flavor(db), task_state=current)
    update = {"task_state": states.POWERING_OFF}
    if matches:
        assert db.instance_update(inst["uuid"], update,
                                  expected={"task_state": accepted})["task_state"] == \
            states.POWERING_OFF
    else:
        with pytest.raises(exception.ConcurrentUpdate):
            db.instance_update(inst["uuid"], update, expected={"task_state": accepted})
        assert db.instance_get(inst["uuid"])["task_state"] == current


def test_instance_update_of_missing_instance_raises_not_found(db):
    with pytest.raises(exception.InstanceNotFound):
        db.instance_update(str(uuid.uuid4()), {"task_state": None}, expected={"task_state": None})


# ----------------------------------------------------------------- host_usage
def test_host_usage_counts_instances_on_the_host(db):
    small = _flavor(db, "small", memory_mb=512, vcpus=1, root_gb=1, ephemeral_gb=2)
    big = _flavor(db, "big", memory_mb=2048, vcpus=2, root_gb=20)
    _instance(db, small, host="h1")
    _instance(db, big, host="h1")
    _instance(db, big, host="h2")
    _instance(db, big, host="h1", deleted_at=datetime.datetime(2020, 1, 1))

    assert db.host_usage("h1") == {"memory_mb": 2560, "vcpus": 3, "disk_gb": 23,
                                   "running_vms": 2}
    assert db.host_usage("nowhere") == {"memory_mb": 0, "vcpus": 0, "disk_gb": 0,
                                        "running_vms": 0}


def test_host_usage_counts_incoming_migration_until_final(db):
    small = _flavor(db, "small", memory_mb=512, vcpus=1, root_gb=1)
    big = _flavor(db, "big", memory_mb=2048, vcpus=2, root_gb=20)
    _instance(db, big, host="h2")
    moving = _instance(db, small, host="h1")
    mig = _migration(db, moving, dest="h2")
    # a finished move to h2 and a move elsewhere hold nothing on h2
    done = _migration(db, moving, dest="h2")
    assert db.migration_advance(done, "interrupted")["status"] == states.FAILED
    _migration(db, moving, dest="h3")

    h2_alone = {"memory_mb": 2048, "vcpus": 2, "disk_gb": 20, "running_vms": 1}
    assert db.host_usage("h2") == {"memory_mb": 2560, "vcpus": 3, "disk_gb": 21,
                                   "running_vms": 1}
    # the source still holds the guest
    assert db.host_usage("h1")["memory_mb"] == 512

    for event_name in ("checked", "slot", "prepared"):
        mig = db.migration_advance(mig, event_name)
        assert db.host_usage("h2")["memory_mb"] == 2560
    assert mig["status"] == states.RUNNING_MIGRATION
    # After the switch-over the instance is on h2: counted once, not twice.
    mig = db.migration_advance(mig, "switched", instance_values={"host": "h2"})
    assert db.host_usage("h2") == {"memory_mb": 2560, "vcpus": 3, "disk_gb": 21,
                                   "running_vms": 2}
    assert db.host_usage("h1")["memory_mb"] == 0

    assert db.migration_advance(mig, "fail", instance_values={"host": "h1"})["status"] == \
        states.ERROR_MIGRATION
    assert db.host_usage("h2") == h2_alone


def test_host_usage_counts_resize_at_the_new_flavor(db):
    small = _flavor(db, "small", memory_mb=512, vcpus=1, root_gb=1)
    big = _flavor(db, "big", memory_mb=2048, vcpus=2, root_gb=20, ephemeral_gb=5)
    inst = _instance(db, small, host="h1")
    _resize(db, inst, "h2", small, big)
    assert db.host_usage("h2") == {"memory_mb": 2048, "vcpus": 2, "disk_gb": 25,
                                   "running_vms": 0}


def test_a_resize_holds_the_new_flavor_on_its_destination_and_the_old_on_its_source(any_db):
    """At 'copied' the instance is switched to the destination but keeps its old
    flavor until 'finished': the destination must still count the new one, or a
    claim in between could take the difference. The source keeps the old flavor
    until the move ends, for a revert."""
    small = _flavor(any_db, "small", memory_mb=512, vcpus=1, root_gb=1)
    big = _flavor(any_db, "big", memory_mb=2048, vcpus=4, root_gb=20, ephemeral_gb=5)
    inst = _instance(any_db, small, host="h1")
    mig = _resize(any_db, inst, "h2", small, big)
    old = {"memory_mb": 512, "vcpus": 1, "disk_gb": 1}
    new = {"memory_mb": 2048, "vcpus": 4, "disk_gb": 25}

    def held(host):
        used = any_db.host_usage(host)
        return {k: used[k] for k in ("memory_mb", "vcpus", "disk_gb")}

    mig = _advance(any_db, mig, "prepped", "copy")
    assert (held("h1"), held("h2")) == (old, new)
    mig = any_db.migration_advance(mig, "copied", instance_values={"host": "h2"})
    assert any_db.host_usage("h2")["running_vms"] == 1
    assert (held("h1"), held("h2")) == (old, new)
    mig = any_db.migration_advance(mig, "finished", instance_values=flavor_values(big))
    assert (held("h1"), held("h2")) == (old, new)
    mig = _advance(any_db, mig, "confirm", "confirmed")
    assert mig["status"] == states.CONFIRMED
    assert (held("h1"), held("h2")) == ({"memory_mb": 0, "vcpus": 0, "disk_gb": 0}, new)


def test_a_reverted_resize_holds_only_the_old_flavor_on_its_source(any_db):
    small = _flavor(any_db, "small", memory_mb=512, vcpus=1, root_gb=1)
    big = _flavor(any_db, "big", memory_mb=2048, vcpus=4, root_gb=20)
    inst = _instance(any_db, big, host="h1")
    # a resize down: the destination holds the smaller flavor once switched
    mig = _resize(any_db, inst, "h2", big, small)
    mig = _advance(any_db, mig, "prepped", "copy")
    mig = any_db.migration_advance(mig, "copied", instance_values={"host": "h2"})
    assert any_db.host_usage("h2")["memory_mb"] == 512
    assert any_db.host_usage("h1")["memory_mb"] == 2048
    mig = any_db.migration_advance(mig, "finished", instance_values=flavor_values(small))
    mig = any_db.migration_advance(mig, "revert")
    assert (any_db.host_usage("h1")["memory_mb"], any_db.host_usage("h2")["memory_mb"]) == \
        (2048, 512)
    mig = any_db.migration_advance(mig, "reverted",
                                   instance_values=dict(flavor_values(big), host="h1"))
    assert (any_db.host_usage("h1")["memory_mb"], any_db.host_usage("h2")["memory_mb"]) == \
        (2048, 0)


def test_a_resize_to_the_same_host_holds_both_flavors_there(db):
    small = _flavor(db, "small", memory_mb=512, vcpus=1, root_gb=1)
    big = _flavor(db, "big", memory_mb=2048, vcpus=2, root_gb=20)
    inst = _instance(db, small, host="h1")
    mig = _resize(db, inst, "h1", small, big)
    assert db.host_usage("h1")["memory_mb"] == 2560
    mig = _advance(db, mig, "prepped", "copy", "copied")
    mig = db.migration_advance(mig, "finished", instance_values=flavor_values(big))
    assert db.host_usage("h1") == {"memory_mb": 2560, "vcpus": 3, "disk_gb": 21,
                                   "running_vms": 1}
    _advance(db, mig, "confirm", "confirmed")
    assert db.host_usage("h1")["memory_mb"] == 2048


def test_a_move_waiting_for_a_host_holds_its_room_and_a_deleted_guest_none(any_db):
    """An 'error' that waits for a host resumes when the host returns (decision
    17), so its room stays held; one that does not wait, and any move of a
    deleted guest (a server deleted in VERIFY_RESIZE), hold nothing."""
    small = _flavor(any_db, "small", memory_mb=512, vcpus=1, root_gb=1)
    big = _flavor(any_db, "big", memory_mb=2048, vcpus=2, root_gb=20)
    waiting = _migration(any_db, _instance(any_db, small, host="h1"), dest="h2")
    waiting = _advance(any_db, waiting, "checked", "slot", "prepared")
    waiting = any_db.migration_advance(waiting, "unresolved",
                                       values={"awaiting_hosts": '["h2"]'})
    assert waiting["status"] == states.ERROR_MIGRATION
    assert any_db.host_usage("h2")["memory_mb"] == 512
    given_up = _migration(any_db, _instance(any_db, small, host="h1"), dest="h3")
    assert any_db.migration_advance(given_up, "refused")["status"] == states.ERROR_MIGRATION
    assert any_db.host_usage("h3")["memory_mb"] == 0

    inst = _instance(any_db, small, host="h4")
    resize = _resize(any_db, inst, "h5", small, big)
    resize = _advance(any_db, resize, "prepped", "copy")
    any_db.migration_advance(resize, "copied", instance_values={"host": "h5"})
    assert (any_db.host_usage("h4")["memory_mb"], any_db.host_usage("h5")["memory_mb"]) == \
        (512, 2048)
    any_db.instance_update(inst["uuid"], {"deleted_at": datetime.datetime(2026, 1, 1)})
    assert (any_db.host_usage("h4")["memory_mb"], any_db.host_usage("h5")["memory_mb"]) == \
        (0, 0)


# ------------------------------------------------------------- migration_list
def _ids(rows):
    return [r["id"] for r in rows]


def test_migration_list_filters(db):
    inst = _instance(db, _flavor(db), host="h1")
    m1 = _migration(db, inst, dest="h2")
    m2 = _migration(db, inst, dest="h3")
    m3 = _migration(db, inst, dest="h2", source_compute="h3")
    db.migration_advance(m2, "checked")
    db.migration_advance(m3, "interrupted")

    assert _ids(db.migration_list()) == [m3["id"], m2["id"], m1["id"]]
    assert _ids(db.migration_list({"status": [states.ACCEPTED, states.QUEUED]})) == \
        [m2["id"], m1["id"]]
    assert _ids(db.migration_list({"status": states.FAILED})) == [m3["id"]]
    assert _ids(db.migration_list({"host": "h3"})) == [m3["id"], m2["id"]]   # dest or source
    assert _ids(db.migration_list({"host": "h1"})) == [m2["id"], m1["id"]]
    assert _ids(db.migration_list({"host": "h2", "status": [states.ACCEPTED]})) == [m1["id"]]
    assert db.migration_list({"host": "h9"}) == []


def test_migration_list_changes_since_and_before(db):
    inst = _instance(db, _flavor(db))
    t0 = datetime.datetime(2000, 1, 1)
    hour = datetime.timedelta(hours=1)
    old = _migration(db, inst, created_at=t0)
    mid = _migration(db, inst, created_at=t0 + hour)
    new = _migration(db, inst, created_at=t0 + 2 * hour)

    assert _ids(db.migration_list({"changes_since": t0 + hour})) == [new["id"], mid["id"]]
    assert _ids(db.migration_list({"changes_before": t0 + hour})) == [mid["id"], old["id"]]
    assert db.migration_list({"changes_since": t0 + 3 * hour}) == []

    # An update is a change: the old row now counts as changed just now.
    db.migration_update(old["id"], {"memory_total": 1})
    assert _ids(db.migration_list({"changes_since": t0 + hour})) == \
        [new["id"], mid["id"], old["id"]]
    assert _ids(db.migration_list({"changes_before": t0 + hour})) == [mid["id"]]
    recent = utcnow() - datetime.timedelta(minutes=5)
    assert _ids(db.migration_list({"changes_since": recent})) == [old["id"]]


def test_migration_list_pagination_newest_first(db):
    inst = _instance(db, _flavor(db))
    migs = [_migration(db, inst) for _ in range(5)]
    newest_first = [m["id"] for m in reversed(migs)]

    page1 = db.migration_list(limit=2)
    assert _ids(page1) == newest_first[:2]
    page2 = db.migration_list(limit=2, marker=page1[-1]["uuid"])
    assert _ids(page2) == newest_first[2:4]
    page3 = db.migration_list(limit=2, marker=page2[-1]["uuid"])
    assert _ids(page3) == newest_first[4:]
    assert db.migration_list(limit=2, marker=page3[-1]["uuid"]) == []
    with pytest.raises(exception.MigrationNotFound):
        db.migration_list(marker=str(uuid.uuid4()))


# ----------------------------------------------------------------- services
def test_service_heartbeat_updates_last_seen(db):
    svc = db.service_register("h1", states.SERVICE_COMPUTE, "compute", "1")
    assert svc["report_count"] == 0
    assert db.service_heartbeat("h1", states.SERVICE_COMPUTE) is True
    assert db.service_heartbeat("h1", states.SERVICE_COMPUTE) is True
    after = db.service_get(svc["id"])
    assert after["report_count"] == 2
    assert after["last_seen_up"] >= svc["last_seen_up"]
    assert db.service_heartbeat("h1", states.SERVICE_CONDUCTOR) is False
    assert db.service_heartbeat("nowhere", states.SERVICE_COMPUTE) is False


def test_is_service_up_honours_down_time(db):
    svc = db.service_register("h1", states.SERVICE_COMPUTE, "compute", "1")
    last = svc["last_seen_up"]
    seconds = datetime.timedelta(seconds=1)
    assert db_api.is_service_up(svc, 60)
    assert db_api.is_service_up(svc, 60, now=last + 60 * seconds)
    assert not db_api.is_service_up(svc, 60, now=last + 61 * seconds)
    assert not db_api.is_service_up(dict(svc, forced_down=True), 60, now=last)
    assert not db_api.is_service_up({"last_seen_up": None, "created_at": None}, 60)
    # without a heartbeat the creation time stands in
    assert db_api.is_service_up({"last_seen_up": None, "created_at": last}, 60, now=last)


def test_silence_counts_against_a_host_only_while_the_broker_works():
    last = datetime.datetime(2030, 1, 1)
    now = last + datetime.timedelta(seconds=100)
    svc = {"last_seen_up": last}

    def ago(seconds):
        return now - datetime.timedelta(seconds=seconds)

    # No look at the broker, or a look too old: the heartbeat's age decides.
    assert not db_api.is_service_up(svc, 60, now=now)
    assert not db_api.is_service_up(svc, 60, now=now, broker=(None, None))
    assert not db_api.is_service_up(svc, 60, now=now, broker=(ago(61), ago(90)))
    # The broker is down now, or came back less than down_time ago: silence proves nothing.
    assert db_api.is_service_up(svc, 60, now=now, broker=(ago(1), None))
    assert db_api.is_service_up(svc, 60, now=now, broker=(ago(1), ago(30)))
    # The broker has worked for longer than down_time: the host is down.
    assert not db_api.is_service_up(svc, 60, now=now, broker=(ago(1), ago(61)))
    # A recent heartbeat, or a forced-down service, is not second-guessed.
    assert db_api.is_service_up({"last_seen_up": ago(10)}, 60, now=now, broker=(ago(1), ago(90)))
    assert not db_api.is_service_up(dict(svc, forced_down=True), 60, now=now,
                                    broker=(ago(1), None))


def test_broker_checked_keeps_the_start_of_a_working_stretch(db):
    def fresh(method="broker_state", *args):
        """Ask a new Database: broker_state is cached for a second per Database."""
        other = type(db)(db.url)
        try:
            return getattr(other, method)(*args)
        finally:
            other.engine.dispose()

    assert fresh() is None
    db.service_register("c1", states.SERVICE_CONDUCTOR, "conductor", "1")
    db.service_register("h1", states.SERVICE_COMPUTE, "compute", "1")
    db.broker_checked("h1", True)    # not a conductor: nothing recorded
    assert fresh() is None

    db.broker_checked("c1", True)
    checked, ok_since = fresh()
    assert checked is not None and ok_since == checked
    db.broker_checked("c1", True)
    checked2, ok_since2 = fresh()
    assert checked2 >= checked and ok_since2 == ok_since   # the stretch goes on
    db.broker_checked("c1", None)          # a look under way: current, no verdict
    checked3, ok_since3 = fresh()
    assert checked3 >= checked2 and ok_since3 == ok_since
    db.broker_checked("c1", False)
    assert fresh()[1] is None
    db.broker_checked("c1", None)
    assert fresh()[1] is None              # still broken until a message comes back
    db.broker_checked("c1", True)
    assert fresh()[1] >= checked3          # a new stretch

    # is_host_up asks with that view: an agent silent for longer than
    # down_time is not down while the broker has only just come back.
    silent = {"last_seen_up": utcnow() - datetime.timedelta(seconds=120)}
    assert fresh("is_host_up", silent, 60)
    assert not db_api.is_service_up(silent, 60)


def test_service_registered_again_keeps_its_row(db):
    first = db.service_register("h1", states.SERVICE_COMPUTE, "compute", "1")
    again = db.service_register("h1", states.SERVICE_COMPUTE, "compute", "2")
    assert again["id"] == first["id"] and again["version"] == "2"
    assert len(db.service_list()) == 1


def test_compute_hosts_reads_services_and_nodes_in_one_statement(any_db):
    """A move's checks read the source's and destination's service and node
    rows together; each as service_get_by_host and compute_node_get_by_host
    return it."""
    for host in ("h1", "h2"):
        any_db.service_register(host, states.SERVICE_COMPUTE, "compute", "1")
    any_db.service_register("c1", states.SERVICE_CONDUCTOR, "conductor", "1")
    any_db.compute_node_upsert("h1", {"hypervisor_hostname": "h1", "hypervisor_type": "fake"})
    with _Statements(any_db) as statements:
        found = any_db.compute_hosts(["h1", "h2", "c1", "nowhere"])
    assert len([s for s in statements.texts if s.upper().startswith("SELECT")]) == 1
    assert set(found) == {"h1", "h2"}      # the conductor's service is not a compute one
    assert found["h1"] == (any_db.service_get_by_host("h1"),
                           any_db.compute_node_get_by_host("h1"))
    assert found["h2"] == (any_db.service_get_by_host("h2"), None)


def test_a_hosts_usage_is_read_in_one_statement(any_db):
    """One snapshot: read in two statements, a move switching its instance to
    the host between them was counted in neither, and a claim could take the
    room it held (seen in the suite: two of six racing moves won the last room)."""
    from godwit.db import claims
    with any_db.engine.connect() as conn, _Statements(any_db) as statements:
        used = claims.usage_on(conn, "h1")
    assert len(statements.texts) == 1, statements.texts
    assert used == {"memory_mb": 0, "vcpus": 0, "disk_gb": 0, "running_vms": 0}


# ------------------------------------------------------------------ flavors
def test_flavor_create_duplicate_name_or_id_raises(db):
    _flavor(db, "m9.x")
    with pytest.raises(exception.FlavorExists):
        _flavor(db, "m9.x")
    with pytest.raises(exception.FlavorExists):  # same flavorid, other name
        db.flavor_create({"flavorid": "m9.x", "name": "other", "memory_mb": 1, "vcpus": 1})
    assert [f["name"] for f in db.flavor_list()] == ["m9.x"]


def test_ensure_default_flavors_is_idempotent(db):
    db.ensure_default_flavors()
    first = db.flavor_list()
    db.ensure_default_flavors()
    assert db.flavor_list() == first
    assert sorted(f["name"] for f in first) == sorted(f[1] for f in db_flavors.DEFAULT_FLAVORS)


def test_ensure_default_flavors_leaves_existing_flavors_alone(db):
    _flavor(db, "custom")
    db.ensure_default_flavors()
    assert [f["name"] for f in db.flavor_list()] == ["custom"]


# ------------------------------- fast paths: one transaction, remembered ids
class _Commits:
    """Counts COMMITs on the database's engine."""

    def __init__(self, database):
        self.engine = database.engine
        self.count = 0

    def _commit(self, _conn):
        self.count += 1

    def __enter__(self):
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "commit", self._commit)


class _Statements:
    """Records the SQL statements run on the database's engine (whitespace
    folded), in ``texts``."""

    def __init__(self, database):
        self.engine = database.engine
        self.texts = []

    def _seen(self, _conn, _cursor, statement, *_rest):
        self.texts.append(" ".join(statement.split()))

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._seen)


def _with_devices(database):
    inst = _instance(database, _flavor(database), task_state=states.MIGRATING)
    database.vif_create({"instance_uuid": inst["uuid"], "address": "fa:16:3e:00:00:01",
                         "network_id": "net", "details": {"k": "v"}})
    database.bdm_create({"instance_uuid": inst["uuid"], "device_name": "/dev/vdb",
                         "source_type": "volume", "destination_type": "volume",
                         "volume_id": "vol-1"})
    return inst


def test_instance_get_with_devices_is_one_transaction_with_the_same_rows(db):
    inst = _with_devices(db)
    with _Commits(db) as commits:
        info = db.instance_get_with_devices(inst["uuid"])
    assert commits.count == 1
    assert info == {"instance": db.instance_get(inst["uuid"]),
                    "network_info": db.vif_list(inst["uuid"]),
                    "block_device_info": db.bdm_list(inst["uuid"])}
    assert len(info["network_info"]) == 1 and len(info["block_device_info"]) == 1


def test_migration_context_live_and_cold(db):
    inst = _with_devices(db)
    live = _migration(db, inst)
    with _Commits(db) as commits:
        ctx = db.migration_context(live["id"])
    assert commits.count == 1
    assert set(ctx) == {"migration", "instance", "network_info", "block_device_info"}
    assert ctx["migration"] == db.migration_get(live["id"])
    db.compute_node_upsert("h1", {"hypervisor_hostname": "h1", "hypervisor_type": "fake",
                                  "hypervisor_version": 1,
                                  "memory_mb": 1024, "vcpus": 2, "local_gb": 10})
    cold = _migration(db, inst, mtype=states.COLD_MIGRATION,
                      old_instance_type_id=inst["instance_type_id"],
                      new_instance_type_id=inst["instance_type_id"])
    ctx = db.migration_context(cold["id"])
    assert ctx["source_node"]["host"] == "h1" and ctx["dest_node"] is None
    assert ctx["old_flavor"] == ctx["new_flavor"] == db.flavor_get(inst["instance_type_id"])


def test_action_id_is_looked_up_once_per_request(db):
    inst = _instance(db, _flavor(db))
    ctxt = type("C", (), {"request_id": "req-1", "user_id": "u", "project_id": "p"})
    action = db.action_start(ctxt, inst["uuid"], states.ACTION_LIVE_MIGRATION)
    other = type(db)(db.url)   # another process: knows nothing yet
    try:
        assert other.action_id_for_request(inst["uuid"], "req-2") is None
        with _Commits(other) as commits:
            assert other.action_id_for_request(inst["uuid"], "req-1") == action["id"]
            assert other.action_id_for_request(inst["uuid"], "req-1") == action["id"]
        assert commits.count == 1
    finally:
        other.engine.dispose()
    with _Commits(db) as commits:   # action_start remembered it
        assert db.action_id_for_request(inst["uuid"], "req-1") == action["id"]
    assert commits.count == 0


def test_event_record_writes_the_event_and_marks_errors(db):
    inst = _instance(db, _flavor(db))
    ctxt = type("C", (), {"request_id": "req-1", "user_id": "u", "project_id": "p"})
    action = db.action_start(ctxt, inst["uuid"], states.ACTION_LIVE_MIGRATION)
    ok = db.event_record(action["id"], "step_a", "h1", None, result=states.EVENT_SUCCESS)
    bad = db.event_record(action["id"], "step_b", "h1", ok["start_time"],
                          result=states.EVENT_ERROR, traceback="tb", details={"x": 1})
    events = db.event_list(action["id"])
    assert [e["event"] for e in events] == ["step_a", "step_b"]
    assert events == [ok, bad]
    assert events[0]["start_time"] is not None
    assert db.action_list(inst["uuid"])[0]["message"] == "Error"


def test_advance_writes_migration_data_and_instance_in_one_transaction(any_db):
    inst = _with_devices(any_db)
    mig = _advance(any_db, _migration(any_db, inst), "checked", "slot", "prepared")
    with _Commits(any_db) as commits:
        row = any_db.migration_advance(
            mig, "switched", values={"memory_processed": 7}, data={"job": "done"},
            instance_values={"host": "h2", "node": "h2"},
            instance_expected={"task_state": states.MIGRATING})
    assert commits.count == 1
    assert (row["status"], row["memory_processed"]) == (states.POST_MIGRATING, 7)
    assert json.loads(row["step_data"]) == {"job": "done"}
    assert any_db.instance_get(inst["uuid"])["host"] == "h2"


def test_advance_that_cannot_be_taken_changes_nothing(any_db):
    """Whatever stops an advance (the phase moved on, no such event, another
    conductor's epoch), nothing of it is written: no status, values or data."""
    inst = _instance(any_db, _flavor(any_db))
    mig = any_db.migration_advance(_migration(any_db, inst), "checked")
    before = any_db.migration_get(mig["id"])
    attempts = [
        (dict(mig, status=states.ACCEPTED), "checked", exception.ConcurrentUpdate),
        (mig, "prepared", exception.InvalidMigrationTransition),
        (dict(mig, epoch=mig["epoch"] + 1), "slot", exception.MigrationFenced),
    ]
    for held, event_name, error in attempts:
        with pytest.raises(error):
            any_db.migration_advance(held, event_name, values={"error_message": "x"},
                                     data={"x": 1})
        assert any_db.migration_get(mig["id"]) == before
    assert any_db.migration_advance(mig, "slot")["status"] == states.PREPARING


def test_claim_move_writes_claim_action_and_migration_together(any_db):
    inst = _instance(any_db, _flavor(any_db))
    ctxt = type("C", (), {"request_id": "req-9", "user_id": "u", "project_id": "p"})
    mig_values = {"instance_uuid": inst["uuid"], "migration_type": states.LIVE_MIGRATION,
                  "source_compute": "h1", "dest_compute": "h2"}
    expected = {"task_state": None, "vm_state": (states.ACTIVE, states.PAUSED)}
    with _Commits(any_db) as commits:
        claimed, action, mig = any_db.instance_claim_move(
            ctxt, inst["uuid"], {"task_state": states.MIGRATING}, expected,
            states.ACTION_LIVE_MIGRATION, mig_values)
    assert commits.count == 1
    assert claimed == any_db.instance_get(inst["uuid"])
    assert claimed["task_state"] == states.MIGRATING
    assert action == any_db.action_get_by_request_id(inst["uuid"], "req-9")
    assert mig == any_db.migration_get(mig["id"])
    assert mig["status"] == states.ACCEPTED and mig["uuid"]

    # A second claim loses the compare-and-swap and records nothing.
    ctxt.request_id = "req-10"
    with pytest.raises(exception.ConcurrentUpdate):
        any_db.instance_claim_move(ctxt, inst["uuid"], {"task_state": states.MIGRATING},
                                   expected, states.ACTION_LIVE_MIGRATION, mig_values)
    assert any_db.action_get_by_request_id(inst["uuid"], "req-10") is None
    assert [m["id"] for m in any_db.migration_list({"instance_uuid": inst["uuid"]})] == \
        [mig["id"]]


def test_migration_update_sets_instance_progress_only_while_migrating(db):
    inst = _instance(db, _flavor(db), task_state=states.MIGRATING)
    mig = _migration(db, inst)
    with _Commits(db) as commits:
        row = db.migration_update(mig["id"], {"memory_processed": 5}, states.ACCEPTED,
                                  instance_progress=40)
    assert commits.count == 1
    assert row["memory_processed"] == 5
    assert db.instance_get(inst["uuid"])["progress"] == 40
    db.instance_update(inst["uuid"], {"task_state": None})
    db.migration_update(mig["id"], {"memory_processed": 6}, instance_progress=90)
    assert db.instance_get(inst["uuid"])["progress"] == 40
    assert db.migration_get(mig["id"])["memory_processed"] == 6
    with pytest.raises(exception.ConcurrentUpdate):   # status guard: nothing written
        db.migration_update(mig["id"], {"memory_processed": 7}, states.RUNNING_MIGRATION,
                            instance_progress=99)
    assert db.migration_get(mig["id"])["memory_processed"] == 6


def test_reads_groups_reads_in_one_transaction(db):
    inst = _instance(db, _flavor(db))
    db.compute_node_upsert("h1", {"hypervisor_hostname": "h1", "hypervisor_type": "fake"})
    with _Commits(db) as commits:
        with db.reads():
            assert db.instance_get(inst["uuid"])["uuid"] == inst["uuid"]
            assert db.compute_node_get_by_host("h1")["host"] == "h1"
            assert db.host_usage("h1")["running_vms"] == 1
            with db.reads():   # nested: the same transaction
                assert db.service_get_by_host("h1") is None
    assert commits.count == 1
    with _Commits(db) as commits:   # and afterwards each read on its own again
        db.instance_get(inst["uuid"])
        db.compute_node_get_by_host("h1")
    assert commits.count == 2


# ------------------------------------------------------------------ claims under load
class _Ratios:
    ram_allocation_ratio = cpu_allocation_ratio = disk_allocation_ratio = 1.0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_a_storm_of_claims_on_one_host_is_served_not_refused(backend, request):
    """32 builds claim one host at once, with room for 20: exactly 20 get it, 12
    are refused for room, and none is refused for having lost the race too often
    (the chaos matrix once saw a move answered 409 "10 claims in a row taken
    first" with a dozen moves heading for one host)."""
    url = request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url",
                                   "mariadb": "mariadb_url"}[backend])
    database = _open(url)
    try:
        flavor = _flavor(database, "tiny", memory_mb=512, vcpus=1, root_gb=1)
        database.compute_node_upsert("busy", {
            "hypervisor_hostname": "busy", "hypervisor_type": "fake",
            "memory_mb": 20 * 512, "vcpus": 64, "local_gb": 1000})
        pending = [_instance(database, flavor, host=None, task_state=states.SCHEDULING)
                   for _ in range(32)]
        need = {"memory_mb": 512, "vcpus": 1, "disk_gb": 1}

        def claim(inst):
            return lambda: database.claim_build(
                inst["uuid"], "busy", need, _Ratios, values={"task_state": states.SPAWNING},
                expected={"task_state": states.SCHEDULING})
        outcomes = _run_together(*[claim(i) for i in pending])
        kinds = collections.Counter(type(o).__name__ for o in outcomes)
        assert kinds == {"dict": 20, "HostCapacityExceeded": 12}, kinds
        assert database.host_usage("busy")["memory_mb"] == 20 * 512
        # Every winning claim bumped the generation once.
        assert database.compute_node_get_by_host("busy")["generation"] == 20
    finally:
        database.engine.dispose()
