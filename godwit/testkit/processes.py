"""ProcessCloud: a Godwit cloud whose every service is an OS process of its own.

The conductor, the REST API and one fake compute agent per host run as
``godwit-conductor``, ``godwit-api`` and ``godwit-compute`` processes, each
from its own config file as deployed, talking over RabbitMQ (a fresh vhost
of the local broker unless a transport URL is given) and sharing a database
(a fresh SQLite file unless a database URL is given). A test gets the same
client, host handles, waits and assertions as with the in-process
:class:`~godwit.testkit.cloud.FakeCloud`, and real process boundaries:
:meth:`ProcessCloud.kill` is a SIGKILL, :meth:`ProcessCloud.restart` a new
process on the same config, and each service has a log file to show when a
test fails. Starting one takes about five seconds (an in-process cloud:
under one), so use it for what needs real processes.
"""

import os
import threading

from godwit.testkit import rabbitmq
from godwit.testkit.cloud import DEFAULT_OPTIONS, host_names
from godwit.testkit.deployment import ProcessDeployment
from godwit.testkit.hosts import FakeHostHandle

DEFAULT_CONDUCTORS = ("conductor",)


def option_groups(options):
    """``{"name" or "group.name": value}`` (the kit's way) as ``{group: {name: value}}``."""
    groups = {}
    for key, value in (options or {}).items():
        group, _, name = key.rpartition(".")
        groups.setdefault(group or "DEFAULT", {})[name] = value
    return groups


class ProcessCloud(ProcessDeployment):
    """A started cloud of processes; :meth:`stop` it (the plugin's fixtures do).

    ``hosts``: a number (compute1..N) or the names. ``database_url``: an empty
    database (default: SQLite in ``root``). ``transport_url``: a RabbitMQ vhost
    of this cloud's own (default: a fresh vhost on the local broker, deleted by
    stop()). ``options``: ``{"name" or "group.name": value}`` for every
    service; ``host_options``: ``{host: {...}}`` on top for one agent;
    ``host_paths``: ``{host: instances directory}`` (default: one shared by all
    hosts). ``conductors``: the conductors' names.
    """

    TAG = "testkit"
    EXCHANGE_PREFIX = "godwit-kit-"
    SERVICE_DEFAULTS = DEFAULT_OPTIONS

    def __init__(self, root, hosts=2, database_url=None, transport_url=None, options=None,
                 host_options=None, host_paths=None, conductors=DEFAULT_CONDUCTORS,
                 start_timeout=90):
        root = os.path.abspath(root)
        self._host_paths = dict(host_paths or {})
        self._vhost = None
        self._broker_url = None
        self._rpc_transport = None
        self._conductor_rpc = None
        self._rpc_lock = threading.Lock()
        if transport_url is None:
            self._broker_url = rabbitmq.DEFAULT_BROKER_URL
            transport_url, self._vhost = rabbitmq.create_vhost(self._broker_url)
        try:
            super().__init__(
                root, transport_url,
                database_url or f"sqlite:///{os.path.join(root, 'godwit.sqlite')}",
                host_names(hosts), conductors, options=option_groups(options),
                host_options={h: option_groups(o) for h, o in (host_options or {}).items()})
            self._boot(start_timeout)
        except BaseException as e:
            if hasattr(self, "_services"):
                # The services' own words on why they did not come up.
                e.add_note(f"logs of {root}:\n{self.logs()}")
            self.stop()
            raise

    def _instances_path(self, name):
        path = self._host_paths.get(name)
        return path if path else super()._instances_path(name)

    # --- what FakeCloud offers too ---------------------------------------------
    @staticmethod
    def admin_context():
        """A request context for ``conductor_rpc`` calls, as an admin."""
        from godwit import context as godwit_context

        return godwit_context.get_admin_context()

    @property
    def conductor_rpc(self):
        """The conductor's RPC client (conductor.rpcapi.ConductorClient) over this
        cloud's broker; made at first use."""
        with self._rpc_lock:
            if self._conductor_rpc is None:
                self._conductor_rpc = self._make_conductor_rpc()
            return self._conductor_rpc

    def _make_conductor_rpc(self):
        import oslo_messaging as messaging

        from conductor import rpcapi as conductor_rpcapi
        from godwit import rpc
        from godwit.testkit.cloud import make_conf

        conf = make_conf(self.root / "rpc-client", transport_url=self.transport_url,
                         options={"control_exchange": self.exchange})
        # A transport of this cloud's own, not godwit.rpc's per-process one:
        # stop() closes it, and no other cloud's shares its vhost.
        self._rpc_transport = messaging.get_rpc_transport(
            conf, url=self.transport_url, allowed_remote_exmods=rpc.ALLOWED_EXMODS)
        return conductor_rpcapi.ConductorClient(self._rpc_transport,
                                             timeout=conf.rpc_response_timeout)

    def host(self, name):
        if name not in self.host_names:
            raise KeyError(f"no fake host {name!r} in this cloud: {list(self.host_names)}")
        return FakeHostHandle(name, self.hosts_path,
                              self._instances_path(name).replace("{host}", name))

    def hosts(self):
        return [self.host(name) for name in self.host_names]

    def crash_host(self, name):
        """SIGKILL the agent of ``name`` (as :meth:`kill`)."""
        self.kill(self._host(name))

    def stop_host(self, name):
        """Stop the agent of ``name`` cleanly (SIGTERM)."""
        self.terminate(self._host(name))

    def start_host(self, name):
        """Start the agent of ``name`` again; returns once it serves."""
        self.start(self._host(name))

    def _host(self, name):
        if name not in self.host_names:
            raise KeyError(f"no fake host {name!r} in this cloud: {list(self.host_names)}")
        return name

    # --- processes -----------------------------------------------------------------
    def start(self, name, wait=True, timeout=60):
        """Start service ``name`` (a host, a conductor or "api") after a kill or a
        stop; with ``wait``, return once it serves (an agent: once its conductor
        answered its first report). Returns the pid."""
        return self.start_service(name, wait=wait, timeout=timeout)

    def restart(self, name, down=0, wait=True, timeout=60):
        """SIGKILL ``name`` (if it runs), ``down`` seconds without it, start it;
        with ``wait``, return once it serves. Returns the new pid."""
        return super().restart(name, down=down, wait=wait, timeout=timeout)

    # --- the end ----------------------------------------------------------------------
    def stop(self):
        """Kill every process of the cloud, close its connections and delete the vhost
        it made; a second call does nothing."""
        try:
            if hasattr(self, "_services"):   # not if the constructor failed early
                super().stop()
        finally:
            with self._rpc_lock:
                transport, self._rpc_transport, self._conductor_rpc = (
                    self._rpc_transport, None, None)
            if transport is not None:
                transport.cleanup()
            if getattr(self, "_db", None) is not None:
                from godwit.db import api as db_api

                db_api._databases.pop(self.database_url, None)
                self._db.engine.dispose()
                self._db = None
            vhost, self._vhost = self._vhost, None
            if vhost is not None:
                rabbitmq.delete_vhost(self._broker_url, vhost)
