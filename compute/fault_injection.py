"""Named fault points for the fake drivers.

A fault is ``<step>:<action>[:<seconds>]``: ``fail`` raises InjectedFault,
``hang`` blocks (up to ``seconds``, default one hour, or until the host stops),
``delay`` sleeps ``seconds`` and then carries on, ``crash`` makes the whole
agent vanish at that step as if killed: its RPC server and heartbeats stop
(in-process, through the handler ``godwit-all`` registers; in a process of
its own, the process exits with status 137). Faults come from
``[fake] faults`` and from ``<host dir>/faults.json`` (a list of the same
strings, re-read at every step), so a test can arm a fault in a running agent.
A fault may be limited to one firing with a trailing ``:once``, e.g.
``live_migration:fail:0:once``.
"""

import json
import os
import threading

from oslo_log import log as logging

from godwit import exception

LOG = logging.getLogger(__name__)
ACTIONS = ("fail", "hang", "delay", "crash")

_injectors = {}
_injectors_lock = threading.Lock()


def for_host(host, host_dir, configured=()):
    """The one FaultInjector of a host, shared by its four fake drivers."""
    with _injectors_lock:
        key = os.path.abspath(host_dir)
        if key not in _injectors or _injectors[key].stopping.is_set():
            _injectors[key] = FaultInjector(host, host_dir, configured)
        return _injectors[key]


def parse(spec):
    parts = spec.strip().split(":")
    if len(parts) < 2 or parts[1] not in ACTIONS:
        raise ValueError(f"bad fault {spec!r}: expected <step>:<fail|hang|delay>[:<seconds>]")
    seconds = float(parts[2]) if len(parts) > 2 and parts[2] else None
    once = len(parts) > 3 and parts[3] == "once"
    return parts[0], parts[1], seconds, once


class FaultInjector:
    def __init__(self, host, host_dir, configured=()):
        self.host = host
        self.file = os.path.join(host_dir, "faults.json")
        self.configured = [parse(s) for s in configured if s.strip()]
        self.fired = set()
        self.stopping = threading.Event()
        self.on_crash = None

    def _active(self):
        faults = list(self.configured)
        try:
            with open(self.file) as f:
                faults.extend(parse(s) for s in json.load(f))
        except FileNotFoundError:
            pass
        except (ValueError, OSError) as e:
            LOG.warning("Ignoring unreadable %s: %s", self.file, e)
        return faults

    def check(self, step):
        for name, action, seconds, once in self._active():
            if name != step:
                continue
            key = (name, action, seconds)
            if once:
                if key in self.fired:
                    continue
                self.fired.add(key)
            LOG.warning("Injected fault on %s: %s %s", self.host, step, action)
            if action == "fail":
                raise exception.InjectedFault(step=step, host=self.host)
            if action == "hang":
                self.stopping.wait(seconds if seconds is not None else 3600)
                raise exception.InjectedFault(step=step, host=self.host)
            if action == "delay":
                self.stopping.wait(seconds or 0)
            if action == "crash":
                if self.on_crash is None:
                    os._exit(137)
                self.on_crash()
                self.stopping.wait(seconds if seconds is not None else 3600)
                raise exception.InjectedFault(step=step, host=self.host)
