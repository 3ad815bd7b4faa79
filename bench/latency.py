"""Live-migration latency: in one process, and as separate processes, with its floor.

In-process (:func:`inprocess`): godwit-all's LocalCloud over
``kombu+memory:////`` and SQLite, two fake hosts and the API; after a
warm-up one migration runs under :class:`bench.counting.MigrationCounter`
(the RPC and database counts used for the floor), then the timed ones.

Multi-process (:func:`multiprocess`): conductor, two agents and the API as
processes over RabbitMQ and PostgreSQL (:class:`bench.common.Deployment`);
sequential migrations back and forth and, interleaved with them on the same
services (:class:`FloorProbe`), the floor's unit costs: a no-op RPC call
(``ComputeAgentClient.ping`` to an agent), a cast (client side: until the broker has
the message), and a single-row UPDATE transaction on the same PostgreSQL.
"""

import os
import sys
import time

import sqlalchemy as sa

from bench import common
from bench.counting import MigrationCounter

IN_PROCESS_HOSTS = ("compute1", "compute2")
IN_PROCESS_TRANSPORT = "kombu+memory:////"
# Step events are written after the step, when no move is being driven, at
# most a quarter of a second late (godwit.events.Deferred): the counts and
# the floor's samples wait this long after a move, so that they see neither
# the previous move's events nor each other's.
EVENTS_SETTLE_S = 0.5


def _inprocess_conf(state_path):
    from godwit.cmd import common as cmd_common
    # Heartbeats every hour: no periodic RPC or commit can fall into the
    # counting window (services count as up from their registration).
    defaults = {"transport_url": (IN_PROCESS_TRANSPORT, None),
                "state_path": (state_path, None), "report_interval": (3600, None),
                "service_down_time": (7200, None), "rpc_response_timeout": (30, None),
                "debug": (False, None),
                "log_file": (os.path.join(state_path, "godwit.log"), None)}
    conf = cmd_common.init([], prog="godwit-bench", defaults=defaults)
    sys.excepthook = sys.__excepthook__   # oslo.log would send tracebacks to the log file
    return conf


def start_inprocess_cloud(state_path):
    from godwit.cmd.all import LocalCloud
    from godwit.testing import Client
    os.makedirs(state_path, exist_ok=True)
    conf = _inprocess_conf(state_path)
    cloud = LocalCloud(conf, hosts=IN_PROCESS_HOSTS, api_port=0)
    url = getattr(cloud, "transport_url", None) or conf.transport_url
    if url != IN_PROCESS_TRANSPORT or not conf.database.connection.startswith("sqlite"):
        raise RuntimeError(f"in-process cloud would use {url} and {conf.database.connection}, "
                           f"not {IN_PROCESS_TRANSPORT} and SQLite")
    cloud.poll_engine = sa.create_engine(conf.database.connection,
                                         isolation_level="AUTOCOMMIT")
    try:
        cloud.start()
        cloud.client = Client(cloud.api_url)
    except BaseException:
        stop_inprocess_cloud(cloud)   # whatever part of it did start
        raise
    return cloud


def stop_inprocess_cloud(cloud):
    from godwit import rpc
    from godwit.db import api as db_api
    try:
        cloud.stop()
    finally:
        rpc.cleanup()
        cloud.poll_engine.dispose()
        db = db_api._databases.pop(cloud.conf.database.connection, None)
        if db is not None:
            db.engine.dispose()


def inprocess(workdir, n, warm=3):
    """Single-process median/p95 and the per-migration RPC/DB counts."""
    cloud = start_inprocess_cloud(os.path.join(workdir, "inprocess"))
    try:
        sid = common.boot(cloud.client, "bench-inproc", IN_PROCESS_HOSTS[0])
        with cloud.poll_engine.connect() as conn:
            common.sequential_migrations(cloud.client, conn, sid, IN_PROCESS_HOSTS, warm)
            # The warm-up's step events are written after its moves completed
            # (godwit.events.Deferred, at most EVENTS_SETTLE_S late): not in the count.
            time.sleep(EVENTS_SETTLE_S)
            journal_writes = _journal_writes(cloud)
            with MigrationCounter(cloud.db.engine) as counter:
                counted = common.sequential_migrations(cloud.client, conn, sid,
                                                       IN_PROCESS_HOSTS, 1)
                time.sleep(EVENTS_SETTLE_S)   # its own step events are counted
            journal_writes = _journal_writes(cloud) - journal_writes
            since = common.max_action_id(conn)
            meter = common.CpuMeter({"bench": lambda: [os.getpid()]})
            meter.start()
            samples = common.sequential_migrations(cloud.client, conn, sid, IN_PROCESS_HOSTS,
                                                   n)
            cpu = meter.stop()
        steps = common.event_steps(cloud.poll_engine, since)
    finally:
        stop_inprocess_cloud(cloud)
    lat = [s["latency_ms"] for s in samples]
    counts = dict(counter.result(), journal_writes=journal_writes)
    return {"latency": common.summarize(lat), "post": common.summarize(
        [s["post_ms"] for s in samples]), "counts": counts,
        "counted_migration_ms": round(counted[0]["latency_ms"], 3), "cpu": cpu,
        "steps_ms": steps}


def _journal_writes(cloud):
    """Write transactions on the hosts' step journals (compute.journal) so far."""
    return sum(svc.manager.journal.writes for svc in cloud.computes.values())


class FloorProbe:
    """The floor's unit costs, sampled a few at a time between the migrations.

    Interleaved with the timed migrations so that both see the same machine
    (other processes, PostgreSQL's WAL flushes ...): a no-op RPC call
    (``ComputeAgentClient.ping`` to an agent), a cast (client side: until the broker
    has taken the message), and a single-row UPDATE on the same PostgreSQL in
    its own transaction, raw (plain engine) and through Godwit's
    ``Database.migration_update`` (pool pre-ping, UPDATE, re-read), and one
    write to a host step journal (:mod:`compute.journal`, SQLite on the
    agents' disk) as the agents make it.
    """

    def __init__(self, dep, host):
        from compute import rpcapi as compute_rpcapi
        from godwit import context
        from godwit.db import api as db_api
        self.host = host
        self.agent = compute_rpcapi.ComputeAgentClient(dep.transport(), timeout=30)
        self.prepared = self.agent.client.prepare(server=host)
        self.ctxt = context.get_admin_context()
        self.raw_engine = sa.create_engine(dep.db.url, pool_size=2)
        self.update = sa.text("UPDATE migrations SET memory_processed = :v WHERE id = :id")
        self.db = db_api.Database(dep.db.url)
        from compute import journal
        self.journal = journal.Journal(os.path.join(dep.dir, "probe-journal.sqlite"), host)
        # A second single-row UPDATE in the same transaction: what one more
        # write statement costs inside a transaction that writes anyway (the
        # ledger's and the timeline's rows, written with each phase change).
        self.update2 = sa.text("UPDATE migrations SET memory_remaining = :v WHERE id = :id")
        self.calls, self.casts, self.raw, self.godwit, self.jwrites = [], [], [], [], []
        self.raw2 = []
        self.value = 0  # what the next probe write writes (a new value each time)

    def sample(self, migration_id, k, record=True):
        time.sleep(EVENTS_SETTLE_S)   # the move's step events are written by now

        def timed(fn, into):
            t0 = time.perf_counter()
            fn()
            if record:
                into.append((time.perf_counter() - t0) * 1000.0)
        for _ in range(k):
            timed(lambda: self.agent.ping(self.ctxt, self.host), self.calls)
        for _ in range(k):
            timed(lambda: self.prepared.cast(self.ctxt, "ping"), self.casts)
        self.agent.ping(self.ctxt, self.host)   # the agent has taken the casts by now
        def raw():
            with self.raw_engine.begin() as c:
                c.execute(self.update, {"v": self.value, "id": migration_id})

        def raw2():
            with self.raw_engine.begin() as c:
                c.execute(self.update, {"v": self.value, "id": migration_id})
                c.execute(self.update2, {"v": self.value, "id": migration_id})
        # Alternated, so that both see the same moments of the database.
        for _ in range(k):
            self.value += 1
            timed(raw, self.raw)
            self.value += 1
            timed(raw2, self.raw2)
        for _ in range(k):
            self.value += 1
            timed(lambda: self.db.migration_update(migration_id, {"memory_processed": self.value}),
                  self.godwit)
        for _ in range(k):
            self.value += 1
            timed(lambda: self.journal.record(migration_id, "probe", None, self.value),
                  self.jwrites)

    def close(self):
        self.raw_engine.dispose()
        self.db.engine.dispose()
        self.journal.close()

    def result(self):
        return ({"call": common.summarize(self.calls), "cast": common.summarize(self.casts)},
                {"raw_update": common.summarize(self.raw),
                 "raw_update_twice": common.summarize(self.raw2),
                 "migration_update": common.summarize(self.godwit),
                 "journal_write": common.summarize(self.jwrites)})


def multiprocess(workdir, n, warm, ping_n, db_n, after=None):
    """Latency over RabbitMQ + PostgreSQL and the floor's unit costs.

    ``after(dep, client, sid)`` runs against the same deployment before it is
    torn down (the memory measurements use it) and its result is returned too.
    """
    from godwit.testing import Client
    dep = common.Deployment("latency", workdir, computes=2, host_prefix="lat")
    try:
        dep.start()
        time.sleep(1.0)
        a, b = dep.hosts
        rss_startup = {h: common.rss_mb(dep.pid(h)) for h in dep.hosts}
        client = Client(dep.api_url)
        sid = common.boot(client, "bench-lat", a)
        probe = FloorProbe(dep, b)
        per_move = max(1, -(-max(ping_n, db_n) // n))   # ceil: >= ping_n/db_n samples
        with dep.engine.connect() as conn:
            common.sequential_migrations(client, conn, sid, dep.hosts, warm,
                                         between=lambda mid: probe.sample(mid, 5, False))
            since = common.max_action_id(conn)
            meter = common.CpuMeter(
                {"services": lambda: [p.pid for p, _ in dep.procs.values()],
                 "postgresql": lambda: common.pids_named("postgres"),
                 "rabbitmq": lambda: common.pids_named("beam.smp"),
                 "bench": lambda: [os.getpid()]})
            meter.start()
            samples = common.sequential_migrations(
                client, conn, sid, dep.hosts, n,
                between=lambda mid: probe.sample(mid, per_move))
            cpu = meter.stop()   # includes the probes
        probe.close()
        rpc_costs, db_costs = probe.result()
        time.sleep(0.5)   # the last event casts
        steps = common.event_steps(dep.engine, since)
        time.sleep(1.0)
        rss_idle = {h: common.rss_mb(dep.pid(h)) for h in dep.hosts}
        extra = after(dep, client, sid) if after else None
    except BaseException:
        print(f"bench: multi-process latency failed; service logs in {dep.dir}", flush=True)
        print(dep.logs(), flush=True)
        raise
    finally:
        dep.stop()
    return {"latency": common.summarize([s["latency_ms"] for s in samples]),
            "post": common.summarize([s["post_ms"] for s in samples]),
            "observed": common.summarize([s["observed_ms"] for s in samples]),
            "rpc": rpc_costs, "db": db_costs,
            "agent_rss_startup_mb": rss_startup, "agent_rss_idle_mb": rss_idle,
            "after": extra, "cpu": cpu, "steps_ms": steps, "logs": dep.dir}
