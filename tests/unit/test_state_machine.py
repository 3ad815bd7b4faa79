"""The migration state machine: the phase tables, ``check`` and ``is_reached``."""

import pytest

from conductor.flows import cold, live
from godwit import conf as godwit_conf
from godwit import exception, phases, state_machine, states
from godwit.state_machine import COLD_TRANSITIONS, LIVE_TRANSITIONS

FINAL = phases.FINAL
IN_PROGRESS = phases.IN_PROGRESS

TABLES = {"live": (states.LIVE_MIGRATION, LIVE_TRANSITIONS),
          "cold": (states.COLD_MIGRATION, COLD_TRANSITIONS)}
ALL_TYPES = (states.LIVE_MIGRATION, states.COLD_MIGRATION, states.RESIZE, states.EVACUATION)


def _edges(table):
    return [(old, new) for old, targets in table.items() for new in sorted(targets)]


def _statuses(table):
    return set(table) | {new for targets in table.values() for new in targets}


def _edge_params():
    params = []
    for mtype, table in ((states.LIVE_MIGRATION, LIVE_TRANSITIONS),
                         (states.COLD_MIGRATION, COLD_TRANSITIONS),
                         (states.RESIZE, COLD_TRANSITIONS)):
        params += [pytest.param(mtype, old, new, id=f"{mtype}:{old}->{new}")
                   for old, new in _edges(table)]
    return params


@pytest.mark.parametrize("mtype, old, new", _edge_params())
def test_every_table_edge_is_allowed(mtype, old, new):
    assert state_machine.allowed(mtype, old, new)
    state_machine.check(mtype, old, new)  # does not raise


@pytest.mark.parametrize("mtype", ALL_TYPES)
@pytest.mark.parametrize("final", sorted(FINAL))
def test_final_statuses_have_no_outgoing_edges_but_reopening(mtype, final):
    every_status = sorted(FINAL | IN_PROGRESS)
    targets = {new for new in every_status if state_machine.allowed(mtype, final, new)}
    table = phases.table(mtype)
    if final == states.ERROR_MIGRATION and table is not None:
        # An unresolved error resumes only in a phase whose 'unresolved' led to it.
        assert targets == set(table.reopen)
        for status in table.reopen:
            assert table[status].events[phases.UNRESOLVED] == states.ERROR_MIGRATION
    else:
        assert not targets


@pytest.mark.parametrize("table", [phases.LIVE, phases.COLD], ids=["live", "cold"])
def test_each_phase_says_who_drives_it_its_deadline_and_where_the_guest_is(table):
    conf = godwit_conf.parse_args([])
    for phase in table.phases.values():
        assert phase.doc
        if phase.final:
            assert not phase.events
            continue
        assert phase.driver in ("conductor", "source", "destination", "user"), phase
        assert phase.guest in ("source", "destination", "either"), phase
        assert phase.on_error in (None, states.ERROR), phase
        if phase.deadline is not None:
            assert isinstance(getattr(conf, phase.deadline), int), phase.deadline
        else:
            assert phase.driver == "user", phase
        for event, target in phase.events.items():
            assert target in table, (phase.status, event, target)


@pytest.mark.parametrize("table,flow", [(phases.LIVE, live.LiveFlow),
                                        (phases.COLD, cold.ColdFlow)], ids=["live", "cold"])
def test_every_phase_in_progress_has_a_handler(table, flow):
    for status in table.in_progress:
        assert callable(getattr(flow, status.replace("-", "_"), None)), status


def test_events_name_edges_and_resume_names_a_phase():
    assert phases.target(states.LIVE_MIGRATION, states.PREPARING, "prepared") == \
        states.RUNNING_MIGRATION
    assert phases.target(states.LIVE_MIGRATION, states.PREPARING, "switched") is None
    assert phases.target(states.LIVE_MIGRATION, states.ERROR_MIGRATION,
                         phases.RESUME + states.RUNNING_MIGRATION) == states.RUNNING_MIGRATION
    assert phases.target(states.LIVE_MIGRATION, states.ERROR_MIGRATION,
                         phases.RESUME + states.QUEUED) is None
    assert phases.target(states.RESIZE, states.FINISHED, "confirm") == states.CONFIRMING
    assert phases.target("no-such-type", states.ACCEPTED, "checked") is None


@pytest.mark.parametrize("mtype, old, new", [
    (states.LIVE_MIGRATION, states.POST_MIGRATING, states.FAILED),      # past switch-over
    (states.LIVE_MIGRATION, states.POST_MIGRATING, states.CANCELLED),
    (states.LIVE_MIGRATION, states.POST_MIGRATING, states.ROLLING_BACK),
    (states.LIVE_MIGRATION, states.RUNNING_MIGRATION, states.FAILED),    # via rolling-back
    (states.LIVE_MIGRATION, states.ERROR_MIGRATION, states.QUEUED),      # not reopenable
    (states.LIVE_MIGRATION, states.ACCEPTED, states.RUNNING_MIGRATION),  # skips steps
    (states.LIVE_MIGRATION, states.QUEUED, states.ACCEPTED),            # backwards
    (states.LIVE_MIGRATION, states.COMPLETED, states.ERROR_MIGRATION),  # out of a final
    (states.LIVE_MIGRATION, states.FAILED, states.QUEUED),
    (states.LIVE_MIGRATION, states.RUNNING_MIGRATION, states.FINISHED),  # cold-only status
    (states.COLD_MIGRATION, states.ACCEPTED, states.QUEUED),            # live-only status
    (states.COLD_MIGRATION, states.FINISHED, states.FINISHED),          # self loop
    (states.RESIZE, states.CONFIRMING, states.REVERTING),
    (states.RESIZE, states.REVERTED, states.FINISHED),
    (states.EVACUATION, states.ACCEPTED, states.ERROR_MIGRATION),       # type has no table
    ("no-such-type", states.ACCEPTED, states.QUEUED),
])
def test_forbidden_edges_raise(mtype, old, new):
    assert not state_machine.allowed(mtype, old, new)
    with pytest.raises(exception.InvalidMigrationTransition) as info:
        state_machine.check(mtype, old, new)
    assert info.value.code == 409
    assert old in str(info.value) and new in str(info.value)


def test_resize_and_cold_migration_share_a_table():
    assert state_machine.TRANSITIONS[states.RESIZE] is state_machine.TRANSITIONS[
        states.COLD_MIGRATION]


@pytest.mark.parametrize("mtype, current, target, expected", [
    # same status
    (states.LIVE_MIGRATION, states.QUEUED, states.QUEUED, True),
    (states.COLD_MIGRATION, states.FINISHED, states.FINISHED, True),
    (states.LIVE_MIGRATION, states.FAILED, states.FAILED, True),
    # beyond on the forward path
    (states.LIVE_MIGRATION, states.RUNNING_MIGRATION, states.QUEUED, True),
    (states.LIVE_MIGRATION, states.COMPLETED, states.POST_MIGRATING, True),
    (states.LIVE_MIGRATION, states.COMPLETED, states.ACCEPTED, True),
    (states.COLD_MIGRATION, states.FINISHED, states.PRE_MIGRATING, True),
    (states.RESIZE, states.POST_MIGRATING, states.MIGRATING_COLD, True),
    # not yet reached
    (states.LIVE_MIGRATION, states.QUEUED, states.RUNNING_MIGRATION, False),
    (states.LIVE_MIGRATION, states.POST_MIGRATING, states.COMPLETED, False),
    (states.RESIZE, states.PRE_MIGRATING, states.FINISHED, False),
    # a rolled-back migration has not reached any later forward status
    (states.LIVE_MIGRATION, states.FAILED, states.RUNNING_MIGRATION, False),
    (states.LIVE_MIGRATION, states.CANCELLED, states.COMPLETED, False),
    (states.LIVE_MIGRATION, states.ERROR_MIGRATION, states.QUEUED, False),
    (states.RESIZE, states.ERROR_MIGRATION, states.FINISHED, False),
    # the live order is not used for cold migrations (queued is live-only)
    (states.COLD_MIGRATION, states.FINISHED, states.QUEUED, False),
])
def test_is_reached(mtype, current, target, expected):
    assert state_machine.is_reached(mtype, current, target) is expected


@pytest.mark.parametrize("current", [states.CONFIRMING, states.CONFIRMED, states.REVERTING,
                                     states.REVERTED])
def test_is_reached_sees_confirm_and_revert_beyond_finished(current):
    assert state_machine.is_reached(states.RESIZE, current, states.FINISHED)
    assert state_machine.is_reached(states.RESIZE, current, states.ACCEPTED)


def test_is_reached_does_not_cross_branches():
    assert not state_machine.is_reached(states.RESIZE, states.CONFIRMED, states.REVERTING)
    assert not state_machine.is_reached(states.RESIZE, states.REVERTED, states.CONFIRMING)


def test_is_final_matches_the_tables():
    for status in FINAL:
        assert state_machine.is_final(status)
    for status in IN_PROGRESS:
        assert not state_machine.is_final(status)


def _defined_status_constants():
    return {value for name, value in vars(states).items()
            if name.isupper() and isinstance(value, str)}


@pytest.mark.parametrize("name", TABLES)
def test_table_statuses_are_defined_constants(name):
    _mtype, table = TABLES[name]
    stray = _statuses(table) - _defined_status_constants()
    assert not stray, f"statuses not defined in godwit.states: {stray}"
    # ... and each is classified as exactly one of final / in progress.
    for status in _statuses(table):
        assert (status in FINAL) != (status in IN_PROGRESS), status


def test_final_and_in_progress_are_disjoint():
    assert not FINAL & IN_PROGRESS


@pytest.mark.parametrize("name", TABLES)
def test_every_non_final_status_can_reach_a_final_one(name):
    _mtype, table = TABLES[name]
    for start in _statuses(table) - FINAL:
        seen, todo = {start}, [start]
        while todo:
            for nxt in table.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen & FINAL, f"{name}: {start} cannot reach a final status"


@pytest.mark.parametrize("name", TABLES)
def test_every_status_is_reachable_from_accepted(name):
    _mtype, table = TABLES[name]
    seen, todo = {states.ACCEPTED}, [states.ACCEPTED]
    while todo:
        for nxt in table.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == _statuses(table)


@pytest.mark.parametrize("mtype, order", [
    (states.LIVE_MIGRATION, path) for path in state_machine.LIVE_PATHS] + [
    (states.COLD_MIGRATION, path) for path in state_machine.COLD_PATHS])
def test_forward_order_follows_allowed_edges(mtype, order):
    for old, new in zip(order, order[1:]):
        assert state_machine.allowed(mtype, old, new), (old, new)
