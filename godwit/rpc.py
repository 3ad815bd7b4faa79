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

import threading

import oslo_messaging as messaging
from oslo_messaging.rpc import dispatcher
from oslo_serialization import jsonutils

from godwit import context as godwit_context

__all__ = ["get_transport", "get_server", "get_client", "get_notifier", "RequestContextSerializer"]

ALLOWED_EXMODS = ["godwit.exception"]

_transports = {}
_transports_lock = threading.Lock()


def get_transport(conf, url=None):
    """One RPC transport per URL per process, shared by every service in it."""
    url = url or conf.transport_url
    key = (id(conf), url)
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


class RequestContextSerializer(messaging.Serializer):
    """Sends the RequestContext as a dict; entities are plain JSON (IDs, dicts)."""

    def serialize_entity(self, ctxt, entity):
        return jsonutils.to_primitive(entity, convert_instances=True)

    def deserialize_entity(self, ctxt, entity):
        return entity

    def serialize_context(self, ctxt):
        return ctxt.to_dict()

    def deserialize_context(self, ctxt):
        return godwit_context.RequestContext.from_dict(ctxt)


def get_server(transport, topic, server, endpoints):
    target = messaging.Target(topic=topic, server=server)
    access_policy = dispatcher.DefaultRPCAccessPolicy  # no _private methods over RPC
    return messaging.get_rpc_server(transport, target, endpoints,
                                    serializer=RequestContextSerializer(),
                                    access_policy=access_policy)


def get_client(transport, topic, version_cap=None, timeout=None):
    target = messaging.Target(topic=topic, version="1.0")
    return messaging.get_rpc_client(transport, target, version_cap=version_cap,
                                    serializer=RequestContextSerializer(), timeout=timeout)


def get_notifier(conf, transport_url, publisher_id):
    """Versioned notifications (instance.live_migration_pre.start, ...)."""
    transport = messaging.get_notification_transport(conf, url=transport_url)
    return messaging.Notifier(transport, publisher_id=publisher_id, driver="messagingv2",
                              topics=["versioned_notifications"],
                              serializer=RequestContextSerializer())
