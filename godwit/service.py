"""Running a service: RPC server, periodic tasks, a gentle stop on SIGTERM.

A :class:`Service` owns one oslo.messaging RPC server (threading executor)
and any number of periodic tasks, each in a daemon thread that wakes on a
fixed interval or when the service stops. ``godwit-all`` runs several
Services in one process; each console script runs one and waits for a
signal.

A stop is a clean handover: the RPC server stops taking messages, the
manager's ``stop(grace)`` lets running work finish for up to
``graceful_shutdown_timeout`` seconds (a conductor then releases its moves'
leases, so another takes them at once), and a process whose last threads
still run after that exits anyway: whatever they were doing is recorded as
started, and the next owner finishes it.
"""

import os
import signal
import threading
import time

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
        self.rpcservers = [self.rpcserver]
        self.periodic = []

    def add_rpc_server(self, topic, endpoints):
        """Serve a second topic (another interface, with its own versions) from
        this service, started and stopped with the first."""
        self.rpcservers.append(rpc.get_server(self.transport, topic, self.server_name,
                                              endpoints))

    def add_periodic(self, name, interval, func, initial_delay=None):
        self.periodic.append(PeriodicTask(name, interval, func, initial_delay))

    def start(self):
        if self.manager is not None and hasattr(self.manager, "init_host"):
            self.manager.init_host()
        for server in self.rpcservers:
            server.start()
        if self.manager is not None and hasattr(self.manager, "after_start"):
            self.manager.after_start()
        for task in self.periodic:
            task.start()
        LOG.info("Started %s on topic %s as server %s", type(self.manager).__name__,
                 self.topic, self.server_name)

    def stop(self, grace=0):
        for task in self.periodic:
            task.stop()
        for server in self.rpcservers:
            server.stop()
        self.unfinished = 0
        if self.manager is not None and hasattr(self.manager, "stop"):
            self.unfinished = self.manager.stop(grace) or 0
        if self.manager is not None and hasattr(self.manager, "cleanup_host"):
            self.manager.cleanup_host()

    def wait(self, timeout=None):
        """Wait for in-flight RPC handlers; False if some still run at ``timeout``."""
        def wait_all():
            for server in self.rpcservers:
                server.wait()
        waiter = threading.Thread(target=wait_all, daemon=True)
        waiter.start()
        waiter.join(timeout)
        for task in self.periodic:
            task.wait()
        return not waiter.is_alive()


def wait_for_signal(stoppables, grace=60):
    """Block until SIGTERM or SIGINT, then stop everything, gently (see module)."""
    stop = threading.Event()

    def handler(signum, _frame):
        LOG.info("Caught signal %s, stopping (up to %d s for running work)", signum, grace)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop.wait(1):
        pass
    deadline = time.monotonic() + grace
    for s in stoppables:
        s.stop(grace)
    clean = not any(getattr(s, "unfinished", 0) for s in stoppables)
    for s in stoppables:
        if hasattr(s, "wait"):
            left = max(0.0, deadline - time.monotonic())
            clean = (s.wait(left) is not False) and clean
    if not clean:
        LOG.warning("Work still running %d s after the stop; exiting anyway (the next "
                    "owner finishes it)", grace)
        logging_flush()
        os._exit(0)


def logging_flush():
    import logging as std_logging
    for h in std_logging.getLogger().handlers:
        try:
            h.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
