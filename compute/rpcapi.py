"""Client for the compute agents (RPC topic ``compute``, server = host name).

The conductor that owns a move calls one host step at a time and waits for
its answer (docs/crash-safety.md). Each step carries (migration id, epoch):
the host runs it once, returns its first outcome when asked again, and
refuses an older epoch. A step call waits ``host_step_timeout`` seconds;
the conductor asks again after that, which joins the step if it still runs,
so no call holds a thread for a whole long step and an agent that restarted
is asked again soon. Only instance creation and deletion are casts.

Version history:

* 1.0-1.4 - the first protocol, where the source agent drove live
  migrations and cold migrations went host to host by casts. Not served any
  more: hosts and conductors of one cloud move to 2.0 together
  (docs/upgrades in docs/crash-safety.md).
* 2.0 - Conductor-driven, idempotent and fenced steps: pre_live_migration,
  live_migration_start, live_migration_steer, post_live_migration_at_source,
  post_live_migration_at_destination, rollback_live_migration_at_source,
  rollback_live_migration_at_destination, prep_resize, resize_instance,
  finish_resize, confirm_resize, revert_resize, finish_revert_resize,
  rollback_resize_at_source, inspect_instance, power_action, host_inventory,
  remove_orphans; the checks
  check_can_live_migrate_destination and check_can_live_migrate_source; casts
  build_and_run_instance and terminate_instance; ping.
* 2.1 - estimate_live_migration (the source's bandwidth and dirty rate for
  the dry run's prediction). A conductor capped at 2.0 shows no prediction.
* 2.2 - live_migration_tune (a running job's bandwidth and max downtime, as
  the user set them through the API). Capped below 2.2, the API refuses
  set-speed and set-downtime (409) and a conductor records that it could
  not apply one.

``HISTORY`` lists every version an agent of this release serves, oldest
first; the agents' RPC target (compute.manager) and every sender's default
cap are its last entry, ``VERSION``, and calls go out as its first,
``BASE_VERSION``, unless ``ADDED_IN`` names a later one. A new version is one
more entry in each (and a line above); docs/upgrades.md says when the oldest
may go.
"""

from godwit import rpc, states, upgrade

TOPIC = "compute"
HISTORY = ("2.0", "2.1", "2.2")
#: The methods added after BASE_VERSION, and the version that added each.
ADDED_IN = {"estimate_live_migration": "2.1", "live_migration_tune": "2.2"}
VERSION = HISTORY[-1]
BASE_VERSION = HISTORY[0]
INTERFACE = upgrade.Interface(TOPIC, states.SERVICE_COMPUTE, HISTORY)


class ComputeAgentClient:
    def __init__(self, transport, timeout=None, long_timeout=1800, step_timeout=20,
                 version_cap=None):
        """``version_cap``: a version, an :class:`godwit.upgrade.VersionCap`
        (``[upgrade_levels] compute``, ``auto`` included) or None for VERSION."""
        self.cap = upgrade.VersionCap.of(version_cap, INTERFACE)
        # Calls go out as the version that introduced them (2.0 unless a method
        # says otherwise), so an agent that serves only 2.0 still takes them.
        self.client = rpc.get_client(transport, TOPIC, version_cap=self.cap.current(),
                                     timeout=timeout, version=BASE_VERSION)
        self.cap.follow(self.client)
        self.long_timeout = long_timeout
        self.step_timeout = step_timeout

    def can_send_version(self, version):
        """Whether the cap (re-read first when it is ``auto`` and stale) allows ``version``."""
        self.cap.current()
        return self.client.can_send_version(version)

    def _at(self, host, timeout=None):
        return self.client.prepare(server=host, timeout=timeout)

    def _step(self, ctxt, host, method, timeout=None, **kwargs):
        return self._at(host, timeout or self.step_timeout).call(ctxt, method, **kwargs)

    def can_estimate(self):
        return self.can_send_version(ADDED_IN["estimate_live_migration"])

    def estimate_live_migration(self, ctxt, source, instance_uuid, instance_info,
                                timeout=None):
        """What a live migration from ``source`` would meet (2.1); None from a
        conductor capped below 2.1."""
        if not self.can_estimate():
            return None
        return self.client.prepare(server=source, version="2.1", timeout=timeout).call(
            ctxt, "estimate_live_migration", instance_uuid=instance_uuid,
            instance_info=instance_info)

    def ping(self, ctxt, host, timeout=None):
        return self._at(host, timeout).call(ctxt, "ping")

    # --- servers (casts) ---------------------------------------------------------
    def build_and_run_instance(self, ctxt, host, instance_uuid):
        self._at(host).cast(ctxt, "build_and_run_instance", instance_uuid=instance_uuid)

    def terminate_instance(self, ctxt, host, instance_uuid):
        self._at(host).cast(ctxt, "terminate_instance", instance_uuid=instance_uuid)

    def power_action(self, ctxt, host, instance_uuid, action, request_id, reboot_type=None,
                     timeout=None):
        """stop, start or reboot, once per request; returns the power state."""
        return self._step(ctxt, host, "power_action", timeout, instance_uuid=instance_uuid,
                          action=action, request_id=request_id, reboot_type=reboot_type)

    # --- live migration: checks ----------------------------------------------------
    def check_can_live_migrate_destination(self, ctxt, dest, instance_uuid, source,
                                           block_migration, instance_info):
        return self._at(dest).call(ctxt, "check_can_live_migrate_destination",
                                   instance_uuid=instance_uuid, source=source,
                                   block_migration=block_migration,
                                   instance_info=instance_info)

    def check_can_live_migrate_source(self, ctxt, source, instance_uuid, dest_check_data,
                                      instance_info):
        return self._at(source).call(ctxt, "check_can_live_migrate_source",
                                     instance_uuid=instance_uuid,
                                     dest_check_data=dest_check_data,
                                     instance_info=instance_info)

    # --- live migration: steps -----------------------------------------------------
    def pre_live_migration(self, ctxt, dest, migration_id, epoch, migrate_data,
                           instance_info, timeout=None):
        return self._step(ctxt, dest, "pre_live_migration", timeout,
                          migration_id=migration_id, epoch=epoch,
                          migrate_data=migrate_data, instance_info=instance_info)

    def live_migration_start(self, ctxt, source, migration_id, epoch, dest, migrate_data,
                             instance_info, tuning=None, timeout=None):
        """Start or find the hypervisor job: {"state": "running"} or the outcome."""
        return self._step(ctxt, source, "live_migration_start", timeout,
                          migration_id=migration_id, epoch=epoch, dest=dest,
                          migrate_data=migrate_data, instance_info=instance_info,
                          tuning=tuning)

    def live_migration_steer(self, ctxt, source, migration_id, epoch, action, instance_info,
                             timeout=None):
        return self._step(ctxt, source, "live_migration_steer", timeout,
                          migration_id=migration_id, epoch=epoch, action=action,
                          instance_info=instance_info)

    def can_tune(self):
        return self.can_send_version(ADDED_IN["live_migration_tune"])

    def live_migration_tune(self, ctxt, source, migration_id, epoch, values, instance_info,
                            timeout=None):
        """2.2: set the running job's ``bandwidth_mib`` and/or ``max_downtime_ms``."""
        return self.client.prepare(server=source, version=ADDED_IN["live_migration_tune"],
                                   timeout=timeout or self.step_timeout).call(
            ctxt, "live_migration_tune", migration_id=migration_id, epoch=epoch,
            values=values, instance_info=instance_info)

    def post_live_migration_at_source(self, ctxt, source, migration_id, epoch, migrate_data,
                                      instance_info, timeout=None):
        return self._step(ctxt, source, "post_live_migration_at_source", timeout,
                          migration_id=migration_id, epoch=epoch,
                          migrate_data=migrate_data, instance_info=instance_info)

    def post_live_migration_at_destination(self, ctxt, dest, migration_id, epoch,
                                           migrate_data, instance_info, timeout=None):
        return self._step(ctxt, dest, "post_live_migration_at_destination", timeout,
                          migration_id=migration_id, epoch=epoch,
                          migrate_data=migrate_data, instance_info=instance_info)

    def rollback_live_migration_at_destination(self, ctxt, dest, migration_id, epoch,
                                               migrate_data, destroy_disks, instance_info,
                                               timeout=None):
        return self._step(ctxt, dest, "rollback_live_migration_at_destination", timeout,
                          migration_id=migration_id, epoch=epoch,
                          migrate_data=migrate_data, destroy_disks=destroy_disks,
                          instance_info=instance_info)

    def rollback_live_migration_at_source(self, ctxt, source, migration_id, epoch,
                                          instance_info, timeout=None):
        return self._step(ctxt, source, "rollback_live_migration_at_source", timeout,
                          migration_id=migration_id, epoch=epoch,
                          instance_info=instance_info)

    def inspect_instance(self, ctxt, host, instance_uuid, migration_id=None, timeout=None):
        """Ground truth: the domain, a running migration job, the journal."""
        return self._step(ctxt, host, "inspect_instance", timeout,
                          instance_uuid=instance_uuid, migration_id=migration_id)

    # --- the reconciler ---------------------------------------------------------------
    def host_inventory(self, ctxt, host, timeout=None):
        """Everything of Godwit's on ``host``: domains, instance directories, VIFs,
        volume connections, filters."""
        return self._at(host, timeout or self.long_timeout).call(ctxt, "host_inventory")

    def remove_orphans(self, ctxt, host, items, timeout=None):
        return self._at(host, timeout or self.long_timeout).call(ctxt, "remove_orphans",
                                                                 items=items)

    # --- cold migration and resize -------------------------------------------------
    def _cold(self, ctxt, host, method, migration_id, epoch, context, timeout=None,
              **kwargs):
        return self._step(ctxt, host, method, timeout, migration_id=migration_id,
                          epoch=epoch, context=context, **kwargs)

    def prep_resize(self, ctxt, dest, migration_id, epoch, context, timeout=None):
        return self._cold(ctxt, dest, "prep_resize", migration_id, epoch, context, timeout)

    def resize_instance(self, ctxt, source, migration_id, epoch, context, timeout=None):
        """Power off and copy the disks; returns disk_info."""
        return self._cold(ctxt, source, "resize_instance", migration_id, epoch, context,
                          timeout)

    def finish_resize(self, ctxt, dest, migration_id, epoch, context, disk_info,
                      timeout=None):
        """Build the guest on the destination; returns its power state."""
        return self._cold(ctxt, dest, "finish_resize", migration_id, epoch, context,
                          timeout, disk_info=disk_info)

    def confirm_resize(self, ctxt, source, migration_id, epoch, context, timeout=None):
        return self._cold(ctxt, source, "confirm_resize", migration_id, epoch, context,
                          timeout)

    def revert_resize(self, ctxt, dest, migration_id, epoch, context, timeout=None):
        return self._cold(ctxt, dest, "revert_resize", migration_id, epoch, context, timeout)

    def finish_revert_resize(self, ctxt, source, migration_id, epoch, context, timeout=None):
        """Put the guest back on the source; returns its power state."""
        return self._cold(ctxt, source, "finish_revert_resize", migration_id, epoch,
                          context, timeout)

    def rollback_resize_at_source(self, ctxt, source, migration_id, epoch, context,
                                  timeout=None):
        """After a failed copy or finish: the guest back as it was on the source."""
        return self._cold(ctxt, source, "rollback_resize_at_source", migration_id, epoch,
                          context, timeout)
