"""Versioned notifications through the oslo.messaging notifier.

Event types follow Nova's (``instance.live_migration_pre.start`` ...); the
payload is a small versioned dict. Which driver sends them is configured
in ``[oslo_messaging_notifications] driver`` (``messagingv2`` for a broker,
``log``, ``test``); with none configured, nothing is sent.
"""

import contextlib

import oslo_messaging as messaging
from oslo_log import log as logging

from godwit import rpc

LOG = logging.getLogger(__name__)
PAYLOAD_VERSION = "1.0"


def instance_payload(instance, **extra):
    data = {"uuid": instance["uuid"], "display_name": instance.get("display_name"),
            "host": instance.get("host"), "node": instance.get("node"),
            "state": instance.get("vm_state"), "task_state": instance.get("task_state"),
            "power_state": instance.get("power_state"),
            "tenant_id": instance.get("project_id"), "user_id": instance.get("user_id")}
    data.update(extra)
    return {"godwit_object.name": "InstanceActionPayload",
            "godwit_object.version": PAYLOAD_VERSION, "godwit_object.data": data}


class Notifier:
    """Sends on ``[oslo_messaging_notifications] transport_url``, or else on the
    RPC transport's URL."""

    def __init__(self, conf, rpc_url, publisher_id):
        url = conf.oslo_messaging_notifications.transport_url or rpc_url
        transport = messaging.get_notification_transport(conf, url=url)
        self.notifier = messaging.Notifier(transport, publisher_id=publisher_id,
                                           topics=["versioned_notifications"],
                                           serializer=rpc.RequestContextSerializer())

    def info(self, ctxt, event_type, payload):
        try:
            self.notifier.info(ctxt, event_type, payload)
        except Exception:  # a lost notification must not fail the operation
            LOG.exception("Could not send notification %s", event_type)

    def error(self, ctxt, event_type, payload):
        try:
            self.notifier.error(ctxt, event_type, payload)
        except Exception:
            LOG.exception("Could not send notification %s", event_type)

    @contextlib.contextmanager
    def phase(self, ctxt, event, instance, **extra):
        """instance.<event>.start, then .end, or .error if the block raises."""
        self.info(ctxt, f"instance.{event}.start", instance_payload(instance, **extra))
        try:
            yield
        except Exception as e:
            self.error(ctxt, f"instance.{event}.error",
                       instance_payload(instance, fault=str(e), **extra))
            raise
        self.info(ctxt, f"instance.{event}.end", instance_payload(instance, **extra))
