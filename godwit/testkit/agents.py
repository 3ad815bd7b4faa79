"""Services of an earlier release, as a rolling upgrade meets them (test kit 1.2).

- :class:`OlderEndpoint`: the RPC endpoint of a compute agent (or conductor)
  of an earlier release, one that serves its interface only up to an older
  version of the client module's ``HISTORY``. Its target says that version,
  so oslo.messaging's dispatcher answers any newer call ``UnsupportedVersion``
  exactly as it does for a real older service, and the methods added after it
  (``ADDED_IN``) are not there. It registers as a service of the newest
  release that served that version did: with that version when that release
  recorded it (``RECORDED_SINCE``), else without it, so the services table
  has none (which ``auto`` counts as the oldest version served).
- :class:`WireLog`: the method and RPC version of every message a service's
  RPC server received, in order: what was on the wire, as the service saw it.

Only the test kit uses these (``FakeCloud(compute_rpc_version=...,
conductor_rpc_version=...)``, ``FakeCloud.rpc_calls``); no service of a
deployment does. What an older service *does* is this release's code: only
what it serves and what it registers are the older release's.
"""

import threading

import oslo_messaging as messaging

from compute import rpcapi as compute_rpcapi
from conductor import rpcapi as conductor_rpcapi
from godwit import rpc, upgrade

#: Per interface, the oldest version whose services (of the newest release
#: serving it) record their RPC version when they register: the release that
#: brought conductor RPC 2.2 serves compute 2.1. Agents serving only compute
#: 2.0, and conductors serving only 2.0 or 2.1, are of earlier releases.
RECORDED_SINCE = {"compute": "2.1", "conductor": "2.2"}
_MODULES = {"compute": compute_rpcapi, "conductor": conductor_rpcapi}


def check_older_version(version, interface="compute"):
    """``version`` if a service of this release can pretend to serve only it."""
    history = _MODULES[interface].HISTORY
    if version not in history:
        raise ValueError(f"{interface} RPC {version!r} is not served by this release "
                         f"({', '.join(history)}); an older service serves one of these")
    return version


def recorded(version, interface="compute"):
    """Whether a service serving ``version`` tells its RPC version when it registers."""
    return upgrade.parse(version) >= upgrade.parse(RECORDED_SINCE[interface])


class OlderEndpoint:
    """An endpoint that serves ``interface`` RPC only up to ``version`` (see the
    module); everything else is the wrapped manager's."""

    def __init__(self, manager, version, interface="compute"):
        module = _MODULES[interface]
        self._manager = manager
        self._version = check_older_version(version, interface)
        self.target = messaging.Target(version=version)
        self._added_in = module.ADDED_IN
        self._missing = frozenset(m for m, added in module.ADDED_IN.items()
                                  if upgrade.parse(added) > upgrade.parse(version))

    def __getattr__(self, name):
        if name in self._missing:
            raise AttributeError(f"{name} came with RPC {self._added_in[name]}; this "
                                 f"service serves {self._version}")
        return getattr(self._manager, name)


class WireLog:
    """(method, version) of every message a service received, oldest first."""

    def __init__(self):
        self._calls = []
        self._lock = threading.Lock()

    def record(self, message):
        with self._lock:
            self._calls.append((message.get("method"), message.get("version", "1.0")))

    def calls(self):
        with self._lock:
            return list(self._calls)


class _RecordingDispatcher:
    """oslo.messaging's dispatcher of an RPC server, writing each message into a
    WireLog before it dispatches it (the server's public ``dispatcher``)."""

    def __init__(self, inner, log):
        self._inner = inner
        self._log = log

    def dispatch(self, incoming):
        self._log.record(incoming.message)
        return self._inner.dispatch(incoming)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def prepare(svc, version=None, interface="compute"):
    """Make the Service ``svc`` of ``interface`` (built, not started; its first
    RPC server is the interface's) serve only ``version`` (None: this release's
    newest) and record its messages; returns its WireLog."""
    if version is not None and \
            check_older_version(version, interface) != _MODULES[interface].VERSION:
        svc.manager.rpc_version = version if recorded(version, interface) else None
        server = rpc.get_server(svc.transport, svc.topic, svc.server_name,
                                [OlderEndpoint(svc.manager, version, interface)])
        svc.rpcservers[svc.rpcservers.index(svc.rpcserver)] = server
        svc.rpcserver = server
    log = WireLog()
    svc.rpcserver.dispatcher = _RecordingDispatcher(svc.rpcserver.dispatcher, log)
    return log
