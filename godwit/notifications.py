"""Versioned notifications through the oslo.messaging notifier.

Event types follow Nova's (``instance.live_migration_pre.start`` ...); the
payload is a small versioned dict. Which driver sends them is configured
in ``[oslo_messaging_notifications] driver`` (``messagingv2`` for a broker,
``log``, ``test``); with none configured, nothing is sent.
"""

import contextlib
import json

import oslo_messaging as messaging
from oslo_log import log as logging

from godwit import context as godwit_context
from godwit import controller, exception, phases, rpc, states

LOG = logging.getLogger(__name__)
PAYLOAD_VERSION = "1.0"

#: MigrationPayload: every phase change of every move (docs/controller.md).
#: 1.0 - migration (controller.MIGRATION_FIELDS), previous_status, event,
#:       instance (uuid, display_name, host, node, state, task_state,
#:       power_state, tenant_id, user_id), reason.
MIGRATION_PAYLOAD_VERSION = "1.0"
#: Final statuses announced as migration.error (priority ERROR), not .end.
ERROR_ENDS = frozenset((states.FAILED, states.ERROR_MIGRATION))


def instance_payload(instance, **extra):
    data = {"uuid": instance["uuid"], "display_name": instance.get("display_name"),
            "host": instance.get("host"), "node": instance.get("node"),
            "state": instance.get("vm_state"), "task_state": instance.get("task_state"),
            "power_state": instance.get("power_state"),
            "tenant_id": instance.get("project_id"), "user_id": instance.get("user_id")}
    data.update(extra)
    return {"godwit_object.name": "InstanceActionPayload",
            "godwit_object.version": PAYLOAD_VERSION, "godwit_object.data": data}


def migration_payload(before, after, event, instance):
    """The payload of a migration.* notification (MIGRATION_PAYLOAD_VERSION)."""
    data = {"migration": controller.migration_view(after),
            "previous_status": before["status"] if before else None, "event": event,
            "instance": instance_payload(instance)["godwit_object.data"] if instance
            else {"uuid": after["instance_uuid"]},
            "reason": after.get("error_message")}
    return {"godwit_object.name": "MigrationPayload",
            "godwit_object.version": MIGRATION_PAYLOAD_VERSION, "godwit_object.data": data}


class Notifier:
    """Sends on ``[oslo_messaging_notifications] transport_url``, or else on the
    RPC transport's URL."""

    def __init__(self, conf, rpc_url, publisher_id):
        url = conf.oslo_messaging_notifications.transport_url or rpc_url
        transport = messaging.get_notification_transport(conf, url=url)
        # retry=1: a broker that went away must not hold up the thread that
        # made the change (an engine worker, an API request) for ever; a lost
        # notification loses nothing (the row is the truth).
        self.notifier = messaging.Notifier(transport, publisher_id=publisher_id,
                                           topics=["versioned_notifications"],
                                           serializer=rpc.RequestContextSerializer(),
                                           retry=1)
        # oslo.messaging's is_enabled() is False only for ['noop']; Godwit's
        # default, no driver at all, sends nothing either, and then nothing
        # is read to build a payload.
        drivers = [d for d in conf.oslo_messaging_notifications.driver if d != "noop"]
        self.enabled = bool(drivers)

    def follow_moves(self, db):
        """Announce every phase change ``db`` commits in this process
        (migration.start, migration.phase, migration.end or migration.error).
        One announcer per database object: a process running the API and the
        conductor side by side (godwit-all) announces each change once."""
        if db.on_phase_change is None:
            self._db = db
            db.on_phase_change = self.migration_changed

    def migration_changed(self, before, after, event):
        if not self.enabled:
            return
        try:
            instance = self._db.instance_get(after["instance_uuid"], read_deleted=True)
        except exception.InstanceNotFound:
            instance = None
        ctxt = controller_context(after) or godwit_context.get_admin_context()
        payload = migration_payload(before, after, event, instance)
        if before is None:
            self.info(ctxt, "migration.start", payload)
        else:
            self.info(ctxt, "migration.phase", payload)
        if phases.is_final(after["status"]):
            if after["status"] in ERROR_ENDS:
                self.error(ctxt, "migration.error", payload)
            else:
                self.info(ctxt, "migration.end", payload)

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


def controller_context(migration):
    """The requester's context saved with the move, so that its notifications
    carry the request id the caller got (None if there is none). Parsed here,
    not with godwit.db.moves.step_data: compute agents send notifications too
    and must not import the database layer."""
    try:
        saved = json.loads(migration["step_data"]).get("context")
    except (TypeError, ValueError, AttributeError):
        return None
    return godwit_context.RequestContext.from_dict(saved) if saved else None
