"""The live-migration fault matrix: every host step x every way it fails.

One row per step the flow runs on a host (the fake drivers' fault points),
with where it runs; for each failure mode the expected outcome: the
migration's final status, where the instance is and in what state, and what
is left on the host it no longer lives on (kinds of records). Running
``python -m tests.functional.fault_matrix`` prints the table that
docs/fault-matrix.md publishes; a test checks the two agree.

Modes: ``fail`` - the step raises; ``slow`` - the step hangs for longer than
the conductor waits for one answer (``host_step_timeout``), so the conductor
asks again and joins the step still running, which then fails. A process
that dies, a broker that restarts, a conductor that is killed: those are the
chaos suite's (tests/chaos, docs/crash-safety.md), with real processes.
"""

ALL = ("domains", "filters", "vifs", "volumes")
MODES = ("fail", "slow")

# step, host it runs on, phase
STEPS = [
    ("check_can_live_migrate_destination", "dst", "checks"),
    ("check_can_live_migrate_source", "src", "checks"),
    ("pre_live_migration", "dst", "preparing"),
    ("connect_volume", "dst", "preparing"),
    ("vif_plug", "dst", "preparing"),
    ("apply_instance_filter", "dst", "preparing"),
    ("live_migration", "src", "running"),
    ("live_migration_switch", "src", "running"),
    ("disconnect_volume", "src", "post-migrating"),
    ("unfilter_instance", "src", "post-migrating"),
    ("vif_unplug", "src", "post-migrating"),
    ("post_live_migration_at_source", "src", "post-migrating"),
    ("post_live_migration_at_destination", "dst", "post-migrating"),
    ("cleanup_source_files", "src", "post-migrating"),
    ("rollback_live_migration_at_destination", "dst", "rollback"),
]

ON_SRC = ("ACTIVE", "src")
ON_DST = ("ACTIVE", "dst")


def _expected():
    """(step, mode) -> (API status, migration status, instance status,
    instance host, leftovers on the source, leftovers on the destination).

    Both modes end alike: a slow step is waited for, then its failure handled.
    """
    e = {}
    for mode in MODES:
        # A check that refuses ends the move 'error' (a refusal); one that does not
        # answer in time refused nothing, and the move is given up: 'failed'.
        for step, _host, _phase in STEPS[:2]:
            e[step, mode] = (400, "error" if mode == "fail" else "failed", *ON_SRC, (), ())
        # Anything before the switch-over rolls back, the guest safe on its source.
        for step, _host, _phase in STEPS[2:8]:
            e[step, mode] = (202, "failed", *ON_SRC, (), ())
        # A rollback that fails says so: 'error', the guest still on its source.
        e["rollback_live_migration_at_destination", mode] = (202, "error", *ON_SRC, (), ())
        e["post_live_migration_at_destination", mode] = (202, "error", "ERROR", "dst", (), ())
        # After it, the guest runs on the destination; a source step that fails
        # leaves what it was removing, and the message names it.
        post_left = {"disconnect_volume": ("volumes",), "unfilter_instance": ("filters",),
                     "vif_unplug": ("vifs",), "post_live_migration_at_source": (),
                     "cleanup_source_files": ()}
        for step, kinds in post_left.items():
            e[step, mode] = (202, "error", *ON_DST, kinds, ())
    return e


EXPECTED = _expected()
CASES = [(step, host, phase, mode) for step, host, phase in STEPS for mode in MODES
         if (step, mode) in EXPECTED]


def markdown():
    lines = ["| step (host) | phase | mode | API | migration | instance |"
             " left on source | left on destination |",
             "|---|---|---|---|---|---|---|---|"]
    names = {"src": "source", "dst": "destination"}
    for step, host, phase, mode in CASES:
        api, status, vm, where, src_left, dst_left = EXPECTED[step, mode]
        lines.append(f"| {step} ({names[host]}) | {phase} | {mode} | {api} | {status} "
                     f"| {vm} on {names[where]} | {', '.join(src_left) or '-'} "
                     f"| {', '.join(dst_left) or '-'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
