"""Throughput and scale: concurrent live migrations across N agent processes.

One conductor, ``hosts`` godwit-compute processes and godwit-api over
RabbitMQ and a fresh PostgreSQL database (:class:`bench.common.Deployment`),
``max_concurrent_live_migrations = 1`` on every agent (the default, set
explicitly). Two servers are booted per host (``availability_zone
nova:<host>``); then one client thread per server (2 × hosts in flight)
live-migrates its server to a random other host through the REST API
(``POST /servers/<id>/action`` os-migrateLive with a requested host), waits
for it to finish, and goes again, until the wanted number of migrations has
been started. A single watcher thread polls the migrations table (every
5 ms) for the finished rows and, in the same loop, samples how many
migrations each source host has in 'preparing'/'running'.

Latency of a migration is from a UTC timestamp taken just before its POST to
its row's ``updated_at`` at 'completed'; migrations/s is the number completed
divided by the time from the first POST to the last completion.

The concurrency limit is checked twice: by the sampler (no source host ever
seen with two migrations in preparing/running) and from the instance action
events (per source host, the spans from conductor_pre_live_migration's start to
compute_live_migration's end, which lie inside preparing..running, never
overlap).
"""

import collections
import random
import threading
import time

import sqlalchemy as sa

from bench import common
from godwit import states
from godwit.db import models

MIG = models.Migration.__table__
ACTIVE_STATES = (states.PREPARING, states.RUNNING_MIGRATION)


class Watcher(threading.Thread):
    """Finds finished migrations for waiting threads; samples the per-host limit."""

    def __init__(self, engine, interval=0.005):
        super().__init__(name="bench-watcher", daemon=True)
        self.engine = engine
        self.interval = interval
        self.lock = threading.Lock()
        self.waiting = {}
        self.stopping = threading.Event()
        self.samples = 0
        self.violations = []
        self.max_active = 0
        self.max_queued = 0
        self.error = None

    def wait(self, instance_uuid, after_id, timeout=180):
        slot = {"after": after_id, "event": threading.Event(), "row": None}
        with self.lock:
            self.waiting[instance_uuid] = slot
        if not slot["event"].wait(timeout):
            with self.lock:
                self.waiting.pop(instance_uuid, None)
            raise TimeoutError(f"migration of {instance_uuid} after id {after_id} not final "
                               f"after {timeout}s ({self.error or 'no watcher error'})")
        return slot["row"]

    def stop(self):
        self.stopping.set()
        self.join(10)

    def run(self):
        final = sa.select(MIG.c.id, MIG.c.instance_uuid, MIG.c.status, MIG.c.updated_at).where(
            MIG.c.instance_uuid.in_(sa.bindparam("ids", expanding=True)),
            MIG.c.id > sa.bindparam("after"), MIG.c.status.in_(common.FINAL))
        load = (sa.select(MIG.c.source_compute, MIG.c.status, sa.func.count())
                .where(MIG.c.status.in_(ACTIVE_STATES + (states.QUEUED,)))
                .group_by(MIG.c.source_compute, MIG.c.status))
        try:
            with self.engine.connect() as conn:
                while not self.stopping.is_set():
                    with self.lock:
                        items = dict(self.waiting)
                    if items:
                        after = min(s["after"] for s in items.values())
                        for row in conn.execute(final, {"ids": list(items), "after": after}):
                            slot = items.get(row.instance_uuid)
                            if slot is not None and row.id > slot["after"] \
                                    and slot["row"] is None:
                                slot["row"] = row
                                with self.lock:
                                    if self.waiting.get(row.instance_uuid) is slot:
                                        del self.waiting[row.instance_uuid]
                                slot["event"].set()
                    active = collections.Counter()
                    for host, status, count in conn.execute(load):
                        if status == states.QUEUED:
                            self.max_queued = max(self.max_queued, count)
                        else:
                            active[host] += count
                    self.samples += 1
                    if active:
                        top = max(active.values())
                        self.max_active = max(self.max_active, top)
                        if top > 1:
                            self.violations.append(
                                {h: n for h, n in active.items() if n > 1})
                    time.sleep(self.interval)
        except Exception as e:  # noqa: BLE001 - reported through wait()
            self.error = repr(e)


def event_overlaps(engine):
    """Overlapping preparing..running spans per source host, from action events
    (the conductor records the preparation, the source the transfer)."""
    q = sa.text(
        "SELECT a.request_id, e.event, e.host, e.start_time, e.finish_time "
        "FROM instance_action_events e JOIN instance_actions a ON a.id = e.action_id "
        "WHERE a.action = :action AND e.event IN "
        "('conductor_pre_live_migration', 'compute_live_migration')")
    spans = collections.defaultdict(dict)
    with engine.connect() as c:
        for req, ev, host, start, finish in c.execute(q, {"action": states.ACTION_LIVE_MIGRATION}):
            spans[req][ev] = (host, start, finish)
    by_host = collections.defaultdict(list)
    for evs in spans.values():
        if "conductor_pre_live_migration" in evs and "compute_live_migration" in evs:
            _, start, _ = evs["conductor_pre_live_migration"]
            host, _, end = evs["compute_live_migration"]
            by_host[host].append((start, end))
    overlaps, n = 0, 0
    for intervals in by_host.values():
        intervals.sort()
        last_end = None
        for start, end in intervals:
            n += 1
            if last_end is not None and start < last_end:
                overlaps += 1
            last_end = end if last_end is None else max(last_end, end)
    return {"spans": n, "overlaps": overlaps}


def run_pool(dep, watcher, servers, location, total, seed):
    """Start ``total`` migrations from one thread per server; returns the samples."""
    from godwit.testing import APIError, Client
    lock = threading.Lock()
    budget = [total]
    samples, errors = [], []
    with dep.engine.connect() as c:
        start_id = c.execute(sa.select(sa.func.coalesce(sa.func.max(MIG.c.id), 0))).scalar()

    def take():
        with lock:
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            return True

    def worker(index, sid):
        rng = random.Random(seed * 1000 + index)
        client = Client(dep.api_url)
        after = start_id
        try:
            while take():
                src = location[sid]
                dest = rng.choice([h for h in dep.hosts if h != src])
                t0 = common.utcnow()
                p0 = time.perf_counter()
                try:
                    client.live_migrate(sid, host=dest)
                except APIError as e:
                    with lock:
                        errors.append(f"POST {sid} -> {dest}: {e}")
                    continue
                post_ms = (time.perf_counter() - p0) * 1000.0
                row = watcher.wait(sid, after)
                after = row.id
                with lock:
                    samples.append({"t0": t0, "end": row.updated_at, "status": row.status,
                                    "post_ms": post_ms, "source": src,
                                    "latency_ms": common.ms_between(t0, row.updated_at)})
                if row.status == states.COMPLETED:
                    location[sid] = dest
        except Exception as e:  # noqa: BLE001 - reported in the results
            with lock:
                errors.append(f"worker {index}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i, sid), name=f"bench-client-{i}",
                                daemon=True) for i, sid in enumerate(servers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return samples, errors


def run(workdir, hosts, migrations, servers_per_host=2, seed=1):
    dep = common.Deployment(f"throughput-{hosts}", workdir, computes=hosts,
                            host_prefix=f"tp{hosts}-",
                            compute_options={"max_concurrent_live_migrations": 1})
    watcher = None
    t_start = time.perf_counter()
    try:
        dep.start(timeout=240)
        startup_s = round(time.perf_counter() - t_start, 1)
        from godwit.testing import Client
        client = Client(dep.api_url)
        servers, location = [], {}
        for i in range(servers_per_host):
            for h in dep.hosts:
                sid = client.create_server(f"tp-{h}-{i}", host=h, wait=False)
                servers.append(sid)
                location[sid] = h
        with dep.engine.connect() as conn:
            common.wait_active(conn, servers, timeout=180)
        # What the idle services cost (heartbeats, AMQP heartbeats, consumer loops).
        idle = common.CpuMeter({"conductor": lambda: [dep.pid("conductor")],
                                "agents": lambda: [dep.pid(h) for h in dep.hosts]})
        idle.start()
        time.sleep(2.0)
        idle_cpu = idle.stop()
        watcher = Watcher(dep.engine)
        watcher.start()
        # Warm-up: one round of moves, not counted.
        run_pool(dep, watcher, servers, location, hosts, seed)
        groups = {"conductor": lambda: [dep.pid("conductor")],
                  "api": lambda: [dep.pid("api")],
                  "agents": lambda: [dep.pid(h) for h in dep.hosts],
                  "postgresql": lambda: common.pids_named("postgres"),
                  "rabbitmq": lambda: common.pids_named("beam.smp"),
                  "bench": lambda: [__import__("os").getpid()]}
        meter = common.CpuMeter(groups)
        meter.start()
        samples, errors = run_pool(dep, watcher, servers, location, migrations, seed + 1)
        cpu = meter.stop()
        time.sleep(1.0)   # the last event casts
        watcher.stop()
        overlaps = event_overlaps(dep.engine)
    except BaseException:
        print(f"bench: throughput at {hosts} agents failed; service logs in {dep.dir}",
              flush=True)
        print(dep.logs(), flush=True)
        raise
    finally:
        if watcher is not None and watcher.is_alive():
            watcher.stop()
        dep.stop()
    done = [s for s in samples if s["status"] == states.COMPLETED]
    if done:
        span = (max(s["end"] for s in done) - min(s["t0"] for s in samples)).total_seconds()
    else:
        span = None
    limit_held = not watcher.violations and overlaps["overlaps"] == 0
    return {
        "hosts": hosts, "servers": len(servers), "in_flight": len(servers),
        "started": len(samples), "completed": len(done),
        "not_completed": collections.Counter(s["status"] for s in samples
                                             if s["status"] != states.COMPLETED),
        "errors": errors[:10], "error_count": len(errors),
        "span_s": round(span, 3) if span else None,
        "per_s": round(len(done) / span, 2) if span else None,
        "latency": common.summarize([s["latency_ms"] for s in done]),
        "post": common.summarize([s["post_ms"] for s in samples]),
        "limit_held": limit_held,
        "limit_check": {"samples": watcher.samples, "sampled_violations": len(watcher.violations),
                        "violation_examples": watcher.violations[:3],
                        "max_active_per_source": watcher.max_active,
                        "max_queued_per_source": watcher.max_queued,
                        "event_spans": overlaps["spans"],
                        "event_overlaps": overlaps["overlaps"]},
        "cpu": cpu, "idle_cpu": idle_cpu, "startup_s": startup_s,
        "cpu_ms_per_migration": {k: round(v * 1000.0 / len(done), 1) if done else None
                                 for k, v in cpu["cpu_s"].items()},
        "entry": "REST API (POST /servers/{id}/action os-migrateLive, requested host)",
    }
