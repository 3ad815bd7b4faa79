"""RPC plumbing over oslo.messaging.

Transports: ``rabbit://`` for real deployments; ``kombu+memory:////`` for
one process (``godwit-all`` and fast tests). We avoid ``fake://``: it polls
with a 50 ms sleep, which would dominate every step of a migration.

Servers use oslo.messaging's threading executor. Godwit does not use
eventlet (its maintainers advise against it for new projects and
oslo.messaging deprecated its eventlet executor), so nothing is monkey
patched and a blocking call only blocks its own thread.

Example, a server and a client in one process::

    conf = godwit.conf.parse_args([])
    transport = get_transport(conf, "kombu+memory:////")
    server = get_server(transport, "compute", "host1", [endpoint])
    server.start()
    client = get_client(transport, "compute", version_cap="1.0")
    client.prepare(server="host1").call(ctxt, "ping")
"""

import datetime
import queue
import socket
import threading
import time
from concurrent import futures

import futurist
import oslo_messaging as messaging
from futurist import _utils as futurist_utils
from oslo_messaging.rpc import dispatcher
from oslo_serialization import jsonutils
from oslo_utils import timeutils

from godwit import context as godwit_context
from godwit import exception

__all__ = ["get_transport", "get_server", "get_client", "get_notifier", "RequestContextSerializer",
           "refusals"]

ALLOWED_EXMODS = ["godwit.exception"]

#: Decorator for RPC endpoint methods: a refusal (exception.REFUSALS) goes back
#: to the caller as usual but is not logged with a traceback by oslo.messaging
#: ("Exception during message handling"); a 409 is not an error of this
#: service. Anything else still is.
refusals = messaging.expected_exceptions(*exception.REFUSALS)

_transports = {}
_transports_lock = threading.Lock()


class _MemoryWakeup:
    """Lets kombu's in-memory consumers sleep until a message is put.

    oslo.messaging sets kombu's ``polling_interval`` to 0 for ``memory://``
    ("to speed up tests"), so every consumer thread (one per RPC server and
    reply queue) spins through its queues, taking a large share of the
    process's CPU (and the GIL) from the threads doing the work. Instead a
    consumer that finds its queues empty registers an event under each of
    them, looks once more (a put in between is then either seen or signals
    the event), and waits; a put signals only the consumers of its queue.
    Every way a message enters a memory queue goes through ``_put`` or
    ``_put_fanout`` (redelivery too), and oslo.messaging sets no prefetch
    limit, so nothing else makes a message consumable. The wait is still
    bounded (``MAX_WAIT``) as a safety net.
    """

    MAX_WAIT = 0.05

    def __init__(self):
        self.lock = threading.Lock()
        self.waiters = {}   # queue name -> set of threading.Event

    def register(self, event, queues):
        with self.lock:
            for name in queues:
                self.waiters.setdefault(name, set()).add(event)

    def unregister(self, event, queues):
        with self.lock:
            for name in queues:
                events = self.waiters.get(name)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self.waiters[name]

    def notify(self, name=None):
        with self.lock:
            if name is None:
                events = [e for evs in self.waiters.values() for e in evs]
            else:
                events = list(self.waiters.get(name, ()))
        for event in events:
            event.set()


_memory_wakeup = None


def _install_memory_wakeup():
    """Patch kombu's memory transport once per process (idempotent)."""
    global _memory_wakeup
    if _memory_wakeup is not None:
        return
    from kombu.transport import memory
    wakeup = _MemoryWakeup()
    put, put_fanout = memory.Channel._put, memory.Channel._put_fanout

    def _put(self, queue, message, **kwargs):
        put(self, queue, message, **kwargs)
        wakeup.notify(queue)

    def _put_fanout(self, exchange, message, routing_key=None, **kwargs):
        put_fanout(self, exchange, message, routing_key, **kwargs)
        wakeup.notify()

    def drain_events(self, connection, timeout=None):
        # kombu.transport.virtual.Transport.drain_events, with the sleep
        # between polls replaced by a wait for a put to one of our queues.
        start = time.monotonic()
        get = self.cycle.get
        event = self.__dict__.get("_godwit_wakeup")
        if event is None:
            event = self._godwit_wakeup = threading.Event()
        while True:
            try:
                get(self._deliver, timeout=timeout)
                return
            except queue.Empty:
                pass
            wait = wakeup.MAX_WAIT
            if timeout is not None:
                left = timeout - (time.monotonic() - start)
                if left <= 0:
                    raise socket.timeout()
                wait = min(wait, left)
            names = {name for channel in self.channels for name in channel._active_queues}
            event.clear()
            wakeup.register(event, names)
            try:
                try:
                    get(self._deliver, timeout=timeout)
                    return
                except queue.Empty:
                    pass
                event.wait(wait)
            finally:
                wakeup.unregister(event, names)

    memory.Channel._put, memory.Channel._put_fanout = _put, _put_fanout
    memory.Transport.drain_events = drain_events
    _memory_wakeup = wakeup


def get_transport(conf, url=None):
    """One RPC transport per URL per process, shared by every service in it."""
    url = url or conf.transport_url
    key = (id(conf), url)
    if url.startswith(("kombu+memory:", "memory:")):
        _install_memory_wakeup()
    with _transports_lock:
        if key not in _transports:
            transport = messaging.get_rpc_transport(
                conf, url=url, allowed_remote_exmods=ALLOWED_EXMODS)
            transport.godwit_url = url  # notifications default to the same broker
            _transports[key] = transport
        return _transports[key]


def cleanup():
    with _transports_lock:
        transports = list(_transports.values())
        _transports.clear()
    # Closing a transport waits on its connections; do them side by side.
    threads = [threading.Thread(target=t.cleanup, daemon=True) for t in transports]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


_SIMPLE_TYPES = frozenset((str, int, type(None), bool, float))


def to_primitive(value):
    """``jsonutils.to_primitive(value, convert_instances=True)``, the same result,
    with a fast path for what Godwit sends (dicts, lists and scalars from
    database rows, naive datetimes); anything else goes to jsonutils."""
    kind = type(value)
    if kind in _SIMPLE_TYPES:
        return value
    if kind is dict:
        return {to_primitive(k): to_primitive(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [to_primitive(v) for v in value]
    if kind is datetime.datetime:
        return value.strftime(timeutils.PERFECT_TIME_FORMAT)
    return jsonutils.to_primitive(value, convert_instances=True)


class RequestContextSerializer(messaging.Serializer):
    """Sends the RequestContext as a dict; entities are plain JSON (IDs, dicts)."""

    def serialize_entity(self, ctxt, entity):
        return to_primitive(entity)

    def deserialize_entity(self, ctxt, entity):
        return entity

    def serialize_context(self, ctxt):
        return ctxt.to_dict()

    def deserialize_context(self, ctxt):
        return godwit_context.RequestContext.from_dict(ctxt)


def _nothing():
    pass


class _PromptStopThreadPool(futurist.ThreadPoolExecutor):
    """oslo.messaging's "threading" executor (futurist's thread pool), whose
    shutdown does not take a second.

    An idle futurist worker looks whether it should stop only when its wait
    for work times out (``ThreadWorker.MAX_IDLE_FOR``, 1 s), so
    ``shutdown(wait=True)``, which an RPC server's ``wait()`` calls, took a
    second for every server: the in-process cloud's stop, and so every test
    kit ``godwit_cloud``, cost a second. Here the queued work is finished and
    the workers are told to stop exactly as futurist does it, and then one
    no-op item per worker wakes them at once instead of a second later.
    """

    def shutdown(self, wait=True, **kwargs):
        if wait:
            self._work_queue.join()    # every message taken is handled first
        super().shutdown(wait=False, **kwargs)   # marks the workers stopped
        for _ in range(len(self._workers)):
            self._work_queue.put(futurist_utils.WorkItem(futures.Future(), _nothing))
        if wait:
            super().shutdown(wait=True)   # only joins the workers now


def _in_process(transport):
    return getattr(transport, "godwit_url", "").startswith(("kombu+memory:", "memory:"))


def get_server(transport, topic, server, endpoints):
    target = messaging.Target(topic=topic, server=server)
    access_policy = dispatcher.DefaultRPCAccessPolicy  # no _private methods over RPC
    rpcserver = messaging.get_rpc_server(transport, target, endpoints,
                                         serializer=RequestContextSerializer(),
                                         access_policy=access_policy)
    if _in_process(transport):
        # Only where stopping is frequent (test clouds, godwit-all): the
        # deployed services stop once, and keep futurist's pool untouched.
        rpcserver._executor_cls = _PromptStopThreadPool
    return rpcserver


def get_client(transport, topic, version_cap=None, timeout=None, version="1.0"):
    target = messaging.Target(topic=topic, version=version)
    return messaging.get_rpc_client(transport, target, version_cap=version_cap,
                                    serializer=RequestContextSerializer(), timeout=timeout)


def get_notifier(conf, transport_url, publisher_id):
    """Versioned notifications (instance.live_migration_pre.start, ...)."""
    transport = messaging.get_notification_transport(conf, url=transport_url)
    return messaging.Notifier(transport, publisher_id=publisher_id, driver="messagingv2",
                              topics=["versioned_notifications"],
                              serializer=RequestContextSerializer())
