"""The fake hosts' agents as a rolling upgrade meets them (test kit 1.2).

- :class:`OlderAgentEndpoint`: the RPC endpoint of an agent of an earlier
  release, one that serves compute RPC only up to an older version of
  ``compute.rpcapi.HISTORY``. Its target says that version, so
  oslo.messaging's dispatcher answers any newer call ``UnsupportedVersion``
  exactly as it does for a real older agent, and the methods added after it
  (``compute.rpcapi.ADDED_IN``) are not there. It registers as an agent of
  the newest release that served that version did: with that version when
  that release recorded it (compute RPC ``RECORDED_SINCE`` and later), else
  as conductor RPC 2.0 without it, so the services table has none (which
  ``auto`` counts as the oldest version served).
- :class:`WireLog`: the method and RPC version of every message an agent's
  RPC server received, in order: what was on the wire, as the agent saw it.

Only the test kit uses these (``FakeCloud(compute_rpc_version=...)``,
``FakeCloud.rpc_calls``); no service of a deployment does.
"""

import threading

import oslo_messaging as messaging

from compute import rpcapi as compute_rpcapi
from godwit import rpc, upgrade

#: The oldest compute RPC version whose agents (of the newest release serving
#: it) tell the conductor their RPC version when they register: the release that
#: brought conductor RPC 2.2 serves compute 2.1. Agents serving only 2.0 are of
#: earlier releases, which did not.
RECORDED_SINCE = "2.1"


def check_older_version(version):
    """``version`` if an agent of this release can pretend to serve only it."""
    history = compute_rpcapi.HISTORY
    if version not in history:
        raise ValueError(f"compute RPC {version!r} is not served by this release "
                         f"({', '.join(history)}); an older agent serves one of these")
    return version


class OlderAgentEndpoint:
    """A compute agent's endpoint that serves compute RPC only up to ``version``
    (see the module); everything else is the wrapped manager's."""

    def __init__(self, manager, version):
        self._manager = manager
        self._version = check_older_version(version)
        self.target = messaging.Target(version=version)
        self._missing = frozenset(m for m, added in compute_rpcapi.ADDED_IN.items()
                                  if upgrade.parse(added) > upgrade.parse(version))

    def __getattr__(self, name):
        if name in self._missing:
            raise AttributeError(f"{name} came with compute RPC {compute_rpcapi.ADDED_IN[name]}; "
                                 f"this agent serves {self._version}")
        return getattr(self._manager, name)


class WireLog:
    """(method, version) of every message an agent received, oldest first."""

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


def prepare(svc, version=None):
    """Make the compute Service ``svc`` (built, not started) serve only
    ``version`` (None: this release's newest) and record its messages; returns
    its WireLog."""
    if version is not None and check_older_version(version) != compute_rpcapi.VERSION:
        recorded = upgrade.parse(version) >= upgrade.parse(RECORDED_SINCE)
        svc.manager.rpc_version = version if recorded else None
        server = rpc.get_server(svc.transport, svc.topic, svc.server_name,
                                [OlderAgentEndpoint(svc.manager, version)])
        svc.rpcserver = server
        svc.rpcservers = [server]
    log = WireLog()
    svc.rpcserver.dispatcher = _RecordingDispatcher(svc.rpcserver.dispatcher, log)
    return log
