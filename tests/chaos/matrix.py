"""The chaos matrix: every phase of a move x which process dies x how, and the outcome.

Each case holds one move in one phase (a fault that delays the step the
phase waits for, scoped to the case's instance), SIGKILLs one process while
the move is there, and starts it again:

* ``restart``: after RESTART_AFTER seconds;
* ``down``: after DOWN_FOR seconds, past every deadline of the phases
  (DEADLINE) and past service_down_time, so the conductor has given up
  waiting for the victim and decided without it.

The victims: the conductor that owns the move, the source's compute agent,
the destination's. Every case then asserts, within SETTLE seconds of the
victim's return: the move reached the expected status (a final one, or
``finished`` waiting for the user, which the test then confirms); the guest
runs on exactly one host and the database says which; nothing of it is left
on the other host (records and files); no host created any record of it
twice; no ``error``.

``python -m tests.chaos.matrix`` prints the tables docs/crash-safety.md
publishes; a test checks the two agree.
"""

from godwit import phases

RESTART_AFTER = 3
DEADLINE = 20
DOWN_FOR = 30
HOLD = 15
SETTLE = 150

VICTIMS = ("conductor", "source", "destination")
MODES = ("restart", "down")

#: Every phase deadline set to DEADLINE (but queued's): the 'down' cases must
#: outlast them in CI time. Everything else (host_step_timeout 10 s,
#: rpc_response_timeout 60 s, the 30 s leases) keeps its default.
OPTIONS = {"DEFAULT": dict({option: DEADLINE for option in sorted({
    p.deadline for t in (phases.LIVE, phases.COLD) for p in t.phases.values()
    if p.deadline and p.status not in ("queued",)})},
    # Cases share hosts: as many moves at once as there are cases (the
    # 'queued' case's source keeps one slot).
    max_concurrent_live_migrations=0)}

# --- live migration -------------------------------------------------------------------
#: phase -> how the case is held there: {role: [fault, ...]} with {sid} for the
#: instance. 'queued' waits behind a slow move from the same source (one slot);
#: 'running' is a slow transfer (the source's bandwidth).
LIVE_HOLDS = {
    "accepted": {"destination": [f"check_can_live_migrate_destination@{{sid}}:delay:{HOLD}"]},
    "queued": {},
    "preparing": {"destination": [f"pre_live_migration@{{sid}}:delay:{HOLD}:once"]},
    "running": {},
    "post-migrating": {"destination": [
        f"post_live_migration_at_destination@{{sid}}:delay:{HOLD}:once"]},
    "rolling-back": {"source": ["live_migration@{sid}:fail"],
                     "destination": [f"rollback_live_migration_at_destination@{{sid}}:delay:"
                                     f"{HOLD}:once"]},
}

_C, _F = "completed", "failed"
#: (phase, victim, mode) -> (status, where the guest runs: source | destination), and why.
LIVE_EXPECTED = {
    # The checks run inside the request; a conductor killed there leaves a move
    # nothing was prepared for: given up. A destination killed in its check
    # never answers (its message died with it): given up. A source killed before
    # the destination asks it finds the question waiting in its queue when it
    # returns (within rpc_response_timeout) and the move goes on.
    ("accepted", "conductor", "restart"): (_F, "source"),
    ("accepted", "conductor", "down"): (_F, "source"),
    ("accepted", "source", "restart"): (_C, "destination"),
    ("accepted", "source", "down"): (_C, "destination"),
    ("accepted", "destination", "restart"): (_F, "source"),
    ("accepted", "destination", "down"): (_F, "source"),
    # Queued behind a slow move: it goes on once the slot frees; a source or a
    # destination still down by then is given up (nothing was moved).
    ("queued", "conductor", "restart"): (_C, "destination"),
    ("queued", "conductor", "down"): (_C, "destination"),
    ("queued", "source", "restart"): (_C, "destination"),
    ("queued", "source", "down"): (_F, "source"),
    ("queued", "destination", "restart"): (_C, "destination"),
    ("queued", "destination", "down"): (_F, "source"),
    ("preparing", "conductor", "restart"): (_C, "destination"),
    ("preparing", "conductor", "down"): (_C, "destination"),
    ("preparing", "source", "restart"): (_C, "destination"),
    ("preparing", "source", "down"): (_F, "source"),
    ("preparing", "destination", "restart"): (_C, "destination"),
    ("preparing", "destination", "down"): (_F, "source"),
    # The job belongs to the hypervisor (here: a process of its own) and finishes
    # without the agent; a destination that stays away past the deadline makes
    # the move 'error' until it returns, then it completes.
    ("running", "conductor", "restart"): (_C, "destination"),
    ("running", "conductor", "down"): (_C, "destination"),
    ("running", "source", "restart"): (_C, "destination"),
    ("running", "source", "down"): (_C, "destination"),
    ("running", "destination", "restart"): (_C, "destination"),
    ("running", "destination", "down"): (_C, "destination"),
    ("post-migrating", "conductor", "restart"): (_C, "destination"),
    ("post-migrating", "conductor", "down"): (_C, "destination"),
    ("post-migrating", "source", "restart"): (_C, "destination"),
    ("post-migrating", "source", "down"): (_C, "destination"),
    ("post-migrating", "destination", "restart"): (_C, "destination"),
    ("post-migrating", "destination", "down"): (_C, "destination"),
    ("rolling-back", "conductor", "restart"): (_F, "source"),
    ("rolling-back", "conductor", "down"): (_F, "source"),
    ("rolling-back", "source", "restart"): (_F, "source"),
    ("rolling-back", "source", "down"): (_F, "source"),
    ("rolling-back", "destination", "restart"): (_F, "source"),
    ("rolling-back", "destination", "down"): (_F, "source"),
}

# --- cold migration and resize --------------------------------------------------------
#: phase -> {role: [fault, ...]}; "conductor" faults are the conductor's own
#: (conductor_faults). 'finished' needs no hold; 'confirming' and 'reverting'
#: are entered by the user's confirm or revert, sent by the test.
COLD_HOLDS = {
    "pre-migrating": {"conductor": [f"advance.prepped@{{sid}}:delay:{HOLD}:once"]},
    "migrating": {"source": [f"disk_transfer@{{sid}}:delay:{HOLD}:once"]},
    "post-migrating": {"destination": [f"finish_migration@{{sid}}:delay:{HOLD}:once"]},
    "finished": {},
    "confirming": {"source": [f"confirm_migration@{{sid}}:delay:{HOLD}:once"]},
    "reverting": {"destination": [f"destroy@{{sid}}:delay:{HOLD}:once"]},
}
#: The user's decision for the phases that need one (sent once the move is finished).
COLD_DECISION = {"finished": "confirmResize", "confirming": "confirmResize",
                 "reverting": "revertResize"}

_FIN, _CONF, _REV = "finished", "confirmed", "reverted"
COLD_EXPECTED = {}
for _phase in ("pre-migrating", "migrating", "post-migrating"):
    for _victim in VICTIMS:
        for _mode in MODES:
            # Forward: a host away past the deadline makes the move 'error'
            # until it returns; then the phase resumes and the move finishes.
            COLD_EXPECTED[_phase, _victim, _mode] = (_FIN, "destination")
for _phase in ("finished", "confirming"):
    for _victim in VICTIMS:
        for _mode in MODES:
            # A source away is cleaned when it returns; the guest runs on the
            # destination meanwhile.
            COLD_EXPECTED[_phase, _victim, _mode] = (_CONF, "destination")
for _victim in VICTIMS:
    for _mode in MODES:
        # Never two copies: the source's is started only once the destination's
        # is known to be gone, so a host away past the deadline means 'error'
        # until it returns.
        COLD_EXPECTED["reverting", _victim, _mode] = (_REV, "source")


def cold_type(victim, mode):
    """Resize in the 'restart' cases, cold migration in the 'down' ones, so that both
    meet every phase. A resize goes where the scheduler sends it, so a case whose
    victim is the destination (a host of its own) is a cold migration to it."""
    return "resize" if mode == "restart" and victim != "destination" else "migration"


def live_cases(victims=VICTIMS, modes=MODES):
    return [("live", phase, victim, mode) for phase in LIVE_HOLDS for victim in victims
            for mode in modes]


def cold_cases(victims=VICTIMS, modes=MODES):
    return [("cold", phase, victim, mode) for phase in COLD_HOLDS for victim in victims
            for mode in modes]


def expected(case):
    kind, phase, victim, mode = case
    return (LIVE_EXPECTED if kind == "live" else COLD_EXPECTED)[phase, victim, mode]


# --- the published tables --------------------------------------------------------------
def _holds(phase):
    if phase.final:
        return "releases its claim" if phase.status == "error" else "releases all"
    groups = {}
    for role, kind, state in phase.holds:
        groups.setdefault(f"{role} {state}", []).append(kind)
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in groups.items()) or "nothing new"


def phase_tables():
    out = []
    for table in (phases.LIVE, phases.COLD):
        out.append(f"### {table.name}\n")
        out.append("| phase | driver | events -> phase | deadline | guest | if it ends in "
                   "error | holds (the ledger) | what it is |")
        out.append("|---|---|---|---|---|---|---|---|")
        for p in table.phases.values():
            events = ", ".join(f"{e} -> {t}" for e, t in p.events.items()) or "(final)"
            if p.status == "error" and table.reopen:
                events = "resume -> " + " / ".join(sorted(table.reopen))
            out.append(f"| {p.status} | {p.driver} | {events} | {p.deadline or '-'} | "
                       f"{p.guest} | {p.on_error or '-'} | {_holds(p)} | {p.doc} |")
        out.append("")
    return "\n".join(out)


def matrix_table():
    out = ["| move | phase | victim | restart after 3 s | down past the deadlines |",
           "|---|---|---|---|---|"]
    for kind, cases in (("live migration", live_cases()), ("cold migration / resize",
                                                            cold_cases())):
        for phase in dict.fromkeys(c[1] for c in cases):
            for victim in VICTIMS:
                cells = []
                for mode in MODES:
                    status, where = expected((cases[0][0], phase, victim, mode))
                    cells.append(f"{status}, guest on {where}")
                out.append(f"| {kind} | {phase} | {victim} | {cells[0]} | {cells[1]} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(phase_tables())
    print(matrix_table(), end="")
