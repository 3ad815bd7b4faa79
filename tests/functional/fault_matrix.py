"""The live-migration fault matrix: every host step x every failure mode.

One row per step the flow runs on a host (the fake drivers' fault points),
with where it runs; for each failure mode the expected outcome: the
migration's final status, where the instance is and in what state, and what
is left on the host it no longer lives on (kinds of records). Running
``python -m tests.functional.fault_matrix`` prints the table that
docs/fault-matrix.md publishes; a test checks the two agree.

Modes: ``fail`` - the step raises; ``timeout`` - the step hangs and the RPC
that reached it times out (steps no RPC reaches hang in place and the
watchdog acts); ``crash`` - the agent vanishes at that step (no RPC, no
heartbeats, no clean-up), as if killed.
"""

ALL = ("domains", "filters", "vifs", "volumes")
NET = ("filters", "vifs", "volumes")
MODES = ("fail", "timeout", "crash")

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
    instance host, leftovers on the source, leftovers on the destination)."""
    e = {}
    for mode in MODES:
        for step, _host, _phase in STEPS[:2]:
            e[step, mode] = (400, "error", *ON_SRC, (), ())
        for step, _host, _phase in STEPS[2:6]:
            e[step, mode] = (202, "error", *ON_SRC, (), ())
        e["rollback_live_migration_at_destination", mode] = (202, "error", *ON_SRC, (), ())
        e["post_live_migration_at_destination", mode] = (202, "error", "ERROR", "dst", (), ())
    # A destination that dies half-way through preparing keeps what it made.
    e["vif_plug", "crash"] = (202, "error", *ON_SRC, (), ("volumes",))
    e["apply_instance_filter", "crash"] = (202, "error", *ON_SRC, (), ("vifs", "volumes"))
    for step in ("live_migration", "live_migration_switch"):
        e[step, "fail"] = (202, "failed", *ON_SRC, (), ())
        for mode in ("timeout", "crash"):
            e[step, mode] = (202, "error", "ERROR", "src", (), NET)
    post_left = {"disconnect_volume": {"fail": ("volumes",), "crash": NET},
                 "unfilter_instance": {"fail": ("filters",), "crash": ("filters", "vifs")},
                 "vif_unplug": {"fail": ("vifs",), "crash": ("vifs",)},
                 "post_live_migration_at_source": {"fail": (), "crash": ()},
                 "cleanup_source_files": {"fail": (), "crash": ()}}
    for step, left in post_left.items():
        for mode, kinds in left.items():
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
