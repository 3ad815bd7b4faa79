"""FakeCloud: a Godwit cloud in this process, for functional tests.

A conductor, the REST API on a free loopback port and N fake compute hosts
(godwit.cmd.all.LocalCloud), on SQLite under the cloud's state directory or a
given database, and on the in-process transport or a given broker. What a
test gets back: an API client, a conductor RPC client, and a handle per host.
"""

import os
import threading

from compute import rpcapi as compute_rpcapi
from conductor import rpcapi as conductor_rpcapi
from godwit import context as godwit_context
from godwit import rpc
from godwit.cmd import common
from godwit.cmd.all import IN_PROCESS_TRANSPORT, LocalCloud
from godwit.db import api as db_api
from godwit.testing import Client
from godwit.testkit import agents
from godwit.testkit.hosts import FakeHostHandle

# Options a test cloud runs with unless told otherwise.
DEFAULT_OPTIONS = {
    # Heartbeats every second, so that a stopped host is seen down quickly.
    "report_interval": 1,
    # Generous: the test run may share its cores with others and delay
    # heartbeats; a test about down hosts sets a shorter time.
    "service_down_time": 10,
    "rpc_response_timeout": 15,
    "debug": False,
}


# kombu's in-memory broker is one per process: two clouds on it would share
# the "conductor" and "compute.<host>" queues and answer each other.
_in_process_cloud = None
_in_process_lock = threading.Lock()


def make_conf(state_path, database_url=None, transport_url=None, options=None):
    """The configuration of a test cloud. ``options``: {"name" or "group.name": value}."""
    values = dict(DEFAULT_OPTIONS, state_path=str(state_path),
                  transport_url=transport_url or IN_PROCESS_TRANSPORT)
    if database_url:
        values["database.connection"] = database_url
    values.update(options or {})
    defaults = {}
    for key, value in values.items():
        group = key.split(".", 1)[0] if "." in key else None
        # Keyed by the whole "group.name": options of one name in two groups
        # ([vif_bridge] netns, [firewall] netns) are two options.
        defaults[key] = (value, group)
    # argv=[]: the test run's own command line is not Godwit's.
    return common.init([], prog="godwit-testkit", defaults=defaults)


def host_names(hosts):
    """``hosts``: a number (compute1..N) or the names."""
    if isinstance(hosts, int):
        return [f"compute{i}" for i in range(1, hosts + 1)]
    return list(hosts)


_KEEP = object()


class FakeCloud:
    """A started cloud; :meth:`stop` it (the plugin's fixtures do).

    ``compute_rpc_version``: the agents serve compute RPC only up to this
    version of ``compute.rpcapi.HISTORY``, as agents of an earlier release do
    (a version for every host, or {host: version}; None: this release's);
    ``conductor_rpc_version``: the same for the conductor (conductor RPC);
    see godwit.testkit.agents.
    """

    def __init__(self, state_path, hosts=2, database_url=None, transport_url=None,
                 options=None, host_paths=None, compute_rpc_version=None,
                 conductor_rpc_version=None):
        os.makedirs(state_path, exist_ok=True)
        names = host_names(hosts)
        if isinstance(compute_rpc_version, dict):
            self._rpc_versions = dict(compute_rpc_version)
        else:
            self._rpc_versions = dict.fromkeys(names, compute_rpc_version)
        for version in self._rpc_versions.values():
            if version is not None:
                agents.check_older_version(version)
        if conductor_rpc_version is not None:
            agents.check_older_version(conductor_rpc_version, "conductor")
        self._conductor_rpc_version = conductor_rpc_version
        self._wire = {}
        self.transport_url = transport_url or IN_PROCESS_TRANSPORT
        self._stopped = False
        self._claim_in_process_broker()
        self.conf = make_conf(state_path, database_url, self.transport_url, options)
        self.database_url = self.conf.database.connection
        self._host_paths = dict(host_paths or {})
        #: Godwit's internals (godwit.cmd.all.LocalCloud), outside the kit's
        #: stable interface.
        self.local_cloud = LocalCloud(self.conf, hosts=names, api_port=0,
                                      host_paths=self._host_paths,
                                      transport_url=self.transport_url)
        self.local_cloud.prepare_compute = self._prepare_agent
        self.local_cloud.prepare_conductor = self._prepare_conductor
        try:
            self.local_cloud.start()
        except BaseException:
            self._release_in_process_broker()
            raise
        self.client = Client(self.local_cloud.api_url)
        transport = rpc.get_transport(self.conf, self.transport_url)
        self.conductor_rpc = conductor_rpcapi.ConductorClient(
            transport, timeout=self.conf.rpc_response_timeout)

    @property
    def api_url(self):
        return self.local_cloud.api_url

    @property
    def host_names(self):
        return list(self.local_cloud.host_names)

    @staticmethod
    def admin_context():
        """A request context for ``conductor_rpc`` calls, as an admin."""
        return godwit_context.get_admin_context()

    def host(self, name):
        if name not in self.local_cloud.host_names:
            raise KeyError(f"no fake host {name!r} in this cloud: {self.host_names}")
        path = self._host_paths.get(name) or self.conf.instances_path
        return FakeHostHandle(name, self.conf.fake.hosts_path, path.replace("{host}", name))

    def hosts(self):
        return [self.host(name) for name in self.host_names]

    # --- the hosts' agents ---------------------------------------------------
    def crash_host(self, name):
        """The agent of ``name`` vanishes as if SIGKILLed (in-process: its RPC
        server, heartbeats and monitors stop; its records stay)."""
        self.local_cloud.crash_compute(name)

    def stop_host(self, name):
        """Stop the agent of ``name`` cleanly."""
        self.local_cloud.stop_compute(name)

    def start_host(self, name, rpc_version=_KEEP):
        """Start the agent of ``name`` again after a crash or a stop.
        ``rpc_version``: the compute RPC version the new agent serves (an
        upgrade: None, this release's); by default what the last one served."""
        if rpc_version is not _KEEP:
            if rpc_version is not None:
                agents.check_older_version(rpc_version)
            self._rpc_versions[name] = rpc_version
        self.local_cloud.restart_compute(name)

    def rpc_version(self, name):
        """The compute RPC version the agent of ``name`` serves."""
        return self._rpc_versions.get(name) or compute_rpcapi.VERSION

    def rpc_calls(self, name):
        """(method, RPC version) of every message the current agent of ``name``
        received, in order, as it saw them on the wire."""
        return self._wire[name].calls()

    def conductor_rpc_calls(self):
        """(method, RPC version) of every message the conductor received on its
        topic, in order, as it saw them on the wire."""
        return self._conductor_wire.calls()

    def _prepare_agent(self, host, svc):
        self._wire[host] = agents.prepare(svc, self._rpc_versions.get(host))

    def _prepare_conductor(self, svc):
        self._conductor_wire = agents.prepare(svc, self._conductor_rpc_version, "conductor")

    def stop(self):
        """Stop every service; a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self.local_cloud.stop()
        # Its database's pooled connections would stay open (several file
        # descriptors per cloud; a suite of a few hundred clouds ran out).
        db_api.release_database(self.database_url)
        self._release_in_process_broker()

    def _claim_in_process_broker(self):
        global _in_process_cloud
        if self.transport_url != IN_PROCESS_TRANSPORT:
            return
        with _in_process_lock:
            if _in_process_cloud is not None:
                raise RuntimeError(
                    "another FakeCloud on the in-process transport runs in this process; "
                    "stop it first, or give this one a transport_url of its own")
            _in_process_cloud = self

    def _release_in_process_broker(self):
        global _in_process_cloud
        with _in_process_lock:
            if _in_process_cloud is self:
                _in_process_cloud = None
