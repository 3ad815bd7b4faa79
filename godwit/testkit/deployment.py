"""A Godwit deployment as separate OS processes: the machinery under the kit's
:class:`~godwit.testkit.processes.ProcessCloud` and Godwit's chaos harness.

:class:`ProcessDeployment` runs ``godwit-conductor`` (one or more), one
``godwit-compute`` per fake host and ``godwit-api``, each a process of its
own started from its own config file exactly as deployed. It starts, kills
(SIGKILL), terminates (SIGTERM) and restarts any of them, and
:meth:`~ProcessDeployment.stop` leaves no process of the deployment behind.
What the config files say beyond what every deployment needs is the
subclass's choice (``SERVICE_DEFAULTS``, ``options``, ``_instances_path``).

Layout under ``root``: ``etc/<service>.conf``, ``log/<service>.log``
(oslo.log's ``log_file``; a restarted service appends to it, after a line
``---- <TAG> ...`` written at every start, kill and stop),
``log/<service>.console`` (stdout and stderr: start-up tracebacks land
there) and ``state/`` (the ``state_path`` every service shares: the fake
hosts' records in ``state/fake-hosts/<host>/``, the agents' journals in
``state/journal/<host>.sqlite``).

Every process started here runs in the caller's process group; the fake
hypervisors' migration jobs (``[fake] migration_job_runner = process``) run
in sessions of their own so that they outlive a killed agent
(compute/virt/fake_job.py). Only a migration that takes time gets such a
process: give the source ``[fake] migration_bandwidth_mb`` > 0 (with the
default 0 the move is instant and runs inside the agent). ``stop()`` kills
the services and then every such job of this deployment, found through /proc.
"""

import atexit
import os
import signal
import subprocess
import threading
import time
import uuid
import weakref
from pathlib import Path

from godwit.db import api as db_api
from godwit.testing import Client, wait_for
from godwit.testkit.service_process import (
    BIN,
    ServiceProcess,
    ancestors,
    cmdline,
    free_port,
    pid_gone,
    render_config,
    service_env,
    stamp,
    tail,
)

JOB_MODULE = "compute.virt.fake_job"
CONDUCTOR, COMPUTE, API, MANAGE = ("godwit-conductor", "godwit-compute", "godwit-api",
                                   "godwit-manage")
# The line each service logs once it serves (godwit/service.py, api/cmd.py).
STARTED = {CONDUCTOR: "Started ConductorManager", COMPUTE: "Started ComputeManager",
           API: "Compute API listening on"}

_live = weakref.WeakSet()


@atexit.register
def _stop_all():
    """Last resort for a deployment a test forgot to stop (an interpreter that exits)."""
    for deployment in list(_live):
        try:
            deployment.stop()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


class ProcessDeployment:
    """Conductors, one agent per fake host and the API, each a process (see module).

    ``options``: ``{group: {option: value}}`` written into every service's
    config file ("DEFAULT" for [DEFAULT]); ``host_options``: ``{host: {group:
    {option: value}}}`` on top of them for one agent. Both override what is
    written by default (transport, database, state_path, instances_path, host,
    log_file, ``SERVICE_DEFAULTS``, [api] listen and port). Values: bool ->
    true/false, list/tuple -> comma-separated, anything else str().
    """

    #: Marks the lines written into the services' logs ("---- <TAG> <time>: ...").
    TAG = "testkit"
    #: The control exchange's name starts so; the rest is random.
    EXCHANGE_PREFIX = "godwit-testkit-"
    #: [DEFAULT] options written before the log_file, in this order.
    SERVICE_DEFAULTS = {"report_interval": 1, "service_down_time": 6}

    def __init__(self, root, transport_url, database_url, hosts, conductors,
                 options=None, host_options=None):
        self.root = Path(root).absolute()
        self.state_path = str(self.root / "state")
        self.hosts_path = os.path.join(self.state_path, "fake-hosts")
        self.transport_url = transport_url
        self.database_url = database_url
        self.host_names = tuple(hosts)
        self.conductors = tuple(conductors)
        if isinstance(hosts, str) or isinstance(conductors, str):
            raise TypeError("hosts and conductors are sequences of names")
        names = self.conductors + self.host_names + ("api",)
        if len(set(names)) != len(names) or not self.host_names or not self.conductors:
            raise ValueError(f"need distinct names, at least one host and one conductor, "
                             f"not 'api': {names}")
        unknown = set(host_options or {}) - set(self.host_names)
        if unknown:
            raise ValueError(f"host_options for unknown hosts {sorted(unknown)}")
        self.options = {g: dict(v) for g, v in (options or {}).items()}
        self.host_options = {h: {g: dict(v) for g, v in gs.items()}
                             for h, gs in (host_options or {}).items()}
        # A fresh exchange per deployment. It does not separate two deployments
        # on one RabbitMQ vhost (topic queues are named after the topic alone):
        # give each a vhost of its own.
        self.exchange = f"{self.EXCHANGE_PREFIX}{uuid.uuid4().hex[:8]}"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}/v2.1"
        self.client = Client(self.api_url)
        self._db = None
        self._lock = threading.RLock()
        self._stopped = False
        self._started = False
        for d in ("etc", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.makedirs(self.state_path, exist_ok=True)
        self._services = {}
        for name, binary in ([(c, CONDUCTOR) for c in self.conductors]
                             + [(h, COMPUTE) for h in self.host_names] + [("api", API)]):
            self._services[name] = ServiceProcess(
                name, binary, self._write_config(name, binary), self.root / "log" / f"{name}.log",
                self.root / "log" / f"{name}.console", self.TAG)
        self._manage_config = self._write_config("manage", MANAGE)
        _live.add(self)

    # --- configuration ---------------------------------------------------------------
    def _instances_path(self, name):
        """The ``instances_path`` in the config of service ``name``."""
        return os.path.join(self.state_path, "instances")

    def _write_config(self, name, binary):
        groups = {"DEFAULT": {
            "transport_url": self.transport_url, "control_exchange": self.exchange,
            "state_path": self.state_path, "instances_path": self._instances_path(name),
            **self.SERVICE_DEFAULTS,
            "log_file": str(self.root / "log" / f"{name}.log")},
            "database": {"connection": self.database_url}}
        if binary in (CONDUCTOR, COMPUTE):
            groups["DEFAULT"]["host"] = name
        if binary == API:
            groups["api"] = {"listen": "127.0.0.1", "port": self.api_port}
        extra = [self.options]
        if binary == COMPUTE:
            extra.append(self.host_options.get(name, {}))
        for layer in extra:
            for group, values in layer.items():
                groups.setdefault(group, {}).update(values)
        path = self.root / "etc" / f"{name}.conf"
        path.write_text(render_config(groups))
        return path

    def config_path(self, name):
        return self._service(name).config

    def log_path(self, name):
        """oslo.log's log file of service ``name`` (every start appends to it)."""
        return self._service(name).log

    def console_path(self, name):
        """stdout and stderr of service ``name``: start-up errors land there."""
        return self._service(name).console

    @property
    def names(self):
        """Every service's name: the conductors, the hosts, then "api"."""
        return tuple(self._services)

    def _service(self, name):
        try:
            return self._services[name]
        except KeyError:
            raise KeyError(f"no service {name!r} in this cloud (have "
                           f"{', '.join(self._services)})") from None

    # --- the deployment ----------------------------------------------------------------
    def manage(self, *args, timeout=120):
        """Run ``godwit-manage --config-file <manage.conf> *args``; its stdout."""
        r = subprocess.run([os.path.join(BIN, MANAGE), "--config-file",
                            str(self._manage_config), *args], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"godwit-manage {' '.join(args)} exited with {r.returncode}:\n"
                               f"{r.stdout}{r.stderr}")
        return r.stdout

    def _boot(self, timeout):
        """db sync, then the conductors, the agents and the API; returns once every
        agent is up in the API's service list (within ``timeout`` seconds)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("this cloud was stopped; make a new one")
            if self._started:
                raise RuntimeError("this cloud was started already")
            self._started = True
        deadline = time.monotonic() + timeout
        self.manage("db", "sync")
        for name in self.conductors:
            self.start_service(name)
        # An agent's first report to a conductor whose queue does not exist yet
        # is lost and only times out after host_step_timeout.
        for name in self.conductors:
            self.wait_started(name, max(1.0, deadline - time.monotonic()))
        for name in self.host_names:
            self.start_service(name)
        self.start_service("api")

        def ready():
            self._raise_if_exited()
            try:
                up = {s["host"] for s in self.client.services() if s["state"] == "up"}
            except Exception:  # noqa: BLE001 - the API is still starting
                return False
            return set(self.host_names) <= up
        wait_for(f"agents {', '.join(self.host_names)} up", ready,
                 timeout=max(1.0, deadline - time.monotonic()), interval=0.2)
        return self

    def _raise_if_exited(self):
        for svc in self._services.values():
            if svc.proc is not None and svc.proc.poll() is not None:
                raise RuntimeError(f"{svc.name} exited with {svc.proc.returncode} while "
                                   f"starting:\n{self._service_logs(svc, 4000)}")

    def start_service(self, name, wait=False, timeout=60):
        """Start ``name`` (a conductor, a host or "api") with its config file, its
        log appended to; with ``wait``, until it serves (see wait_started).
        Returns the pid."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("this cloud was stopped")
            svc = self._service(name)
            if svc.alive():
                raise RuntimeError(f"{name} is running already (pid {svc.proc.pid})")
            svc.close_console()
            svc.starts += 1
            svc.note(f"starting {name} (start #{svc.starts})")
            svc.log_offset = os.path.getsize(svc.log)
            svc.console_file = open(svc.console, "ab")
            svc.console_file.write(f"{svc.note_prefix}{stamp()}: starting {name}\n".encode())
            svc.console_file.flush()
            svc.proc = subprocess.Popen(
                [os.path.join(BIN, svc.binary), "--config-file", str(svc.config)],
                stdin=subprocess.DEVNULL, stdout=svc.console_file, stderr=subprocess.STDOUT,
                env=service_env())
            pid = svc.proc.pid
        if wait:
            self.wait_started(name, timeout)
        return pid

    def wait_started(self, name, timeout=60):
        """Wait until the current process of ``name`` logged that it serves (a
        conductor's or agent's RPC server started - an agent only after its
        conductor answered its first report -, the API listening)."""
        svc = self._service(name)
        marker = STARTED[svc.binary]

        def started():
            if svc.proc is None or svc.proc.poll() is not None:
                rc = None if svc.proc is None else svc.proc.returncode
                raise RuntimeError(f"{name} is not running (exit status {rc}):\n"
                                   f"{self._service_logs(svc, 4000)}")
            try:
                with open(svc.log, "rb") as f:
                    f.seek(svc.log_offset)
                    return marker.encode() in f.read()
            except FileNotFoundError:
                return False
        try:
            wait_for(f"{name} to start", started, timeout=timeout, interval=0.1)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self._service_logs(svc, 4000)}") from None

    def kill(self, name):
        """SIGKILL ``name`` and reap it; its exit status (None if it never ran)."""
        with self._lock:
            svc = self._service(name)
            if svc.proc is None:
                return None
            was_alive = svc.proc.poll() is None
            if was_alive:
                svc.proc.send_signal(signal.SIGKILL)
            rc = svc.proc.wait()
            svc.close_console()
            if was_alive:
                svc.note(f"SIGKILLed {name} (pid {svc.proc.pid})")
            return rc

    def restart(self, name, down=0, wait=False, timeout=60):
        """kill, ``down`` seconds without the service, start_service."""
        self.kill(name)
        if down:
            time.sleep(down)
        return self.start_service(name, wait=wait, timeout=timeout)

    def terminate(self, name, timeout=30):
        """SIGTERM ``name`` and wait for it to exit; its exit status. A service still
        running after ``timeout`` seconds is killed and AssertionError raised."""
        with self._lock:
            svc = self._service(name)
            if not svc.alive():
                raise RuntimeError(f"{name} is not running")
            proc = svc.proc
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            svc.note(f"{name} still ran {timeout} s after SIGTERM; SIGKILLed")
            raise AssertionError(f"{name} did not exit within {timeout} s of SIGTERM") from None
        finally:
            with self._lock:
                if svc.proc is proc:
                    svc.close_console()
        svc.note(f"{name} exited with status {rc} after SIGTERM")
        return rc

    def alive(self, name):
        with self._lock:
            return self._service(name).alive()

    def pid(self, name):
        """The pid of the running process of ``name``, or None."""
        with self._lock:
            svc = self._service(name)
            return svc.proc.pid if svc.alive() else None

    def returncode(self, name):
        """The exit status of the last process of ``name`` (None: running or never
        started); -9 after kill(), 137 after an injected crash."""
        with self._lock:
            svc = self._service(name)
            return None if svc.proc is None else svc.proc.poll()

    # --- what the API says ---------------------------------------------------------
    def service(self, host, binary=COMPUTE):
        """The API's record of the service of ``host`` (state, updated_at, ...), or None."""
        for s in self.client.services(binary=binary):
            if s["host"] == host:
                return s
        return None

    def _wait_service(self, host, what, check, timeout, binary):
        def look():
            try:
                s = self.service(host, binary)
            except Exception:  # noqa: BLE001 - the API may be restarting
                return None
            return s if s is not None and check(s) else None
        return wait_for(f"{host} {what}", look, timeout=timeout, interval=0.2)

    def wait_up(self, host, newer_than=None, timeout=30, binary=COMPUTE):
        """Wait until ``host`` is up, with an ``updated_at`` (last heartbeat) after
        ``newer_than`` (a string as the API gives it) if given; its record."""
        return self._wait_service(
            host, "up", lambda s: s["state"] == "up" and (
                newer_than is None or (s["updated_at"] or "") > newer_than), timeout, binary)

    def wait_down(self, host, timeout=30, binary=COMPUTE):
        return self._wait_service(host, "down", lambda s: s["state"] == "down", timeout,
                                  binary)

    @property
    def db(self):
        """The database (godwit.db.api.Database) for direct reads."""
        if self._db is None:
            self._db = db_api.get_database(self.database_url)
        return self._db

    # --- fake migration jobs --------------------------------------------------------
    def _processes(self, only_jobs):
        """pids of this deployment's fake migration jobs (``python -m
        compute.virt.fake_job <state>/fake-hosts/<host>/jobs/<instance>.spec.json``)
        and, unless ``only_jobs``, of processes run with one of its config
        files; never this process or its ancestors."""
        etc = str(self.root / "etc") + os.sep
        state = self.state_path + os.sep
        skip = ancestors()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in skip:
                continue
            args = cmdline(entry)
            job = JOB_MODULE in args and any(a.startswith(state) for a in args)
            service = "--config-file" in args and any(a.startswith(etc) for a in args)
            if job or (service and not only_jobs):
                found.append(int(entry))
        return sorted(pid for pid in found if not pid_gone(pid))

    def job_processes(self):
        """pids of this deployment's running fake migration job processes (``python -m
        compute.virt.fake_job <state>/fake-hosts/<host>/jobs/...``)."""
        return self._processes(only_jobs=True)

    def _kill_leftovers(self, timeout=10):
        """SIGKILL every process left of this deployment: the jobs, and anything
        still run with one of its config files (a job forked by an agent but not
        yet exec'd still shows the agent's command line)."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 2:   # two empty looks in a row
            pids = self._processes(only_jobs=False)
            if not pids:
                quiet += 1
                time.sleep(0.05)
                continue
            quiet = 0
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            while any(not pid_gone(p) for p in pids):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"processes {pids} of {self.root} survive SIGKILL")
                time.sleep(0.02)

    # --- the end ----------------------------------------------------------------------
    def stop(self):
        """SIGKILL every service, then every process left of this deployment (the
        fake migration jobs). Safe to call again."""
        with self._lock:
            first = not self._stopped
            self._stopped = True
            for svc in self._services.values():
                if svc.proc is not None:
                    alive = svc.proc.poll() is None
                    if alive:
                        svc.proc.send_signal(signal.SIGKILL)
                    svc.proc.wait()
                    if alive and first:
                        svc.note(f"stop: SIGKILLed {svc.name}")
                svc.close_console()
            self._kill_leftovers()
            _live.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- diagnostics ----------------------------------------------------------------------
    def _service_logs(self, svc, size):
        if svc.proc is None:
            state = "never started"
        elif svc.proc.poll() is None:
            state = f"running, pid {svc.proc.pid}"
        else:
            state = f"exited with {svc.proc.returncode}"
        out = []
        for path in (svc.log, svc.console):
            text = tail(path, size)
            if any(line.strip() and not line.startswith(svc.note_prefix)
                   for line in text.splitlines()):
                out.append(f"==== {path.name} ({svc.binary} {svc.name}: {state})\n{text}")
        return "\n".join(out) or f"==== {svc.name}: no output ({state})"

    def logs(self, tail=4000):
        """The last ``tail`` characters of every service's log and console output."""
        return "\n".join(self._service_logs(svc, tail) for svc in self._services.values())
