"""Client for the conductor (RPC topic ``conductor``).

Two kinds of caller use it: the API, which hands the conductor work and
wakes it when a user records an intent, and the compute agents, which own
no database credentials and read and write state only through these
methods. Any conductor answers the topic; ``wake`` goes to the one that owns
the move when it is known (``server=owner``).

Version history:

* 1.0-1.2 - the first protocol (agents moved migrations along themselves).
  Not served any more; see compute/rpcapi.py.
* 2.0 - the conductor drives every move: migration_job_ended and
  migration_progress from the source's monitor, wake (an intent recorded by
  the API), power_action; service_report also resumes the host's unfinished
  moves. Kept from 1.x: service_report, service_heartbeat, instance_get,
  instance_update, instance_destroyed, action_event, build_instance,
  delete_instance, live_migrate_instance, migrate_server.
* 2.1 - live_migration_dry_run (the API's dry run of a live migration);
  drain_wake (a host drain was created or cancelled, from the API).
* 2.2 - service_report takes the agent's compute RPC version (rpc_version,
  recorded in the services table for ``[upgrade_levels] ... = auto``) and
  answers with the caps ``auto`` gives (rpc_versions). An agent pinned
  below 2.2, or refused by an older conductor, registers as 2.0 without it.

``HISTORY``, ``ADDED_IN``, ``VERSION`` and ``BASE_VERSION`` as in
compute/rpcapi.py: the conductor's RPC target and every sender's default cap
are ``VERSION``.
"""

import oslo_messaging as messaging
from oslo_log import log as logging

from godwit import exception, rpc, states, upgrade

LOG = logging.getLogger(__name__)

TOPIC = "conductor"
HISTORY = ("2.0", "2.1", "2.2")
#: The methods (and arguments) added after BASE_VERSION, and the version that added each.
ADDED_IN = {"live_migration_dry_run": "2.1", "drain_wake": "2.1",
            "service_report(rpc_version)": "2.2"}
VERSION = HISTORY[-1]
BASE_VERSION = HISTORY[0]
INTERFACE = upgrade.Interface(TOPIC, states.SERVICE_CONDUCTOR, HISTORY)


def _unsupported(error):
    """Whether an RPC error is a conductor's refusal of the call's version."""
    return "UnsupportedVersion" in (getattr(error, "exc_type", None) or
                                    type(error).__name__)


class ConductorClient:
    def __init__(self, transport, timeout=None, long_timeout=1800, version_cap=None):
        """``version_cap``: a version, an :class:`godwit.upgrade.VersionCap`
        (``[upgrade_levels] conductor``, ``auto`` included) or None for VERSION."""
        self.cap = upgrade.VersionCap.of(version_cap, INTERFACE)
        # Calls go out as the version that introduced them, so a conductor that
        # serves only 2.0 still takes every 2.0 call during an upgrade.
        self.client = rpc.get_client(transport, TOPIC, version_cap=self.cap.current(),
                                     timeout=timeout, version=BASE_VERSION)
        self.cap.follow(self.client)
        self.long_timeout = long_timeout

    def can_send_version(self, version):
        """Whether the cap (re-read first when it is ``auto`` and stale) allows ``version``."""
        self.cap.current()
        return self.client.can_send_version(version)

    # --- for compute agents: their window onto the database ---------------
    def service_report(self, ctxt, host, binary, topic, version, node_info, inventory=None,
                       rpc_version=None):
        """Register (or re-register) a service and its compute node; the
        conductor then resumes the unfinished moves this host is part of, and
        answers with the orphans in ``inventory`` the host should remove and
        (2.2) the caps ``[upgrade_levels] ... = auto`` gives now.

        ``rpc_version`` (2.2): the compute RPC version the agent serves. Sent
        when the cap allows 2.2, and tried under ``auto`` (an agent learns its
        caps from this very answer). A conductor that refuses 2.2 (an older
        one) is asked again as 2.0 without it: the services table then records
        no version for this agent, which ``auto`` counts as the oldest."""
        kwargs = dict(host=host, binary=binary, topic=topic, version=version,
                      node_info=node_info, inventory=inventory)
        if rpc_version is not None and (self.cap.auto or self.can_send_version("2.2")):
            try:
                return self.client.prepare(version="2.2", version_cap="2.2").call(
                    ctxt, "service_report", rpc_version=rpc_version, **kwargs)
            except (messaging.RemoteError, messaging.MessagingException) as e:
                if not _unsupported(e):
                    raise
                LOG.warning("A conductor refused conductor RPC 2.2 (an older one: upgrade "
                            "the conductors before the agents); %s registers as 2.0, "
                            "without its RPC version", host)
        return self.client.call(ctxt, "service_report", **kwargs)

    def service_heartbeat(self, ctxt, host, binary, timeout=None):
        # retry=0: while the broker is away the send fails at once instead of
        # waiting in oslo.messaging's reconnection back-off (up to
        # rabbit_interval_max, 30 s), so the first tick after the broker is back
        # gets through and the host is not shown down for the back-off's sake.
        return self.client.prepare(timeout=timeout, retry=0).call(
            ctxt, "service_heartbeat", host=host, binary=binary)

    def instance_get(self, ctxt, instance_uuid):
        """The instance with its network_info and block_device_info."""
        return self.client.call(ctxt, "instance_get", instance_uuid=instance_uuid)

    def instance_update(self, ctxt, instance_uuid, values, expected=None):
        return self.client.call(ctxt, "instance_update", instance_uuid=instance_uuid,
                                values=values, expected=expected)

    def instance_destroyed(self, ctxt, instance_uuid, host):
        return self.client.call(ctxt, "instance_destroyed", instance_uuid=instance_uuid,
                                host=host)

    def migration_progress(self, ctxt, migration_id, values, tuning=None):
        """Progress of a running job, and the monitor's tuning (stored with the
        migration so that a monitor attached again resumes from it). A cast: a
        lost report costs nothing (the conductor asks the job itself before it
        calls a migration stalled), a waiting monitor would stop steering."""
        self.client.prepare(retry=1).cast(ctxt, "migration_progress",
                                          migration_id=migration_id, values=values,
                                          tuning=tuning)

    def migration_job_ended(self, ctxt, migration_id, epoch, outcome):
        """The source's hypervisor job ended; ``outcome`` says how."""
        return self.client.call(ctxt, "migration_job_ended", migration_id=migration_id,
                                epoch=epoch, outcome=outcome)

    def action_event(self, ctxt, instance_uuid, event, host, start_time, finish_time,
                     result, traceback=None):
        """Record one step of the instance action of this request (a cast)."""
        self.client.cast(ctxt, "action_event", instance_uuid=instance_uuid, event=event,
                         host=host, start_time=start_time, finish_time=finish_time,
                         result=result, traceback=traceback)

    # --- for the API: work for the conductor ---------------------------------
    def build_instance(self, ctxt, instance_uuid, requested_host=None):
        self.client.cast(ctxt, "build_instance", instance_uuid=instance_uuid,
                         requested_host=requested_host)

    def delete_instance(self, ctxt, instance_uuid):
        self.client.cast(ctxt, "delete_instance", instance_uuid=instance_uuid)

    def live_migrate_instance(self, ctxt, instance_uuid, requested_host, block_migration):
        """Run the pre-checks (synchronously) and start the migration.

        Returns the migration once a destination accepted it; raises the
        check's error otherwise (the migration is then in status error).
        """
        # The checks call the destination, which calls the source: allow for
        # those nested calls (and the scheduler trying several hosts).
        return self.client.prepare(timeout=self.long_timeout).call(
            ctxt, "live_migrate_instance", instance_uuid=instance_uuid,
            requested_host=requested_host, block_migration=block_migration)

    def live_migration_dry_run(self, ctxt, instance_uuid, requested_host, block_migration):
        """Every check of a live migration against every candidate (or the named
        host) and a prediction for each that accepts; writes nothing (2.1)."""
        if not self.can_send_version(ADDED_IN["live_migration_dry_run"]):
            raise exception.ServiceUnavailable(
                reason=f"the dry run needs conductor RPC 2.1; this API sends "
                       f"{self.cap.describe()} (upgrade the conductors first)")
        return self.client.prepare(version="2.1", timeout=self.long_timeout).call(
            ctxt, "live_migration_dry_run", instance_uuid=instance_uuid,
            requested_host=requested_host, block_migration=block_migration)

    def migrate_server(self, ctxt, instance_uuid, flavor_id, requested_host):
        """Check and start a cold migration (flavor_id None) or a resize."""
        return self.client.prepare(timeout=self.long_timeout).call(
            ctxt, "migrate_server", instance_uuid=instance_uuid, flavor_id=flavor_id,
            requested_host=requested_host)

    def wake(self, ctxt, migration_id, owner=None):
        """An intent was recorded for the migration: its owner should act.

        Only a wake-up: the intent is in the database, and the owner's sweep
        finds it even if this message is lost.
        """
        # retry=1: with the broker away the intent is still recorded, and the
        # API must answer instead of waiting for the broker.
        self.client.prepare(server=owner, retry=1).cast(ctxt, "wake",
                                                        migration_id=migration_id)

    def power_action(self, ctxt, instance_uuid, action, reboot_type=None):
        """stop, start or reboot, recorded in the instance's task_state by the API."""
        self.client.prepare(retry=1).cast(ctxt, "power_action", instance_uuid=instance_uuid,
                                          action=action, reboot_type=reboot_type)

    def drain_wake(self, ctxt, drain_uuid):
        """A host drain was created or cancelled: a conductor should look at it.

        Only a wake-up: the drain is in the database, and every conductor's
        drain sweep finds it even if this message is lost.
        """
        if not self.can_send_version(ADDED_IN["drain_wake"]):
            return   # pinned below 2.1 during an upgrade: the drain sweep finds it
        self.client.prepare(version="2.1", retry=1).cast(ctxt, "drain_wake",
                                                         drain_uuid=drain_uuid)
