"""A Godwit deployment as separate OS processes, for chaos tests.

:class:`ChaosCloud` runs ``godwit-conductor`` (one or more), one
``godwit-compute`` per fake host and ``godwit-api``, each a process of its
own started from its own config file exactly as deployed, over the real
RabbitMQ and PostgreSQL. A test can SIGKILL any of them, start it again,
arm faults in the fake hosts and in the conductors, read the agents'
journals and the database, and even stop the broker::

    cloud = ChaosCloud(tmp_path, rabbit_url, db_url, hosts=("a", "b")).start()
    try:
        sid = cloud.client.create_server("vm", host="a")["id"]
        cloud.arm("b", ["pre_live_migration:delay:5"])
        cloud.client.live_migrate(sid, host="b")
        cloud.restart("cond-a", down=2)
        ...
    finally:
        cloud.stop()

(The ``chaos_cloud`` fixture of tests/chaos/conftest.py does the start and
the stop, and prints the services' logs when the test failed.)

The processes themselves - config files, start, SIGKILL, SIGTERM, logs, the
stop that leaves nothing behind - are the test kit's
(godwit.testkit.deployment.ProcessDeployment, under the kit's public
ProcessCloud too); this module adds the chaos tests' own defaults and what
they arm and read.

Layout under ``tmp_path``: ``etc/<service>.conf``, ``log/<service>.log``
(oslo.log's ``log_file``; a restarted service appends to it, after a line
``---- chaos: ...`` the harness writes at every start, kill and stop),
``log/<service>.console`` (stdout and stderr: start-up tracebacks land
there) and ``state/`` (the ``state_path`` every service shares: the fake
hosts' records in ``state/fake-hosts/<host>/``, the agents' journals in
``state/journal/<host>.sqlite``, the conductors' faults in
``state/conductor-faults/<conductor>/``).

Every process this harness starts runs in the test's process group; the
fake hypervisors' migration jobs (``[fake] migration_job_runner =
process``) run in sessions of their own so that they outlive a killed agent
(compute/virt/fake_job.py). Only a migration that takes time gets such a
process: give the source ``[fake] migration_bandwidth_mb`` > 0 (with the
default 0 the move is instant and runs inside the agent).
:meth:`ChaosCloud.stop` kills the services and then every such job of this
cloud, found through /proc.

:meth:`ChaosCloud.restart_broker` stops the whole RabbitMQ node, every
virtual host included: a test that calls it must not run beside anything
else that uses the broker (pytest runs our tests one after another; do not
run the chaos tests in parallel with other suites, e.g. under xdist, while
such a test runs).
"""

import json
import os
import subprocess
import threading
import time
from urllib.parse import urlsplit

from compute import fault_injection
from compute import journal as journal_mod
from compute.fake_host import FakeHost
from godwit.testing import wait_for

# Re-exported: the chaos tests import these from here.
from godwit.testkit.deployment import (  # noqa: F401
    API,
    COMPUTE,
    CONDUCTOR,
    JOB_MODULE,
    MANAGE,
    STARTED,
    ProcessDeployment,
)
from godwit.testkit.service_process import BIN, free_port, pid_gone, port_open  # noqa: F401

RABBITMQCTL = os.environ.get("GODWIT_TEST_RABBITMQCTL", "rabbitmqctl")


def _write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)   # atomic: an agent never reads half a file


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ChaosCloud(ProcessDeployment):
    """Conductors, one agent per fake host and the API, each a process (see module).

    The processes, their config files and logs are the test kit's
    (godwit.testkit.deployment.ProcessDeployment); this adds what the chaos
    tests arm and read: faults in hosts and conductors, the agents' journals,
    and stopping the broker.

    ``options``: ``{group: {option: value}}`` written into every service's
    config file ("DEFAULT" for [DEFAULT]); ``host_options``: ``{host: {group:
    {option: value}}}`` on top of them for one agent. Both override what
    the harness writes itself (transport, database, state_path, host,
    log_file, report_interval = 1, service_down_time = 6, [api] listen and
    port): leave those alone unless the test is about them. Values: bool ->
    true/false, list/tuple -> comma-separated, anything else str().
    """

    TAG = "chaos"
    EXCHANGE_PREFIX = "godwit-chaos-"
    SERVICE_DEFAULTS = {"report_interval": 1, "service_down_time": 6}

    def __init__(self, tmp_path, rabbit_url, db_url, hosts, conductors=("cond-a",),
                 options=None, host_options=None, shared_instances=False):
        # Read by _instances_path while the base class writes the config files.
        self.shared_instances = shared_instances
        super().__init__(tmp_path, rabbit_url, db_url, hosts, conductors,
                         options=options, host_options=host_options)
        # The names the chaos tests have always used.
        self.rabbit_url = self.transport_url
        self.db_url = self.database_url
        self.hosts = self.host_names

    def _instances_path(self, name):
        instances = os.path.join(self.state_path, "instances")
        return instances if self.shared_instances else os.path.join(instances, "{host}")

    def start(self, timeout=90):
        """db sync, then the conductors, the agents and the API; returns once every
        agent is up in the API's service list (within ``timeout`` seconds)."""
        return self._boot(timeout)

    # --- hosts: records, faults, journals -------------------------------------------------
    def fake(self, host):
        return FakeHost(self.hosts_path, host)

    @staticmethod
    def _faults(faults):
        faults = [faults] if isinstance(faults, str) else list(faults)
        for spec in faults:
            fault_injection.parse(spec)   # a typo fails here, not silently in the agent
        return faults

    def arm(self, host, faults):
        """Faults for fake host ``host`` (a list like ["pre_live_migration:delay:5"]),
        read by its agent (and its migration jobs) at every step."""
        _write_json(os.path.join(self.hosts_path, host, "faults.json"), self._faults(faults))

    def disarm(self, host):
        _unlink(os.path.join(self.hosts_path, host, "faults.json"))

    def _conductor_dir(self, name):
        return os.path.join(self.state_path, "conductor-faults", name)

    def arm_conductor(self, name, faults):
        """Faults for conductor ``name``: "advance.<event>:..." or "call.<step>:..."."""
        _write_json(os.path.join(self._conductor_dir(name), "faults.json"),
                    self._faults(faults))

    def disarm_conductor(self, name):
        _unlink(os.path.join(self._conductor_dir(name), "faults.json"))

    @staticmethod
    def _fired(path):
        try:
            with open(path) as f:
                return [tuple(k) for k in json.load(f)]
        except (FileNotFoundError, ValueError):
            return []

    def fired(self, host):
        """The ``:once`` faults that fired on ``host``: [(step, action, seconds)]."""
        return self._fired(os.path.join(self.hosts_path, host, "fired.json"))

    def conductor_fired(self, name):
        return self._fired(os.path.join(self._conductor_dir(name), "fired.json"))

    def journal_path(self, host):
        return os.path.join(self.state_path, "journal", f"{host}.sqlite")

    def journal(self, host, migration_id=None):
        """The entries of ``host``'s journal (of one migration), [] before it exists."""
        path = self.journal_path(host)
        if not os.path.exists(path):
            return []
        try:
            entries = journal_mod.read(path)
        except Exception as e:  # noqa: BLE001
            if "no such table" in str(e):   # the agent is creating it
                return []
            raise
        if migration_id is not None:
            entries = [e for e in entries if e["migration_id"] == str(migration_id)]
        return entries

    # --- the broker ----------------------------------------------------------------------
    def restart_broker(self, down=0, timeout=120):
        """Stop the RabbitMQ node (rabbitmqctl stop_app: every vhost, every user of
        the broker!), wait ``down`` seconds, start it again, and return once this
        cloud's vhost takes connections again."""
        parts = urlsplit(self.rabbit_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 5672
        _rabbitmqctl("stop_app", timeout=timeout)
        try:
            if down:
                time.sleep(down)
        finally:   # never leave the broker stopped
            _rabbitmqctl("start_app", timeout=timeout)
        wait_for(f"RabbitMQ on {host}:{port}", lambda: port_open(host, port),
                 timeout=timeout, interval=0.2)
        wait_for(f"vhost of {self.rabbit_url}", lambda: _vhost_usable(self.rabbit_url),
                 timeout=timeout, interval=0.2)


def _rabbitmqctl(*args, timeout=120):
    r = subprocess.run([RABBITMQCTL, "-q", *args], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} exited with {r.returncode}: "
                           f"{r.stdout}{r.stderr}")
    return r.stdout


def _vhost_usable(rabbit_url):
    """True if an AMQP connection to the URL's vhost opens a channel."""
    import kombu

    url = "amqp://" + rabbit_url.split("://", 1)[1]
    try:
        with kombu.Connection(url, connect_timeout=2) as conn:
            conn.connect()
            conn.channel().close()
        return True
    except Exception:  # noqa: BLE001 - not yet
        return False
