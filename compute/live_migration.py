"""Live migration on the hosts: the source drives, the destination serves.

The conductor has checked the move and cast ``live_migration`` to the
source. The source then walks the migration along the state machine, one
compare-and-swap per edge (through the conductor)::

    accepted -> queued        waits for a slot (max_concurrent_live_migrations)
    queued -> preparing       destination prepared by pre_live_migration (call)
    preparing -> running      the hypervisor job runs, steered by the monitor
    running -> post-migrating guest runs on the destination; instance.host
                              switches in the same transaction
    post-migrating -> completed  both hosts finalised, task_state cleared

Before the switch-over a failure rolls both hosts back and the migration
ends in ``error`` (pre_live_migration failed, as in Nova), ``cancelled``
(aborted on request) or ``failed``; the instance stays ACTIVE on the source.
After it the guest cannot go back: problems end the migration in ``error``
with what was left undone, and the instance stays on the destination (ERROR
only if the destination could not finish it).

Abort has a defined outcome in every phase: queued -> cancelled at once;
preparing -> cancelled once pre_live_migration returns, after rolling the
destination back; running -> the job is cancelled, then as preparing.

Every host step is idempotent, so a step retried after a crash does no harm.
"""

import concurrent.futures
import threading

import oslo_messaging as messaging
from oslo_log import log as logging

from compute import migration_monitor, steps
from godwit import exception, state_machine, states

LOG = logging.getLogger(__name__)


class LiveMigrations:
    """Both sides of live migration for one compute host."""

    def __init__(self, manager):
        self.m = manager
        limit = manager.conf.max_concurrent_live_migrations
        # One worker per concurrent outgoing migration; the rest wait in 'queued'.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=limit if limit > 0 else 64, thread_name_prefix="live-migration")
        self.slots = limit if limit > 0 else 64
        self.active = 0   # migrations handed to the executor and not finished
        self.monitors = {}
        self.pending_aborts = set()
        self._lock = threading.Lock()

    def shutdown(self):
        for monitor in list(self.monitors.values()):
            monitor.request_abort()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # --- checks ---------------------------------------------------------
    def check_destination(self, ctxt, instance_uuid, source, block_migration,
                          instance_info=None):
        """``instance_info``: the instance with its network_info and
        block_device_info, if the conductor sent them (else fetched here); the
        source is handed the same."""
        m = self.m
        with m.event(ctxt, instance_uuid, "compute_check_can_live_migrate_destination"):
            info = instance_info or m.conductor.instance_get(ctxt, instance_uuid)
            dest_check = m.driver.check_can_live_migrate_destination(
                info["instance"], block_migration)
            try:
                migrate_data = m.compute_rpc.check_can_live_migrate_source(
                    ctxt, source, instance_uuid, dest_check, instance_info=info)
            except messaging.MessagingTimeout:
                raise exception.MigrationPreCheckError(
                    reason=f"the source host {source} did not answer its pre-check in "
                           "time; is its compute service running?") from None
            finally:
                m.driver.cleanup_live_migration_destination_check(dest_check)
        return dict(migrate_data, dest_host=m.host)

    def check_source(self, ctxt, instance_uuid, dest_check_data, instance_info=None):
        m = self.m
        with m.event(ctxt, instance_uuid, "compute_check_can_live_migrate_source"):
            info = instance_info or m.conductor.instance_get(ctxt, instance_uuid)
            migrate_data = m.driver.check_can_live_migrate_source(info["instance"],
                                                                  dest_check_data)
            if migrate_data.get("block_migration"):
                for bdm in info["block_device_info"]:
                    if bdm.get("device_type") == "cdrom":
                        raise exception.MigrationPreCheckError(
                            reason="the instance has a CD-ROM, which cannot be "
                                   "block-migrated")
            return migrate_data

    # --- source: abort and force-complete -------------------------------------
    def abort(self, ctxt, migration_id):
        """Abort in whatever phase the migration is; see the module docstring."""
        m = self.m
        try:
            migration = m.conductor.migration_transition(
                ctxt, migration_id, states.QUEUED, states.CANCELLED,
                values={"error_message": "aborted on request while queued"},
                instance_values={"task_state": None},
                instance_expected={"task_state": states.MIGRATING})
            m.notifier.info(ctxt, "instance.live_migration_abort.end",
                            {"migration_id": migration_id, "phase": "queued"})
            LOG.info("Migration %s cancelled while queued", migration["id"])
            return
        except exception.ConcurrentUpdate:
            pass
        with self._lock:
            monitor = self.monitors.get(migration_id)
            if monitor is None:
                self.pending_aborts.add(migration_id)  # acted on after preparing
                return
        monitor.request_abort()

    def _abort_pending(self, migration_id):
        with self._lock:
            return migration_id in self.pending_aborts

    def force_complete(self, ctxt, migration_id):
        monitor = self.monitors.get(migration_id)
        if monitor is None:
            LOG.warning("force_complete for migration %s, which is not running here",
                        migration_id)
            return
        monitor.request_force_complete()

    # --- source: the flow ---------------------------------------------------
    def start(self, ctxt, migration_id, dest, migrate_data):
        """RPC cast target: queue the migration and return at once.

        With a slot free at once nothing happens in 'queued': the migration is
        handed to the executor, whose worker takes it at once and moves it
        accepted -> queued -> preparing in one conductor call (two
        compare-and-swaps in one transaction) that also returns its context.
        It is handed over under the lock that counts the slots, so a migration
        queued after it cannot get ahead of it in the executor; and it is moved
        to preparing only by the worker that runs it, as a queued one is.
        """
        m = self.m
        fast = m.conductor.can_advance()
        with self._lock:
            fast = fast and self.active < self.slots
            self.active += 1
            if fast:
                try:
                    self.executor.submit(self._run_source, ctxt, migration_id, dest,
                                         migrate_data, True)
                except BaseException:
                    self.active -= 1
                    raise
                return
        try:
            m.conductor.migration_transition(ctxt, migration_id, states.ACCEPTED,
                                             states.QUEUED)
            self.executor.submit(self._run_source, ctxt, migration_id, dest, migrate_data)
        except BaseException as e:
            with self._lock:
                self.active -= 1
            if isinstance(e, exception.ConcurrentUpdate):
                LOG.info("Migration %s already left 'accepted'; not starting it again",
                         migration_id)
                return
            raise

    def _run_source(self, ctxt, migration_id, dest, migrate_data, from_accepted=False):
        try:
            self._drive_source(ctxt, migration_id, dest, migrate_data, from_accepted)
        except Exception:
            LOG.exception("Live migration %s failed unexpectedly", migration_id)
        finally:
            with self._lock:
                self.active -= 1
                self.pending_aborts.discard(migration_id)
                self.monitors.pop(migration_id, None)

    def _drive_source(self, ctxt, migration_id, dest, migrate_data, from_accepted=False):
        """``from_accepted``: start() found a slot free and did not queue it."""
        m = self.m
        path = ((states.ACCEPTED, states.QUEUED, states.PREPARING) if from_accepted
                else (states.QUEUED, states.PREPARING))
        try:
            if m.conductor.can_advance():
                context = m.conductor.migration_advance(ctxt, migration_id, path,
                                                        context=True)
            else:
                context = m.conductor.migration_context(ctxt, migration_id)
                m.conductor.migration_transition(ctxt, migration_id, states.QUEUED,
                                                 states.PREPARING)
        except exception.ConcurrentUpdate:
            LOG.info("Migration %s left '%s' before it could start (aborted, or started "
                     "already)", migration_id, path[0])
            return
        migration, instance = context["migration"], context["instance"]
        nw, bdms = context["network_info"], context["block_device_info"]
        info = {"instance": instance, "network_info": nw, "block_device_info": bdms}
        uuid = instance["uuid"]
        rollback = lambda status, reason: self._rollback(  # noqa: E731
            ctxt, migration, instance, nw, bdms, dest, migrate_data, status, reason)

        # Stage 1: prepare the destination.
        try:
            with m.event(ctxt, uuid, "compute_pre_live_migration"):
                migrate_data = m.compute_rpc.pre_live_migration(ctxt, dest, migration_id,
                                                                migrate_data, info)
        except Exception as e:
            return rollback((states.PREPARING, states.ERROR_MIGRATION),
                            f"pre_live_migration on {dest} failed: {exception.message_of(e)}")
        if self._abort_pending(migration_id):
            return rollback((states.PREPARING, states.CANCELLED),
                            "aborted on request while preparing")

        # Stage 2: the hypervisor moves the guest, steered by the monitor.
        migration = m.conductor.migration_transition(ctxt, migration_id, states.PREPARING,
                                                     states.RUNNING_MIGRATION)
        try:
            with m.event(ctxt, uuid, "compute_live_migration"):
                params = migration_monitor.initial_params(m.conf, instance, migrate_data)
                job = m.driver.live_migration(instance, dest, migrate_data, params)
                monitor = migration_monitor.Monitor(
                    m.conf, job, instance, migrate_data,
                    report=lambda stats, pct: self._report(ctxt, migration_id, stats, pct))
                with self._lock:
                    self.monitors[migration_id] = monitor
                    if migration_id in self.pending_aborts:
                        monitor.request_abort()
                monitor.run()
        except migration_monitor.MigrationAborted as e:
            if e.by_request:
                m.notifier.info(ctxt, "instance.live_migration_abort.end",
                                {"migration_id": migration_id, "phase": "running"})
            return rollback((states.RUNNING_MIGRATION,
                             states.CANCELLED if e.by_request else states.FAILED), str(e))
        except Exception as e:
            return rollback((states.RUNNING_MIGRATION, states.FAILED),
                            f"live migration to {dest} failed: {exception.message_of(e)}")
        if monitor.forced:
            migrate_data = dict(migrate_data, forced=monitor.forced)
            m.notifier.info(ctxt, "instance.live_migration_force_complete.end",
                            {"migration_id": migration_id, "how": monitor.forced})

        # The guest runs on the destination now: record that first.
        switched = {"host": dest, "node": migration.get("dest_node") or dest,
                    "progress": 100, "power_state": states.RUNNING}
        m.conductor.migration_transition(
            ctxt, migration_id, states.RUNNING_MIGRATION, states.POST_MIGRATING,
            instance_values=switched, instance_expected={"task_state": states.MIGRATING})
        self._finish(ctxt, migration_id, instance, nw, bdms, dest, migrate_data,
                     dict(info, instance=dict(instance, **switched)))

    def _report(self, ctxt, migration_id, stats, percent):
        values = {k: int(stats[k]) for k in ("memory_total", "memory_processed",
                                              "memory_remaining", "disk_total",
                                              "disk_processed", "disk_remaining")
                  if stats.get(k) is not None}
        values["progress"] = percent
        try:
            self.m.conductor.migration_update(ctxt, migration_id, values,
                                              expected_status=states.RUNNING_MIGRATION)
        except Exception:
            LOG.warning("Could not record progress of migration %s", migration_id,
                        exc_info=True)

    def _finish(self, ctxt, migration_id, instance, nw, bdms, dest, migrate_data,
                dest_info=None):
        """Stage 3: finalise both hosts; each step is tried even if one fails."""
        m = self.m
        with m.event(ctxt, instance["uuid"], "compute_post_live_migration"), \
                m.notifier.phase(ctxt, "live_migration_post", instance):
            problems = steps.run_all([
                ("source volume connections",
                 lambda: m.volume_driver.disconnect_all(instance, bdms)),
                ("source filter", lambda: m.firewall_driver.unfilter_instance(instance, nw)),
                ("source VIFs", lambda: m.vif_driver.unplug_all(instance, nw)),
                ("source domain", lambda: m.driver.post_live_migration_at_source(
                    instance, bdms, migrate_data))], m.host, "post live migration")
        dest_ok = True
        try:
            m.compute_rpc.post_live_migration_at_destination(ctxt, dest, migration_id,
                                                             migrate_data, dest_info)
        except Exception as e:
            dest_ok = False
            problems.append(f"finishing the instance on {dest}: {exception.message_of(e)}")
        try:
            m.driver.cleanup_source_files(instance, migrate_data)
        except Exception as e:
            problems.append(f"source files on {m.host}: {exception.message_of(e)}")

        if not problems:
            m.conductor.migration_transition(
                ctxt, migration_id, states.POST_MIGRATING, states.COMPLETED,
                instance_values={"task_state": None},
                instance_expected={"task_state": states.MIGRATING})
            LOG.info("Live migration %s of %s to %s completed", migration_id,
                     instance["uuid"], dest)
            return
        reason = "; ".join(problems)
        instance_values = {"task_state": None}
        if not dest_ok:
            instance_values.update(vm_state=states.ERROR, fault_message=reason)
        m.conductor.migration_transition(
            ctxt, migration_id, states.POST_MIGRATING, states.ERROR_MIGRATION,
            values={"error_message": reason}, instance_values=instance_values,
            instance_expected={"task_state": states.MIGRATING})

    def _rollback(self, ctxt, migration, instance, nw, bdms, dest, migrate_data, edge,
                  reason):
        """Guest is still on the source: undo the destination, end the migration."""
        m = self.m
        from_status, to_status = edge
        LOG.warning("Rolling back live migration %s: %s", migration["id"], reason)
        with m.event(ctxt, instance["uuid"], "compute_rollback_live_migration"), \
                m.notifier.phase(ctxt, "live_migration_rollback", instance):
            problems = steps.run_all([
                (f"cleaning {dest}", lambda: m.compute_rpc.rollback_live_migration_at_destination(
                    ctxt, dest, migration["id"], migrate_data,
                    destroy_disks=not migrate_data.get("is_shared_instance_path"))),
                # The source's networking was never taken down before the switch;
                # re-asserting it is idempotent and repairs a half-done step.
                (f"restoring networking on {m.host}", lambda: (
                    m.vif_driver.plug_all(instance, nw),
                    m.firewall_driver.apply_instance_filter(instance, nw)))],
                purpose="live migration rollback")
        if problems:
            reason = reason + "; rollback incomplete: " + "; ".join(problems)
            to_status = states.ERROR_MIGRATION
        if not state_machine.allowed(states.LIVE_MIGRATION, from_status, to_status):
            to_status = states.ERROR_MIGRATION
        m.conductor.migration_transition(
            ctxt, migration["id"], from_status, to_status, values={"error_message": reason},
            instance_values={"task_state": None, "vm_state": states.ACTIVE},
            instance_expected={"task_state": states.MIGRATING})

    # --- destination --------------------------------------------------------
    def _context(self, ctxt, migration_id):
        c = self.m.conductor.migration_context(ctxt, migration_id)
        return c["instance"], c["network_info"], c["block_device_info"]

    def _info_or_context(self, ctxt, migration_id, instance_info):
        if instance_info is None:
            return self._context(ctxt, migration_id)
        return (instance_info["instance"], instance_info["network_info"],
                instance_info["block_device_info"])

    def pre_at_destination(self, ctxt, migration_id, migrate_data, instance_info=None):
        m = self.m
        instance, nw, bdms = self._info_or_context(ctxt, migration_id, instance_info)
        with m.event(ctxt, instance["uuid"], "compute_pre_live_migration_at_destination"), \
                m.notifier.phase(ctxt, "live_migration_pre", instance):
            migrate_data = m.driver.pre_live_migration(instance, bdms, nw, migrate_data)
            connections = m.volume_driver.connect_all(instance, bdms)
            m.vif_driver.plug_all(instance, nw)
            m.firewall_driver.apply_instance_filter(instance, nw)
        return dict(migrate_data, dest_volume_connections=connections)

    def post_at_destination(self, ctxt, migration_id, migrate_data, instance_info=None):
        m = self.m
        instance, nw, bdms = self._info_or_context(ctxt, migration_id, instance_info)
        with m.event(ctxt, instance["uuid"], "compute_post_live_migration_at_destination"), \
                m.notifier.phase(ctxt, "live_migration_post_dest", instance):
            m.driver.post_live_migration_at_destination(instance, nw, bdms, migrate_data)
        return True

    def rollback_at_destination(self, ctxt, migration_id, migrate_data, destroy_disks):
        m = self.m
        instance, nw, bdms = self._context(ctxt, migration_id)
        with m.event(ctxt, instance["uuid"],
                     "compute_rollback_live_migration_at_destination"), \
                m.notifier.phase(ctxt, "live_migration_rollback_dest", instance):
            problems = steps.run_all([
                ("volume connections", lambda: m.volume_driver.disconnect_all(instance, bdms)),
                ("filter", lambda: m.firewall_driver.unfilter_instance(instance, nw)),
                ("VIFs", lambda: m.vif_driver.unplug_all(instance, nw)),
                ("domain and files", lambda: m.driver.rollback_live_migration_at_destination(
                    instance, nw, bdms, destroy_disks, migrate_data))],
                purpose="rollback at destination")
            if problems:
                raise exception.HypervisorError(host=m.host, reason="; ".join(problems))
        return True
