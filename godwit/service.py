"""Running a service: RPC server, periodic tasks, clean stop on SIGTERM.

A :class:`Service` owns one oslo.messaging RPC server (threading executor)
and any number of periodic tasks, each in a daemon thread that wakes on a
fixed interval or when the service stops. ``godwit-all`` runs several
Services in one process; each console script runs one and waits for a
signal.
"""

import signal
import threading

from oslo_log import log as logging

from godwit import rpc

LOG = logging.getLogger(__name__)


class PeriodicTask:
    """Calls ``func()`` every ``interval`` seconds until stopped."""

    def __init__(self, name, interval, func, initial_delay=None):
        self.name = name
        self.interval = interval
        self.func = func
        self.initial_delay = interval if initial_delay is None else initial_delay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()

    def _run(self):
        if self._stop.wait(self.initial_delay):
            return
        while not self._stop.is_set():
            try:
                self.func()
            except Exception:  # a failing tick must not kill the loop
                LOG.exception("Periodic task %s failed", self.name)
            if self._stop.wait(self.interval):
                return

    def stop(self):
        self._stop.set()

    def wait(self, timeout=5):
        if self._thread.is_alive():
            self._thread.join(timeout)


class Service:
    def __init__(self, conf, transport, topic, server, endpoints, manager=None):
        self.conf = conf
        self.transport = transport
        self.topic = topic
        self.server_name = server
        self.manager = manager
        self.rpcserver = rpc.get_server(transport, topic, server, endpoints)
        self.periodic = []

    def add_periodic(self, name, interval, func, initial_delay=None):
        self.periodic.append(PeriodicTask(name, interval, func, initial_delay))

    def start(self):
        if self.manager is not None and hasattr(self.manager, "init_host"):
            self.manager.init_host()
        self.rpcserver.start()
        if self.manager is not None and hasattr(self.manager, "after_start"):
            self.manager.after_start()
        for task in self.periodic:
            task.start()
        LOG.info("Started %s on topic %s as server %s", type(self.manager).__name__,
                 self.topic, self.server_name)

    def stop(self):
        for task in self.periodic:
            task.stop()
        self.rpcserver.stop()
        if self.manager is not None and hasattr(self.manager, "cleanup_host"):
            self.manager.cleanup_host()

    def wait(self):
        self.rpcserver.wait()
        for task in self.periodic:
            task.wait()


def wait_for_signal(stoppables):
    """Block until SIGTERM or SIGINT, then stop everything cleanly."""
    stop = threading.Event()

    def handler(signum, _frame):
        LOG.info("Caught signal %s, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop.wait(1):
        pass
    for s in stoppables:
        s.stop()
    for s in stoppables:
        if hasattr(s, "wait"):
            s.wait()
