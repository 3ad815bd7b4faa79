"""Named fault points for the fake drivers.

A fault is ``<step>:<action>[:<seconds>]``: ``fail`` raises InjectedFault,
``hang`` blocks (up to ``seconds``, default one hour, or until the host stops),
``delay`` sleeps ``seconds`` and then carries on, ``crash`` makes the whole
agent vanish at that step as if killed: its RPC server and heartbeats stop
(in-process, through the handler ``godwit-all`` registers; in a process of
its own, the process exits with status 137). Faults come from
``[fake] faults`` and from ``<host dir>/faults.json`` (a list of the same
strings, re-read at every step), so a test can arm a fault in a running agent.
A fault may be limited to one instance with ``<step>@<instance uuid>``, so
that tests running several moves side by side on shared hosts hold or break
exactly one of them. A fault may be limited to one firing with a trailing
``:once``, e.g.
``live_migration:fail:0:once``; what fired is kept in ``<host dir>/fired.json``,
so a ``:once`` fault stays fired when the agent restarts (a crash fault would
otherwise kill the restarted agent at the same step again).

``after`` in place of ``crash`` (``<step>:after``) lets the step do its work
and kills the process as it returns: "did it, died before recording it".
Drivers call :meth:`FaultInjector.done` at the end of such steps.
"""

import json
import os
import threading

from oslo_log import log as logging

from godwit import exception

LOG = logging.getLogger(__name__)
ACTIONS = ("fail", "hang", "delay", "crash", "after")

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
        raise ValueError(f"bad fault {spec!r}: expected "
                         "<step>:<fail|hang|delay|crash|after>[:<seconds>][:once]")
    seconds = float(parts[2]) if len(parts) > 2 and parts[2] else None
    once = len(parts) > 3 and parts[3] == "once"
    return parts[0], parts[1], seconds, once


class FaultInjector:
    def __init__(self, host, host_dir, configured=()):
        self.host = host
        self.file = os.path.join(host_dir, "faults.json")
        self.fired_file = os.path.join(host_dir, "fired.json")
        self.configured = [parse(s) for s in configured if s.strip()]
        self.stopping = threading.Event()
        self.on_crash = None
        self._lock = threading.Lock()

    def _fire_once(self, key):
        """True the first time ``key`` fires on this host, across restarts."""
        with self._lock:
            try:
                with open(self.fired_file) as f:
                    fired = {tuple(k) for k in json.load(f)}
            except (FileNotFoundError, ValueError):
                fired = set()
            if key in fired:
                return False
            fired.add(key)
            os.makedirs(os.path.dirname(self.fired_file), exist_ok=True)
            tmp = f"{self.fired_file}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(sorted(list(k) for k in fired), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.fired_file)
            return True

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

    @staticmethod
    def _matches(name, step, instance):
        """``name`` is ``step`` or ``step@<uuid>`` of ``instance`` (a dict or a uuid)."""
        if name == step:
            return True
        base, _, scope = name.partition("@")
        if base != step or not scope or instance is None:
            return False
        uuid = instance.get("uuid") if isinstance(instance, dict) else instance
        return uuid == scope

    def check(self, step, instance=None):
        for name, action, seconds, once in self._active():
            if action == "after" or not self._matches(name, step, instance):
                continue
            if once and not self._fire_once((name, action, seconds)):
                continue
            LOG.warning("Injected fault on %s: %s %s", self.host, step, action)
            if action == "fail":
                raise exception.InjectedFault(step=step, host=self.host)
            if action == "hang":
                self.stopping.wait(seconds if seconds is not None else 3600)
                raise exception.InjectedFault(step=step, host=self.host)
            if action == "delay":
                self.stopping.wait(seconds or 0)
            if action == "crash":
                self._crash(step, seconds)

    def armed(self, step, instance=None):
        """Whether a fault is armed for ``step`` (of ``instance``), whatever its
        action: for faults that are a condition rather than an event, such as
        ``live_migration_converge`` (a guest whose migration never converges)."""
        return any(action != "after" and self._matches(name, step, instance)
                   for name, action, _seconds, _once in self._active())

    def done(self, step, instance=None):
        """The step ``step`` did its work: an ``after`` fault kills the process now,
        before anyone hears of it."""
        for name, action, seconds, once in self._active():
            if action != "after" or not self._matches(name, step, instance):
                continue
            if once and not self._fire_once((name, action, seconds)):
                continue
            LOG.warning("Injected fault on %s: %s done, then the process dies", self.host,
                        step)
            self._crash(step, seconds)

    def _crash(self, step, seconds):
        if self.on_crash is None:
            os._exit(137)
        self.on_crash()
        self.stopping.wait(seconds if seconds is not None else 3600)
        raise exception.InjectedFault(step=step, host=self.host)
