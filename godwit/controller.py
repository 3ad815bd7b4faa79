"""The controllers' RPC interface: request, steer and follow moves over RabbitMQ.

Cloud controllers that issue migrate and resize calls use this client. It talks
to the conductor on a topic of its own (:data:`TOPIC`), apart from the agents'
internal RPC, with a version history of its own, so the internal protocol can
change without breaking controllers. Every call answers at once: with the
migration (a dict, :data:`MIGRATION_FIELDS`), or with a refusal raised as the
same ``godwit.exception`` class the REST API turns into 400, 403, 404 or 409
(its ``code`` says which). No call waits for the move itself; follow it with
notifications (docs/controller.md) or :meth:`ControllerClient.migration`.

Example::

    from godwit.controller import ControllerClient

    client = ControllerClient("rabbit://ctl:secret@broker:5672/godwit", roles=["admin"])
    m = client.live_migrate(server_id)            # host chosen by the scheduler
    print(m["id"], m["status"], m["dest_compute"])
    client.abort(server_id, m["id"])

The caller's roles (``roles=``, or a ``ctxt=`` per call) go through the same
policy as the REST API: moves are admin-only by default.

Version history (the conductor serves every version of the same major):

* 1.0 - live_migrate, migrate, resize, confirm_resize, revert_resize, abort,
  force_complete, migration, migrations.
* 1.1 - live_migration_dry_run.
* 1.2 - live_migration_set_speed, live_migration_set_downtime (a running live
  migration's bandwidth cap and max downtime, as the REST API's Godwit
  extension actions set-speed and set-downtime).

Rules for changing it: a new call or a new optional argument is a minor
version (1.1); the client sends the new form only when its cap allows
(``can_send_version``) and the server keeps accepting every 1.x call. Anything
else is a new major version, served beside the old one for a release.
"""

import uuid

import oslo_messaging as messaging

from godwit import context as godwit_context
from godwit import rpc

__all__ = ["ControllerClient", "TOPIC", "VERSION", "MIGRATION_FIELDS", "migration_view",
           "MoveEvents", "listen", "NOTIFICATION_TOPIC"]

#: Where the notifications of every move go (priority info or error).
NOTIFICATION_TOPIC = "versioned_notifications"

TOPIC = "godwit_controller"
VERSION = "1.2"
BASE_VERSION = "1.0"

#: The keys of every migration a call returns (and of notifications' payloads).
MIGRATION_FIELDS = (
    "id", "uuid", "instance_uuid", "migration_type", "status", "source_compute",
    "dest_compute", "old_instance_type_id", "new_instance_type_id", "block_migration",
    "memory_total_bytes", "memory_processed_bytes", "memory_remaining_bytes",
    "disk_total_bytes", "disk_processed_bytes", "disk_remaining_bytes", "error_message",
    "user_id", "project_id", "created_at", "updated_at")


def _messaging_conf(control_exchange=None):
    """oslo.messaging's options as Godwit's services have them (the control
    exchange 'godwit' above all, unless the deployment set another), without
    reading any configuration file."""
    from godwit import conf as godwit_conf
    conf = godwit_conf.new_conf()
    conf([], project="godwit", default_config_files=[])
    if control_exchange:
        conf.set_override("control_exchange", control_exchange)
    return conf


def migration_view(m):
    """A migration row as this interface and its notifications show it."""
    out = {k: m.get(k) for k in ("id", "uuid", "instance_uuid", "migration_type", "status",
                                 "source_compute", "dest_compute", "old_instance_type_id",
                                 "new_instance_type_id", "block_migration", "error_message",
                                 "user_id", "project_id")}
    for part in ("memory", "disk"):
        for what in ("total", "processed", "remaining"):
            out[f"{part}_{what}_bytes"] = m.get(f"{part}_{what}")
    for when in ("created_at", "updated_at"):
        out[when] = m[when].isoformat() if m.get(when) else None
    return out


class ControllerClient:
    """A controller's client; see the module docstring.

    :param transport_url: the broker (``rabbit://user:password@host:5672/vhost``),
        or ``transport=`` an oslo.messaging transport already made.
    :param user_id, project_id, roles: who calls, when a call gets no ``ctxt``.
    :param timeout: seconds to wait for an answer (a live migration's answer
        comes after its pre-checks, which ask both hosts).
    :param version_cap: the highest version to send (pin it to the oldest
        conductor's during an upgrade).
    :param control_exchange: the deployment's ``control_exchange`` if it is
        not Godwit's default, 'godwit'.
    """

    def __init__(self, transport_url=None, transport=None, user_id="controller",
                 project_id="controller", roles=("admin",), timeout=120,
                 version_cap=VERSION, control_exchange=None):
        if transport is None:
            if transport_url is None:
                raise ValueError("ControllerClient needs transport_url (rabbit://...) or "
                                 "transport")
            transport = messaging.get_rpc_transport(
                _messaging_conf(control_exchange), url=transport_url,
                allowed_remote_exmods=rpc.ALLOWED_EXMODS)
            self._own_transport = transport
        else:
            self._own_transport = None
        if isinstance(roles, str):
            roles = [roles]   # not its letters
        self.identity = {"user_id": user_id, "project_id": project_id, "roles": list(roles)}
        # Each call goes out as the version that introduced it: a conductor that
        # serves an older 1.x still takes the calls it knows.
        self.client = rpc.get_client(transport, TOPIC, version_cap=version_cap,
                                     timeout=timeout, version=BASE_VERSION)

    def context(self):
        """A new request context for this client's identity (one per call, so each
        call is its own instance action)."""
        return godwit_context.RequestContext(request_id="req-" + str(uuid.uuid4()),
                                             **self.identity)

    def _call(self, ctxt, method, **kwargs):
        return self.client.call(ctxt or self.context(), method, **kwargs)

    # --- moves --------------------------------------------------------------------------
    def live_migrate(self, server_id, host=None, block_migration="auto", ctxt=None):
        """Check and start a live migration; ``host`` None lets the scheduler choose,
        ``block_migration`` is "auto", True or False. Returns the migration once a
        destination accepted it."""
        return self._call(ctxt, "live_migrate", server_id=server_id, host=host,
                          block_migration=block_migration)

    def live_migration_dry_run(self, server_id, host=None, block_migration="auto",
                               ctxt=None):
        """(1.1) Every check of a live migration against every candidate host (or
        ``host``), with a predicted duration and downtime for each that accepts;
        nothing is written. See docs/live-migration.md, "Dry run"."""
        return self.client.prepare(version="1.1").call(
            ctxt or self.context(), "live_migration_dry_run", server_id=server_id,
            host=host, block_migration=block_migration)

    def live_migration_set_speed(self, server_id, migration_id, mib_per_s, ctxt=None):
        """(1.2) Record a new bandwidth cap (MiB/s, 1..1048576) for a running live
        migration; the conductor that drives it applies it on the source and its
        timeline says so (docs/live-migration.md, "Tuning a running migration")."""
        return self.client.prepare(version="1.2").call(
            ctxt or self.context(), "live_migration_set_speed", server_id=server_id,
            migration_id=migration_id, mib_per_s=mib_per_s)

    def live_migration_set_downtime(self, server_id, migration_id, ms, ctxt=None):
        """(1.2) Record a new max downtime (ms, 1..60000) for a running live
        migration; from then on the source's monitor no longer raises it."""
        return self.client.prepare(version="1.2").call(
            ctxt or self.context(), "live_migration_set_downtime", server_id=server_id,
            migration_id=migration_id, ms=ms)

    def migrate(self, server_id, host=None, ctxt=None):
        """Check and start a cold migration."""
        return self._call(ctxt, "migrate", server_id=server_id, host=host)

    def resize(self, server_id, flavor, ctxt=None):
        """Check and start a resize to ``flavor`` (its id)."""
        return self._call(ctxt, "resize", server_id=server_id, flavor=str(flavor))

    def confirm_resize(self, server_id, ctxt=None):
        """Record the confirm of a finished cold migration or resize."""
        return self._call(ctxt, "confirm_resize", server_id=server_id)

    def revert_resize(self, server_id, ctxt=None):
        """Record the revert of a finished cold migration or resize."""
        return self._call(ctxt, "revert_resize", server_id=server_id)

    def abort(self, server_id, migration_id, ctxt=None):
        """Record an abort of a live migration (queued, preparing or running)."""
        return self._call(ctxt, "abort", server_id=server_id, migration_id=migration_id)

    def force_complete(self, server_id, migration_id, ctxt=None):
        """Record a force-complete of a running live migration."""
        return self._call(ctxt, "force_complete", server_id=server_id,
                          migration_id=migration_id)

    # --- looking ------------------------------------------------------------------------
    def migration(self, migration_id, ctxt=None):
        """One migration, by id or uuid."""
        return self._call(ctxt, "migration", migration_id=migration_id)

    def migrations(self, server_id, ctxt=None):
        """The server's migrations, newest first."""
        return self._call(ctxt, "migrations", server_id=server_id)

    def close(self):
        """Close the transport this client made (not one it was given)."""
        if self._own_transport is not None:
            self._own_transport.cleanup()
            self._own_transport = None


# --- following moves ---------------------------------------------------------------------
class MoveEvents:
    """An endpoint for an oslo.messaging notification listener: hands every
    ``migration.*`` notification to ``handler(event_type, data)``, where
    ``data`` is the payload's ``godwit_object.data`` (docs/controller.md)."""

    filter_rule = messaging.NotificationFilter(event_type=r"^migration\.")

    def __init__(self, handler):
        self.handler = handler

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self.handler(event_type, payload["godwit_object.data"])

    error = info


def listen(handler, transport_url=None, transport=None, pool=None, control_exchange=None):
    """Start a listener calling ``handler(event_type, data)`` for every move's
    notifications; returns it (``stop()`` then ``wait()`` it).

    Give each controller a ``pool`` name of its own: every pool gets every
    notification (listeners of one pool share them out), while listeners
    without a pool share one queue with every other consumer that has none."""
    if transport is None:
        transport = messaging.get_notification_transport(
            _messaging_conf(control_exchange), url=transport_url)
    listener = messaging.get_notification_listener(
        transport, [messaging.Target(topic=NOTIFICATION_TOPIC)], [MoveEvents(handler)],
        executor="threading", pool=pool)
    listener.start()
    return listener
