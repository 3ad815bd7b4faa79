"""The source's slots (max_concurrent_live_migrations): who waits in 'queued'.

A migration that finds a slot free is handed straight to the executor and
its worker moves it accepted -> queued -> preparing in one call; the others
go to 'queued' first and start in arrival order as slots free up.
"""

import threading
import types

from compute import live_migration
from godwit import exception, states


class _Conductor:
    def __init__(self):
        self.calls = []

    def can_advance(self):
        return True

    def migration_transition(self, ctxt, migration_id, old, new, **kwargs):
        self.calls.append((migration_id, old, new))
        if migration_id == "gone":
            raise exception.ConcurrentUpdate(what="Migration gone", expected=old,
                                             found=states.CANCELLED)


def _live(limit=1):
    manager = types.SimpleNamespace(
        conf=types.SimpleNamespace(max_concurrent_live_migrations=limit),
        conductor=_Conductor())
    live = live_migration.LiveMigrations(manager)
    ran, gates, done = [], {}, threading.Semaphore(0)

    def drive(ctxt, migration_id, dest, migrate_data, from_accepted=False):
        ran.append((migration_id, from_accepted))
        gates.setdefault(migration_id, threading.Event()).wait(10)
        done.release()

    live._drive_source = drive
    return live, manager.conductor, ran, gates, done


def _wait_for(predicate):
    for _ in range(1000):
        if predicate():
            return
        threading.Event().wait(0.005)
    raise AssertionError("condition not reached")


def test_free_slot_goes_straight_to_the_worker_others_queue_in_order():
    live, conductor, ran, gates, done = _live(limit=1)
    try:
        live.start(None, 1, "dest", {})
        _wait_for(lambda: ran == [(1, True)])
        assert conductor.calls == []          # no 'queued' step for it
        live.start(None, 2, "dest", {})
        live.start(None, 3, "dest", {})
        assert conductor.calls == [(2, states.ACCEPTED, states.QUEUED),
                                   (3, states.ACCEPTED, states.QUEUED)]
        assert ran == [(1, True)]             # 2 and 3 wait for the slot
        for mid in (1, 2, 3):
            gates.setdefault(mid, threading.Event()).set()
            assert done.acquire(timeout=10)
        _wait_for(lambda: live.active == 0)
        assert ran == [(1, True), (2, False), (3, False)]
        live.start(None, 4, "dest", {})       # the slot is free again
        gates.setdefault(4, threading.Event()).set()
        assert done.acquire(timeout=10)
        assert ran[-1] == (4, True)
    finally:
        for gate in gates.values():
            gate.set()
        live.shutdown()


def test_migration_that_left_accepted_is_not_queued_and_frees_its_slot():
    live, conductor, ran, gates, done = _live(limit=1)
    try:
        live.start(None, 1, "dest", {})       # holds the only slot
        _wait_for(lambda: ran == [(1, True)])
        live.start(None, "gone", "dest", {})  # accepted -> queued loses the CAS
        assert live.active == 1
        gates.setdefault(1, threading.Event()).set()
        assert done.acquire(timeout=10)
        _wait_for(lambda: live.active == 0)
        assert ran == [(1, True)]
    finally:
        for gate in gates.values():
            gate.set()
        live.shutdown()
