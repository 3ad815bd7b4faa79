"""Shared pieces of the benchmarks.

* statistics (median, p95) and naive-UTC timestamps matching the database's;
* facts about the machine;
* :class:`Deployment`: godwit-conductor, N godwit-compute agents and
  godwit-api as separate processes over RabbitMQ and a fresh PostgreSQL
  database, configured the way ``tests/functional/test_multiprocess.py``
  does it, and torn down (processes, database, RabbitMQ vhost) in ``stop``;
* waiting for a migration by polling the migrations table.

Isolation on RabbitMQ: oslo.messaging names topic queues after the topic only
(``conductor``, ``compute.<host>``), whatever ``control_exchange`` is, so two
deployments on the same vhost that both run a conductor share the queue
``conductor`` and steal each other's messages. Each deployment therefore gets
its own RabbitMQ vhost (created with ``rabbitmqctl``, deleted at the end) on
top of a unique exchange and unique host names; if ``rabbitmqctl`` is not
usable the bench falls back to the default vhost and says so.
"""

import ctypes
import datetime
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings

warnings.filterwarnings("ignore", message=".*Eventlet is deprecated.*")
warnings.filterwarnings("ignore", category=DeprecationWarning)

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from godwit import phases, states  # noqa: E402
from godwit.db import models  # noqa: E402

RABBIT_URL = os.environ.get("GODWIT_BENCH_RABBIT", "rabbit://guest:guest@127.0.0.1:5672/")
POSTGRES_ADMIN_URL = os.environ.get("GODWIT_BENCH_POSTGRES",
                                    "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
BIN = os.path.dirname(sys.executable)
FINAL = tuple(sorted(phases.FINAL))
HEADERS = {"X-Auth-Token": "admin:admin", "OpenStack-API-Version": "compute 2.80"}


# --------------------------------------------------------------------- statistics
def percentile(values, p):
    """Linear-interpolated percentile (numpy's default), None for no values."""
    s = sorted(values)
    if not s:
        return None
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(values, digits=3):
    if not values:
        return {"n": 0, "median": None, "p95": None, "mean": None, "min": None, "max": None}
    r = lambda x: round(x, digits)  # noqa: E731
    return {"n": len(values), "median": r(percentile(values, 50)),
            "p95": r(percentile(values, 95)), "mean": r(sum(values) / len(values)),
            "min": r(min(values)), "max": r(max(values))}


def utcnow():
    """Naive UTC, the form the migrations table keeps (godwit.db.models.utcnow)."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def ms_between(t0, t1):
    return (t1 - t0).total_seconds() * 1000.0


# ------------------------------------------------------------------------ machine
def _first_line(path, prefix):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _version(dist):
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:
        return None


def git_info():
    """The commit measured and whether the working tree had changes (read-only git)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        status = subprocess.run(["git", "-C", repo, "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=30).stdout.splitlines()
        return {"commit": head or None, "modified_files": len(status)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "modified_files": None}


def machine_info():
    mem_kb = _first_line("/proc/meminfo", "MemTotal")
    info = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": _first_line("/proc/cpuinfo", "model name"),
        "memory_total_mb": int(mem_kb.split()[0]) // 1024 if mem_kb else None,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
        "packages": {d: _version(d) for d in ("oslo.messaging", "kombu", "SQLAlchemy",
                                               "psycopg2-binary", "waitress")},
    }
    try:
        eng = sa.create_engine(POSTGRES_ADMIN_URL)
        with eng.connect() as c:
            info["postgresql"] = c.execute(sa.text("SHOW server_version")).scalar()
        eng.dispose()
    except Exception as e:  # noqa: BLE001 - informative only
        info["postgresql"] = f"unknown ({e.__class__.__name__})"
    try:
        out = subprocess.run(["rabbitmqctl", "-q", "version"], capture_output=True,
                             text=True, timeout=30)
        info["rabbitmq"] = out.stdout.strip() or None
    except Exception:  # noqa: BLE001
        info["rabbitmq"] = None
    return info


def rss_mb(pid):
    """Resident set size (VmRSS) of a process in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    return None


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time a process (all its threads) has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def pids_named(*names):
    """Processes whose command name (comm) is one of ``names`` (e.g. postgres)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() in names:
                        out.append(int(entry))
            except OSError:
                pass
    return out


def machine_busy_seconds():
    """CPU seconds all cores spent not idle, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / _CLK_TCK


class CpuMeter:
    """CPU seconds used by named groups of processes between start() and stop()."""

    def __init__(self, groups):
        self.groups = groups            # name -> callable returning pids
        self.before = {}

    def _sample(self):
        out = {name: sum(cpu_seconds(p) for p in pids()) for name, pids in self.groups.items()}
        out["machine"] = machine_busy_seconds()
        return out

    def start(self):
        self.before = self._sample()
        self.t0 = time.perf_counter()

    def stop(self):
        after = self._sample()
        wall = time.perf_counter() - self.t0
        used = {k: round(after[k] - self.before.get(k, 0.0), 2) for k in after}
        # Whatever else ran on the machine meanwhile (other users' tests...).
        used["others"] = round(max(0.0, used["machine"] - sum(
            v for k, v in used.items() if k != "machine")), 2)
        return {"wall_s": round(wall, 2), "cpu_s": used,
                "cores": {k: round(v / wall, 2) for k, v in used.items()}}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------ services
class RabbitVhost:
    """A RabbitMQ vhost of our own (see the module docstring for why)."""

    def __init__(self, tag, base_url=RABBIT_URL):
        self.name = f"godwit-bench-{tag}"
        self.base_url = base_url
        self.created = False
        self.url = base_url

    def create(self):
        try:
            for args in (["add_vhost", self.name],
                         ["set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"]):
                subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                               timeout=60)
            self.created = True
            self.url = self.base_url.rstrip("/") + "/" + self.name
        except (OSError, subprocess.SubprocessError) as e:
            print(f"bench: could not create RabbitMQ vhost {self.name} ({e}); using "
                  f"{self.base_url} with a unique control_exchange only", flush=True)
            self.url = self.base_url
        return self.url

    def delete(self):
        if self.created:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.name],
                           capture_output=True, timeout=60)
            self.created = False


class PgDatabase:
    """A fresh PostgreSQL database ``godwit_bench_<hex>``, dropped by :meth:`drop`."""

    def __init__(self, tag, admin_url=POSTGRES_ADMIN_URL):
        self.name = f"godwit_bench_{tag}"
        self.admin_url = admin_url
        self.url = admin_url.rsplit("/", 1)[0] + "/" + self.name
        self.created = False

    def create(self):
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as c:
                c.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
            self.created = True
        finally:
            admin.dispose()
        return self.url

    def drop(self):
        if not self.created:
            return
        from godwit.db import api as db_api
        db = db_api._databases.pop(self.url, None)
        if db is not None:
            db.engine.dispose()
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self.created = False
        finally:
            admin.dispose()


try:  # resolved here, not in the forked child
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child: get SIGKILL if the bench process dies (e.g. is killed -9)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


class Deployment:
    """Conductor, ``computes`` agents and the API as processes (see the module doc).

    Start it from the main thread: the children are bound to the starting
    thread's life (PR_SET_PDEATHSIG) so that nothing outlives a killed bench.
    """

    def __init__(self, label, workdir, computes=2, api=True, host_prefix="bench",
                 compute_options=None):
        self.label = label
        self.tag = uuid.uuid4().hex[:8]
        self.dir = os.path.join(workdir, label)
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state, exist_ok=True)
        self.hosts = [f"{host_prefix}{i}-{self.tag}" for i in range(1, computes + 1)]
        self.exchange = f"godwit-bench-{self.tag}"
        self.with_api = api
        self.compute_options = dict(compute_options or {})
        self.vhost = RabbitVhost(self.tag)
        self.db = PgDatabase(self.tag)
        self.procs = {}
        self.api_port = None
        self.api_url = None
        self.engine = None        # AUTOCOMMIT engine of the bench itself, for polling
        self._client_conf = None

    # --- configuration -------------------------------------------------------
    def write_config(self, name, host=None, api_port=None, extra=None):
        path = os.path.join(self.dir, f"{name}.conf")
        lines = ["[DEFAULT]", f"transport_url = {self.vhost.url}",
                 f"control_exchange = {self.exchange}", f"state_path = {self.state}",
                 f"instances_path = {self.state}/instances", "report_interval = 10",
                 "service_down_time = 60", "rpc_response_timeout = 60", "debug = false",
                 f"log_file = {os.path.join(self.dir, name + '.log')}"]
        if host:
            lines.append(f"host = {host}")
        for key, value in (extra or {}).items():
            lines.append(f"{key} = {value}")
        lines += ["[database]", f"connection = {self.db.url}"]
        if api_port:
            lines += ["[api]", "listen = 127.0.0.1", f"port = {api_port}", "threads = 8"]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    # --- processes ---------------------------------------------------------------
    def start_proc(self, name, command, config):
        out = open(os.path.join(self.dir, f"{name}.out"), "w")
        proc = subprocess.Popen([os.path.join(BIN, command), "--config-file", config],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)
        self.procs[name] = (proc, out)
        return proc

    def pid(self, name):
        return self.procs[name][0].pid

    def check_alive(self):
        for name, (proc, _out) in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; logs in {self.dir}")

    def client_conf(self):
        """Configuration for RPC clients in the bench process itself."""
        if self._client_conf is None:
            from godwit.cmd import common as cmd_common
            defaults = {"transport_url": (self.vhost.url, None),
                        "control_exchange": (self.exchange, None),
                        "rpc_response_timeout": (30, None), "debug": (False, None),
                        "state_path": (self.state, None),
                        "log_file": (os.path.join(self.dir, "bench-client.log"), None)}
            self._client_conf = cmd_common.init([], prog="godwit-bench-client",
                                                defaults=defaults)
            sys.excepthook = sys.__excepthook__   # oslo.log would log tracebacks away
        return self._client_conf

    def transport(self):
        from godwit import rpc
        return rpc.get_transport(self.client_conf())

    def start(self, timeout=180):
        self.vhost.create()
        self.db.create()
        self.engine = sa.create_engine(self.db.url, isolation_level="AUTOCOMMIT",
                                       pool_size=4, max_overflow=4)
        manage = self.write_config("manage")
        r = subprocess.run([os.path.join(BIN, "godwit-manage"), "--config-file", manage, "db",
                            "sync"], capture_output=True, text=True, timeout=120)
        if r.returncode:
            raise RuntimeError(f"godwit-manage db sync failed: {r.stdout}{r.stderr}")
        deadline = time.monotonic() + timeout
        self.start_proc("conductor", "godwit-conductor",
                        self.write_config("conductor", host=f"conductor-{self.tag}"))
        # An agent registers with a call to the conductor as it starts; sent before
        # the conductor's queue is bound it is lost and the agent waits a whole
        # rpc_response_timeout. So: agents only once the conductor answers.
        self._wait_rpc("conductor", deadline)
        for h in self.hosts:
            self.start_proc(h, "godwit-compute",
                            self.write_config(h, host=h, extra=self.compute_options))
        if self.with_api:
            self.api_port = free_port()
            self.start_proc("api", "godwit-api", self.write_config("api", api_port=self.api_port))
            self.api_url = f"http://127.0.0.1:{self.api_port}/v2.1"
        self.wait_ready(deadline)
        # An agent is registered (and "up") before its RPC server consumes:
        # wait until each one answers a ping.
        for h in self.hosts:
            self._wait_rpc(h, deadline)
        return self

    def _wait_rpc(self, target, deadline):
        from compute import rpcapi as compute_rpcapi
        from conductor import rpcapi as conductor_rpcapi
        from godwit import context
        ctxt = context.get_admin_context()
        if target == "conductor":
            client = conductor_rpcapi.ConductorClient(self.transport(), timeout=1)
            probe = lambda: client.service_heartbeat(  # noqa: E731
                ctxt, f"conductor-{self.tag}", states.SERVICE_CONDUCTOR)
        else:
            client = compute_rpcapi.ComputeAgentClient(self.transport())
            probe = lambda: client.ping(ctxt, target, timeout=1)  # noqa: E731
        while True:
            self.check_alive()
            try:
                probe()
                return
            except Exception as e:  # noqa: BLE001 - not answering yet (timeout, ...)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{target} does not answer RPC; logs in {self.dir}") \
                        from e
                time.sleep(0.1)

    def wait_ready(self, deadline):
        want = set(self.hosts)
        svc = models.Service.__table__
        q = sa.select(svc.c.host).where(svc.c.binary == states.SERVICE_COMPUTE)
        while True:
            self.check_alive()
            with self.engine.connect() as c:
                have = {r[0] for r in c.execute(q)}
            api_ok = not self.with_api
            if want <= have and self.with_api:
                try:
                    r = requests.get(self.api_url + "/os-services", headers=HEADERS, timeout=5)
                    up = {s["host"] for s in r.json()["services"] if s["state"] == "up"}
                    api_ok = want <= up
                except (requests.RequestException, ValueError, KeyError):
                    api_ok = False
            if want <= have and api_ok:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"deployment {self.label} not ready "
                                   f"({len(have & want)}/{len(want)} agents registered); "
                                   f"logs in {self.dir}")
            time.sleep(0.2)

    def stop(self):
        """SIGTERM everything, SIGKILL what is left after 15 s, drop the database/vhost.

        SIGTERM/SIGINT to the bench wait until this is done (main thread only).
        """
        blocked = threading.current_thread() is threading.main_thread()
        if blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            self._stop()
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})

    def _stop(self):
        try:
            if self._client_conf is not None:
                from godwit import rpc
                rpc.cleanup()
            for proc, _out in self.procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for proc, _out in self.procs.values():
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for _proc, out in self.procs.values():
                out.close()
            self.procs.clear()
        finally:
            try:
                if self.engine is not None:
                    self.engine.dispose()
                self.db.drop()
            finally:
                self.vhost.delete()

    def logs(self, tail=3000):
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith((".log", ".out")):
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text = f.read()[-tail:]
                if text.strip():
                    out.append(f"==== {name}\n{text}")
        return "\n".join(out)


# ----------------------------------------------------------------- migrations in the DB
_MIG = models.Migration.__table__
_LATEST = (sa.select(_MIG.c.id, _MIG.c.status, _MIG.c.updated_at)
           .where(_MIG.c.instance_uuid == sa.bindparam("u"), _MIG.c.id > sa.bindparam("p"))
           .order_by(_MIG.c.id.desc()).limit(1))


def max_migration_id(conn, instance_uuid):
    v = conn.execute(sa.text("SELECT max(id) FROM migrations WHERE instance_uuid = :u"),
                     {"u": instance_uuid}).scalar()
    return v or 0


def wait_migration(conn, instance_uuid, after_id, timeout=120, interval=0.002):
    """Poll until the instance's migration newer than ``after_id`` is final."""
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(_LATEST, {"u": instance_uuid, "p": after_id}).first()
        if row is not None and row.status in phases.FINAL:
            return row
        if time.monotonic() > deadline:
            raise TimeoutError(f"migration of {instance_uuid} not final after {timeout}s "
                               f"(last: {row})")
        time.sleep(interval)


def max_action_id(conn):
    act = models.InstanceAction.__table__
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(act.c.id), 0))).scalar()


def event_steps(engine, since_action_id, action=states.ACTION_LIVE_MIGRATION):
    """Median duration (ms) of each step of ``action`` (default: live migrations)
    from the instance action events."""
    import collections
    import statistics
    act, ev = models.InstanceAction.__table__, models.InstanceActionEvent.__table__
    q = (sa.select(ev.c.event, ev.c.start_time, ev.c.finish_time)
         .select_from(ev.join(act, act.c.id == ev.c.action_id))
         .where(act.c.action == action, act.c.id > since_action_id))
    per_event = collections.defaultdict(list)
    with engine.connect() as c:
        for name, start, finish in c.execute(q):
            if start and finish:
                per_event[name].append(ms_between(start, finish))
    return {name: round(statistics.median(v), 2)
            for name, v in sorted(per_event.items(), key=lambda kv: -statistics.median(kv[1]))}


def boot(client, name, host):
    """Boot a server on ``host`` through the API; fail with its fault unless ACTIVE."""
    server = client.create_server(name, host=host)
    if server["status"] != "ACTIVE":
        raise RuntimeError(f"server {name} on {host} is {server['status']}: "
                           f"{server.get('fault', {}).get('message')}")
    return server["id"]


def wait_active(conn, uuids, timeout=120):
    """Wait until every instance in ``uuids`` has left 'building'; fail on error."""
    deadline = time.monotonic() + timeout
    inst = models.Instance.__table__
    q = sa.select(inst.c.uuid, inst.c.vm_state, inst.c.fault_message).where(
        inst.c.uuid.in_(sa.bindparam("ids", expanding=True)))
    while True:
        result = conn.execute(q, {"ids": list(uuids)}).all()
        rows = {r.uuid: r.vm_state for r in result}
        bad = [r for r in result if r.vm_state == states.ERROR]
        if bad:
            raise RuntimeError(f"{len(bad)} servers went to error, e.g. {bad[0].uuid}: "
                               f"{bad[0].fault_message}")
        if len(rows) == len(uuids) and all(s == states.ACTIVE for s in rows.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"servers not active after {timeout}s: {rows}")
        time.sleep(0.02)


def sequential_migrations(client, conn, sid, hosts, count, interval=0.002, between=None):
    """Live-migrate ``sid`` back and forth ``count`` times; one sample per move.

    latency_ms: from a UTC timestamp taken just before the POST to the
    migration row's ``updated_at`` when it became 'completed' (written by the
    conductor in the same transaction), so polling adds no skew.
    ``between(migration_id)`` runs after each move, outside the timed part.
    """
    samples = []
    current = conn.execute(sa.text("SELECT host FROM instances WHERE uuid = :u"),
                           {"u": sid}).scalar()
    for _ in range(count):
        dest = hosts[(hosts.index(current) + 1) % len(hosts)]
        prev = max_migration_id(conn, sid)
        t0 = utcnow()
        p0 = time.perf_counter()
        client.live_migrate(sid, host=dest)
        post_ms = (time.perf_counter() - p0) * 1000.0
        row = wait_migration(conn, sid, prev, interval=interval)
        seen_ms = (time.perf_counter() - p0) * 1000.0
        if row.status != states.COMPLETED:
            raise RuntimeError(f"migration {row.id} of {sid} to {dest} ended {row.status}")
        samples.append({"latency_ms": ms_between(t0, row.updated_at), "post_ms": post_ms,
                        "observed_ms": seen_ms, "migration_id": row.id})
        current = dest
        if between is not None:
            between(row.id)
    return samples


# ------------------------------------------------- deployments with per-host configuration
def _read_ini(path):
    """{section: {option: value}} of a config file written by Deployment.write_config."""
    sections, current = {}, None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
            elif current is not None and " = " in line:
                key, value = line.split(" = ", 1)
                current[key] = value
    return sections


def _write_ini(path, sections):
    lines = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {v}" for k, v in options.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class HostConfigDeployment(Deployment):
    """A :class:`Deployment` whose compute agents get options of their own.

    ``host_groups(index, host)`` returns ``{group: {option: value}}`` for the
    agent ``host`` (the ``index``-th); they replace or extend what
    :meth:`Deployment.write_config` writes (``DEFAULT`` included, e.g. a
    per-host ``instances_path``). The real-hypervisor and cold-transfer
    benchmarks use it for ``[compute]``, ``[libvirt]``, ``[fake]`` and
    ``[transfer]``.
    """

    def __init__(self, label, workdir, host_groups, **kwargs):
        super().__init__(label, workdir, **kwargs)
        self.host_groups = host_groups

    def write_config(self, name, host=None, api_port=None, extra=None):
        path = super().write_config(name, host=host, api_port=api_port, extra=extra)
        if name in self.hosts:
            sections = _read_ini(path)
            for group, options in self.host_groups(self.hosts.index(name), name).items():
                sections.setdefault(group, {}).update(
                    {k: str(v) for k, v in options.items()})
            _write_ini(path, sections)
        return path

    def config_path(self, name):
        return os.path.join(self.dir, f"{name}.conf")

    def log_text(self, name):
        try:
            with open(os.path.join(self.dir, name + ".log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def create_flavor(self, flavorid, memory_mb, vcpus=1, root_gb=1):
        """A flavor in this deployment's database (``godwit-manage flavor create``'s job)."""
        from godwit.db import api as db_api
        db_api.get_database(self.db.url).flavor_create(
            {"flavorid": flavorid, "name": flavorid, "memory_mb": memory_mb, "vcpus": vcpus,
             "root_gb": root_gb, "ephemeral_gb": 0, "swap": 0})


def boot_flavor(client, name, host, flavor, timeout=120):
    """Like :func:`boot`, with a flavor and a longer wait (real guests)."""
    sid = client.create_server(name, flavor=flavor, host=host, wait=False)
    server = client.wait_server(sid, lambda s: s["status"] != "BUILD", timeout=timeout)
    if server["status"] != "ACTIVE":
        raise RuntimeError(f"server {name} on {host} is {server['status']}: "
                           f"{server.get('fault', {}).get('message')}")
    return sid


def timed_move(client, conn, sid, body, wanted, timeout=300, interval=0.01, migration_id=None):
    """POST ``body`` to the server's action and wait for its migration in ``wanted``:
    a new migration, or ``migration_id`` (confirm/revert move no new one).

    Returns (seconds from a UTC timestamp taken just before the POST to the
    migration row's ``updated_at`` when it reached ``wanted``, the row,
    seconds observed by the bench). A final status other than ``wanted``
    raises.
    """
    prev = max_migration_id(conn, sid) if migration_id is None else migration_id - 1
    t0 = utcnow()
    p0 = time.perf_counter()
    client.post(f"/servers/{sid}/action", body)
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(_LATEST, {"u": sid, "p": prev}).first()
        if row is not None and (row.status == wanted or row.status in phases.FINAL):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"migration of {sid} not {wanted} after {timeout}s ({row})")
        time.sleep(interval)
    observed = time.perf_counter() - p0
    if row.status != wanted:
        raise RuntimeError(f"migration {row.id} of {sid} ended {row.status}, not {wanted}")
    return ms_between(t0, row.updated_at) / 1000.0, row, observed
