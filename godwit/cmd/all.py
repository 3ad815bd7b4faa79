"""godwit-all: API, conductor and several fake compute hosts in one process.

For trying Godwit out, for the demo and for functional tests. The default
transport is ``kombu+memory:////`` (in-process, no broker; oslo.messaging's
own default would be ``rabbit://``) and the default
database is SQLite under the state path; both can be pointed at RabbitMQ and
PostgreSQL with the usual options. :class:`LocalCloud` is the same thing as a
Python object, which our functional tests and users' tests can start and
stop.
"""

import concurrent.futures
import os
import sys
import threading

from oslo_log import log as logging

from api import cmd as api_cmd
from compute import cmd as compute_cmd
from conductor import cmd as conductor_cmd
from godwit import rpc, service
from godwit.cmd import common
from godwit.db import api as db_api
from godwit.db import migration

LOG = logging.getLogger(__name__)
IN_PROCESS_TRANSPORT = "kombu+memory:////"


class LocalCloud:
    """A conductor, ``hosts`` compute agents and (optionally) the API."""

    def __init__(self, conf, hosts=None, api=True, api_port=None, host_paths=None,
                 transport_url=IN_PROCESS_TRANSPORT):
        self.conf = conf
        # Simulated migration jobs run as threads here: one process is the point.
        conf.set_default("migration_job_runner", "thread", group="fake")
        n = conf.all.compute_hosts
        self.host_names = list(hosts) if hosts else [f"compute{i}" for i in range(1, n + 1)]
        # In-process unless told otherwise: oslo.messaging's own default
        # (rabbit://) would quietly reach for a local broker.
        self.transport_url = transport_url
        self.with_api = api
        self.api_port = api_port
        self.host_paths = host_paths or {}
        self.conductor = None
        self.computes = {}
        self.crashed = []
        self.api = None
        self.db = None
        #: Called with (host, service) for each agent built, and with the
        #: conductor's service, before it starts (the test kit's older services
        #: and wire logs, godwit.testkit.agents).
        self.prepare_compute = None
        self.prepare_conductor = None

    def start(self):
        if self.with_api:
            # Refuse an unsafe API before the conductor and agents start.
            api_cmd.check_auth_exposure(self.conf, self.conf.api.listen,
                                        self.conf.api.port if self.api_port is None
                                        else self.api_port)
        url = self.conf.database.connection
        migration.db_sync(url)
        self.db = db_api.get_database(url, self.conf.database.echo)
        self.db.ensure_default_flavors()
        transport = rpc.get_transport(self.conf, self.transport_url)
        self.conductor = conductor_cmd.build(self.conf, transport)
        if self.prepare_conductor is not None:
            self.prepare_conductor(self.conductor)
        self.conductor.start()
        for host in self.host_names:
            self.start_compute(host)
        if self.with_api:
            self.api = api_cmd.APIServer(self.conf, transport, port=self.api_port)
            self.api.start()
        return self

    def start_compute(self, host):
        transport = rpc.get_transport(self.conf, self.transport_url)
        svc = compute_cmd.build(self.conf, transport, host=host,
                                instances_path=self.host_paths.get(host))
        if self.prepare_compute is not None:
            self.prepare_compute(host, svc)
        svc.start()
        self.computes[host] = svc
        svc.manager.driver.faults.on_crash = lambda: self.crash_compute(host)
        return svc

    def crash_compute(self, host):
        """Make ``host``'s agent vanish as if killed: no RPC, no heartbeats, no
        clean-up. Its blocked threads are released only by stop()."""
        svc = self.computes.pop(host, None)
        if svc is None:
            return
        self.crashed.append(svc)
        svc.manager.live.shutdown()   # its monitors stop watching; jobs go on
        # What its threads still do is not recorded: a dead process records nothing.
        svc.manager.journal.close()
        for task in svc.periodic:
            task.stop()
        # Called from one of the agent's own threads: stop its server from another.
        threading.Thread(target=svc.rpcserver.stop, daemon=True).start()

    def restart_compute(self, host):
        """Start ``host``'s agent again after a crash (a new agent, as after a
        process restart: nothing of the old one's memory)."""
        self.computes.pop(host, None)
        return self.start_compute(host)

    def stop_compute(self, host):
        svc = self.computes.pop(host)
        svc.stop()
        svc.wait()

    def stop(self, grace=0):
        parts = ([self.api] if self.api else []) + list(self.computes.values()) + \
            ([self.conductor] if self.conductor else [])
        # Each RPC server needs up to a second to leave its poll loop; stopping
        # them side by side makes that one second, not one per service.
        with concurrent.futures.ThreadPoolExecutor(max(len(parts), 1)) as pool:
            list(pool.map(lambda p: (p.stop(), p.wait()), parts))
        for svc in self.crashed:  # release threads still blocked in a crash
            svc.manager.cleanup_host()
        self.computes.clear()
        self.crashed.clear()

    @property
    def api_url(self):
        return self.api.url if self.api else None


def main(argv=None):
    conf = common.init(argv, prog="godwit-all",
                       defaults={"transport_url": (IN_PROCESS_TRANSPORT, None)})
    os.makedirs(conf.state_path, exist_ok=True)
    try:
        cloud = LocalCloud(conf, transport_url=conf.transport_url).start()
    except api_cmd.UnsafeAuthConfig as e:
        LOG.error("%s", e)
        print(f"godwit-all: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"godwit-all: API at {cloud.api_url}, hosts {', '.join(cloud.host_names)}; "
          f"database {common.mask_url(conf.database.connection)}; Ctrl-C stops", flush=True)
    service.wait_for_signal([cloud])
    rpc.cleanup()
