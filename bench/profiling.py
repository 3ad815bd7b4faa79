"""Profile in-process live migrations: ``python -m bench.profiling [--migrations 30]``.

Runs the same in-process cloud as the latency bench (LocalCloud over
``kombu+memory:////`` and SQLite, two fake hosts, the API) and profiles
every thread with yappi (the migration hops across RPC server threads, the
source's live-migration executor and the API's worker threads, which
cProfile, being per-thread, would not follow):

* a CPU-clock pass: where the CPU goes, per function, in Godwit's own code
  (cumulative) and in everything (own time, libraries included);
* a wall-clock pass: cumulative wall time of Godwit's functions, i.e. how
  long each step keeps its thread busy or waiting;
* the steps of each migration from the instance action events (median
  duration per event), the same numbers an operator sees in
  ``os-instance-actions``.

Prints tables; ``--output FILE`` also writes them as JSON.
"""

import argparse
import faulthandler
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

import sqlalchemy as sa

from bench import common, latency

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWN = tuple(os.path.join(REPO, d) + os.sep for d in ("api", "compute", "conductor", "godwit"))


def _short(path):
    return os.path.relpath(path, REPO) if path.startswith(REPO) else \
        path.split("site-packages" + os.sep)[-1]


def _stats(yappi, n, own_only, key, top):
    rows = []
    for s in yappi.get_func_stats():
        if own_only and not s.module.startswith(OWN):
            continue
        rows.append({"function": f"{_short(s.module)}:{s.lineno} {s.name}", "calls": s.ncall,
                     "per_migration_calls": round(s.ncall / n, 1),
                     "cum_ms_per_migration": round(s.ttot * 1000.0 / n, 2),
                     "own_ms_per_migration": round(s.tsub * 1000.0 / n, 2)})
    rows.sort(key=lambda r: r[key], reverse=True)
    return rows[:top]


def _by_package(yappi, n):
    """Own CPU time per migration grouped by library (stdlib modules by name)."""
    import collections
    groups = collections.Counter()
    for s in yappi.get_func_stats():
        path = s.module
        if path.startswith(OWN):
            key = "godwit (api, compute, conductor, godwit)"
        elif "site-packages" + os.sep in path:
            key = path.split("site-packages" + os.sep)[1].split(os.sep)[0].removesuffix(".py")
        elif os.sep + "python3." in path:
            tail = path.split(os.sep + "python3.")[1].split(os.sep, 1)[-1]
            key = "stdlib " + tail.split(os.sep)[0].removesuffix(".py")
        else:
            key = path or "?"
        groups[key] += s.tsub
    return [(k, round(v * 1000.0 / n, 1)) for k, v in groups.most_common(15)]


def _pass(cloud, sid, n, clock):
    import yappi
    yappi.clear_stats()
    yappi.set_clock_type(clock)
    with cloud.poll_engine.connect() as conn:
        yappi.start(builtins=False, profile_threads=True)
        t0 = time.perf_counter()
        samples = common.sequential_migrations(cloud.client, conn, sid,
                                               latency.IN_PROCESS_HOSTS, n, interval=0.002)
        wall = time.perf_counter() - t0
        yappi.stop()
    return samples, wall


def one_timeline(cloud, sid, runs=5):
    """Offsets (ms from just before the POST) of each step of a typical migration.

    Runs ``runs`` unprofiled migrations and returns the timeline of the one
    with the median latency.
    """
    from godwit.db import models
    act, ev = models.InstanceAction.__table__, models.InstanceActionEvent.__table__
    timelines = []
    with cloud.poll_engine.connect() as conn:
        for _ in range(runs):
            since = common.max_action_id(conn)
            t0 = common.utcnow()
            s = common.sequential_migrations(cloud.client, conn, sid, latency.IN_PROCESS_HOSTS,
                                             1)[0]
            time.sleep(0.2)
            rows = conn.execute(
                sa.select(ev.c.event, ev.c.host, ev.c.start_time, ev.c.finish_time)
                .select_from(ev.join(act, act.c.id == ev.c.action_id))
                .where(act.c.id > since).order_by(ev.c.start_time)).all()
            steps = [(round(common.ms_between(t0, r.start_time), 1),
                      round(common.ms_between(t0, r.finish_time), 1), r.event, r.host)
                     for r in rows]
            timelines.append((s["latency_ms"], s["post_ms"], steps))
    timelines.sort(key=lambda t: t[0])
    lat, post, steps = timelines[len(timelines) // 2]
    return {"latency_ms": round(lat, 1), "post_returned_ms": round(post, 1), "steps": steps}


def print_rows(title, rows, key):
    print(f"\n{title}")
    print(f"{'ms/migration':>12} {'own ms':>8} {'calls/mig':>9}  function")
    for r in rows:
        print(f"{r[key]:12.2f} {r['own_ms_per_migration']:8.2f} {r['per_migration_calls']:9.1f}  "
              f"{r['function']}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench.profiling")
    parser.add_argument("--migrations", type=int, default=30)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--output", help="also write the tables as JSON here")
    args = parser.parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)   # kill -USR1: stacks
    try:
        import yappi  # noqa: F401 - installed with oslo.service
    except ImportError:
        print("bench.profiling needs yappi (pip install yappi)", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="godwit-profile-")
    cloud = latency.start_inprocess_cloud(os.path.join(workdir, "inprocess"))
    try:
        sid = common.boot(cloud.client, "bench-profile", latency.IN_PROCESS_HOSTS[0])
        with cloud.poll_engine.connect() as conn:
            common.sequential_migrations(cloud.client, conn, sid, latency.IN_PROCESS_HOSTS, 3)
            since = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM instance_actions")
                                 ).scalar()
        n = args.migrations
        timeline = one_timeline(cloud, sid)   # before the profiler has touched anything
        with cloud.poll_engine.connect() as conn:
            since = common.max_action_id(conn)
        import yappi
        cpu_samples, cpu_wall = _pass(cloud, sid, n, "cpu")
        cpu_own = _stats(yappi, n, True, "cum_ms_per_migration", args.top)
        cpu_all = _stats(yappi, n, False, "own_ms_per_migration", args.top)
        cpu_total = sum(s.tsub for s in yappi.get_func_stats()) * 1000.0 / n
        cpu_packages = _by_package(yappi, n)
        wall_samples, wall_wall = _pass(cloud, sid, n, "wall")
        wall_own = _stats(yappi, n, True, "cum_ms_per_migration", args.top)
        steps = common.event_steps(cloud.poll_engine, since)
    finally:
        latency.stop_inprocess_cloud(cloud)
        shutil.rmtree(workdir, ignore_errors=True)
    med = lambda s: round(statistics.median(x["latency_ms"] for x in s), 1)  # noqa: E731
    print(f"{n} in-process live migrations per pass (LocalCloud, kombu+memory, SQLite); "
          f"median under the profiler: CPU pass {med(cpu_samples)} ms, wall pass "
          f"{med(wall_samples)} ms (the profiler slows everything down)")
    print(f"CPU per migration, all threads, all code: {cpu_total:.1f} ms; by package "
          "(own time, ms per migration):")
    for name, ms in cpu_packages:
        print(f"{ms:10.1f}  {name}")
    print_rows("CPU clock, Godwit's own functions by cumulative time (per migration):",
               cpu_own, "cum_ms_per_migration")
    print_rows("CPU clock, all functions by own time (per migration):", cpu_all,
               "own_ms_per_migration")
    print_rows("Wall clock, Godwit's own functions by cumulative time (per migration, summed "
               "over threads):", wall_own, "cum_ms_per_migration")
    print("\nSteps from the instance action events (median ms, both passes):")
    for ev, ms in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(f"{ms:10.2f}  {ev}")
    print(f"\nTimeline of a median unprofiled migration (ms after the POST was sent); "
          f"POST returned at {timeline['post_returned_ms']} ms, completed at "
          f"{timeline['latency_ms']} ms:")
    for start, end, ev, host in timeline["steps"]:
        print(f"{start:8.1f} -> {end:8.1f}  {ev} ({host})")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"migrations": n, "cpu_ms_per_migration": round(cpu_total, 2),
                       "median_under_profiler_ms": {"cpu": med(cpu_samples),
                                                    "wall": med(wall_samples)},
                       "cpu_own": cpu_own, "cpu_all": cpu_all,
                       "cpu_by_package": cpu_packages, "wall_own": wall_own,
                       "steps_ms": steps, "timeline": timeline,
                       "pass_wall_s": {"cpu": round(cpu_wall, 2), "wall": round(wall_wall, 2)}},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
