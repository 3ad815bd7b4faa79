"""Live migration on the hosts: the source drives, the destination serves.

The conductor has checked the move and cast ``live_migration`` to the
source. The source then walks the migration along the state machine, one
compare-and-swap per edge (through the conductor)::

    accepted -> queued        slot requested (max_concurrent_live_migrations)
    queued -> preparing       destination prepared by pre_live_migration (call)
    preparing -> running      the hypervisor moves the guest
    running -> post-migrating guest runs on the destination; instance.host
                              switches in the same transaction
    post-migrating -> completed  both hosts finalised, task_state cleared

A failure before the switch rolls back both hosts and ends in ``error``
(pre_live_migration failed, as in Nova), ``cancelled`` (aborted) or
``failed``; instance stays ACTIVE on the source. A failure after the switch
cannot move the guest back: the migration ends in ``error`` with what was
left undone, and the instance stays on the destination.

Every host step is idempotent, so a step retried after a crash does no harm.
"""

import concurrent.futures
import threading
import time

from oslo_log import log as logging

from godwit import exception, state_machine, states

LOG = logging.getLogger(__name__)


class MigrationMonitor:
    """Given to the driver during the transfer: progress in, abort out.

    Progress is written to the migration record at most every
    ``interval`` seconds; the instance's progress percentage never goes
    backwards, even when dirty pages make ``remaining`` grow again.
    """

    def __init__(self, conductor, ctxt, migration, interval=0.5):
        self.conductor = conductor
        self.ctxt = ctxt
        self.migration = migration
        self.interval = interval
        self.percent = 0
        self._last = 0.0
        self._abort = threading.Event()

    def abort(self):
        self._abort.set()

    def should_abort(self):
        return self._abort.is_set()

    def report(self, force=False, **progress):
        now = time.monotonic()
        if not force and now - self._last < self.interval and progress.get(
                "memory_remaining", 1) != 0:
            return
        self._last = now
        total = (progress.get("memory_total") or 0) + (progress.get("disk_total") or 0)
        remaining = (progress.get("memory_remaining") or 0) + (progress.get("disk_remaining")
                                                                or 0)
        if total:
            self.percent = max(self.percent, int(100 * (total - remaining) / total))
        try:
            self.conductor.migration_update(self.ctxt, self.migration["id"],
                                            dict(progress, progress=self.percent),
                                            expected_status=states.RUNNING_MIGRATION)
        except Exception:
            LOG.warning("Could not record progress of migration %s", self.migration["id"],
                        exc_info=True)


class LiveMigrations:
    """Both sides of live migration for one compute host."""

    def __init__(self, manager):
        self.m = manager
        limit = manager.conf.max_concurrent_live_migrations
        # A slot per concurrent outgoing migration; the rest wait in 'queued'.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=limit if limit > 0 else 64, thread_name_prefix="live-migration")
        self.monitors = {}

    def shutdown(self):
        for monitor in list(self.monitors.values()):
            monitor.abort()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # --- checks ---------------------------------------------------------
    def check_destination(self, ctxt, instance_uuid, source, block_migration):
        m = self.m
        with m.event(ctxt, instance_uuid, "compute_check_can_live_migrate_destination"):
            instance = m.conductor.instance_get(ctxt, instance_uuid)["instance"]
            dest_check = m.driver.check_can_live_migrate_destination(instance, block_migration)
            try:
                migrate_data = m.compute_rpc.check_can_live_migrate_source(
                    ctxt, source, instance_uuid, dest_check)
            finally:
                m.driver.cleanup_live_migration_destination_check(dest_check)
        return dict(migrate_data, dest_host=m.host)

    def check_source(self, ctxt, instance_uuid, dest_check_data):
        m = self.m
        with m.event(ctxt, instance_uuid, "compute_check_can_live_migrate_source"):
            instance = m.conductor.instance_get(ctxt, instance_uuid)["instance"]
            return m.driver.check_can_live_migrate_source(instance, dest_check_data)

    # --- source -----------------------------------------------------------
    def start(self, ctxt, migration_id, dest, migrate_data):
        """RPC cast target: queue the migration and return at once."""
        m = self.m
        try:
            m.conductor.migration_transition(ctxt, migration_id, states.ACCEPTED, states.QUEUED)
        except exception.ConcurrentUpdate:
            LOG.info("Migration %s already left 'accepted'; not starting it again",
                     migration_id)
            return
        self.executor.submit(self._run_source, ctxt, migration_id, dest, migrate_data)

    def _run_source(self, ctxt, migration_id, dest, migrate_data):
        try:
            self._drive_source(ctxt, migration_id, dest, migrate_data)
        except Exception:
            LOG.exception("Live migration %s failed unexpectedly", migration_id)

    def _drive_source(self, ctxt, migration_id, dest, migrate_data):
        m = self.m
        context = m.conductor.migration_context(ctxt, migration_id)
        migration, instance = context["migration"], context["instance"]
        nw, bdms = context["network_info"], context["block_device_info"]
        uuid = instance["uuid"]
        try:
            m.conductor.migration_transition(ctxt, migration_id, states.QUEUED,
                                             states.PREPARING)
        except exception.ConcurrentUpdate:
            LOG.info("Migration %s left 'queued' while waiting (aborted?)", migration_id)
            return

        # Stage 1: prepare the destination.
        try:
            with m.event(ctxt, uuid, "compute_pre_live_migration"):
                migrate_data = m.compute_rpc.pre_live_migration(ctxt, dest, migration_id,
                                                                migrate_data)
        except Exception as e:
            self._rollback(ctxt, migration, instance, nw, bdms, dest, migrate_data,
                           states.PREPARING, states.ERROR_MIGRATION,
                           f"pre_live_migration on {dest} failed: {e}")
            return

        # Stage 2: the hypervisor moves the guest.
        migration = m.conductor.migration_transition(ctxt, migration_id, states.PREPARING,
                                                     states.RUNNING_MIGRATION)
        monitor = MigrationMonitor(m.conductor, ctxt, migration)
        self.monitors[migration_id] = monitor
        try:
            with m.event(ctxt, uuid, "compute_live_migration"):
                m.driver.live_migration(instance, dest, migrate_data, monitor)
        except Exception as e:
            aborted = monitor.should_abort()
            self._rollback(ctxt, migration, instance, nw, bdms, dest, migrate_data,
                           states.RUNNING_MIGRATION,
                           states.CANCELLED if aborted else states.FAILED,
                           "aborted on request" if aborted
                           else f"live migration to {dest} failed: {e}")
            return
        finally:
            self.monitors.pop(migration_id, None)

        # The guest runs on the destination now: record that first.
        dest_node = migration.get("dest_node") or dest
        m.conductor.migration_transition(
            ctxt, migration_id, states.RUNNING_MIGRATION, states.POST_MIGRATING,
            instance_values={"host": dest, "node": dest_node, "progress": 100,
                             "power_state": states.RUNNING},
            instance_expected={"task_state": states.MIGRATING})

        # Stage 3: finalise both hosts. Each step is tried even if one fails.
        problems = []
        with m.event(ctxt, uuid, "compute_post_live_migration"):
            for what, fn in (
                    ("source volume connections",
                     lambda: m.volume_driver.disconnect_all(instance, bdms)),
                    ("source filter", lambda: m.firewall_driver.unfilter_instance(instance, nw)),
                    ("source VIFs", lambda: m.vif_driver.unplug_all(instance, nw)),
                    ("source domain",
                     lambda: m.driver.post_live_migration_at_source(instance, bdms,
                                                                    migrate_data))):
                try:
                    fn()
                except Exception as e:
                    LOG.exception("Post live migration: %s on %s", what, m.host)
                    problems.append(f"{what} on {m.host}: {e}")
        dest_ok = True
        try:
            m.compute_rpc.post_live_migration_at_destination(ctxt, dest, migration_id,
                                                             migrate_data)
        except Exception as e:
            dest_ok = False
            problems.append(f"finishing the instance on {dest}: {e}")
        try:
            m.driver.cleanup_source_files(instance, migrate_data)
        except Exception as e:
            problems.append(f"source files on {m.host}: {e}")

        if not problems:
            m.conductor.migration_transition(
                ctxt, migration_id, states.POST_MIGRATING, states.COMPLETED,
                instance_values={"task_state": None},
                instance_expected={"task_state": states.MIGRATING})
            LOG.info("Live migration %s of %s to %s completed", migration_id, uuid, dest)
            return
        reason = "; ".join(problems)
        instance_values = {"task_state": None}
        if not dest_ok:
            instance_values.update(vm_state=states.ERROR, fault_message=reason)
        m.conductor.migration_transition(
            ctxt, migration_id, states.POST_MIGRATING, states.ERROR_MIGRATION,
            values={"error_message": reason}, instance_values=instance_values,
            instance_expected={"task_state": states.MIGRATING})

    def _rollback(self, ctxt, migration, instance, nw, bdms, dest, migrate_data, from_status,
                  to_status, reason):
        """Guest is still on the source: undo the destination, end the migration."""
        m = self.m
        LOG.warning("Rolling back live migration %s: %s", migration["id"], reason)
        problems = []
        with m.event(ctxt, instance["uuid"], "compute_rollback_live_migration"):
            try:
                m.compute_rpc.rollback_live_migration_at_destination(
                    ctxt, dest, migration["id"], migrate_data,
                    destroy_disks=not migrate_data.get("is_shared_instance_path"))
            except Exception as e:
                problems.append(f"cleaning {dest}: {e}")
            # The source's networking was never taken down before the switch;
            # re-asserting it is idempotent and repairs a half-done step.
            try:
                m.vif_driver.plug_all(instance, nw)
                m.firewall_driver.apply_instance_filter(instance, nw)
            except Exception as e:
                problems.append(f"restoring networking on {m.host}: {e}")
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
    def pre_at_destination(self, ctxt, migration_id, migrate_data):
        m = self.m
        context = m.conductor.migration_context(ctxt, migration_id)
        instance, nw, bdms = (context["instance"], context["network_info"],
                              context["block_device_info"])
        with m.event(ctxt, instance["uuid"], "compute_pre_live_migration_at_destination"):
            migrate_data = m.driver.pre_live_migration(instance, bdms, nw, migrate_data)
            m.volume_driver.connect_all(instance, bdms)
            m.vif_driver.plug_all(instance, nw)
            m.firewall_driver.apply_instance_filter(instance, nw)
        return migrate_data

    def post_at_destination(self, ctxt, migration_id, migrate_data):
        m = self.m
        context = m.conductor.migration_context(ctxt, migration_id)
        instance, nw, bdms = (context["instance"], context["network_info"],
                              context["block_device_info"])
        with m.event(ctxt, instance["uuid"], "compute_post_live_migration_at_destination"):
            m.driver.post_live_migration_at_destination(instance, nw, bdms, migrate_data)
        return True

    def rollback_at_destination(self, ctxt, migration_id, migrate_data, destroy_disks):
        m = self.m
        context = m.conductor.migration_context(ctxt, migration_id)
        instance, nw, bdms = (context["instance"], context["network_info"],
                              context["block_device_info"])
        problems = []
        with m.event(ctxt, instance["uuid"], "compute_rollback_live_migration_at_destination"):
            for what, fn in (
                    ("volume connections",
                     lambda: m.volume_driver.disconnect_all(instance, bdms)),
                    ("filter", lambda: m.firewall_driver.unfilter_instance(instance, nw)),
                    ("VIFs", lambda: m.vif_driver.unplug_all(instance, nw)),
                    ("domain and files",
                     lambda: m.driver.rollback_live_migration_at_destination(
                         instance, nw, bdms, destroy_disks, migrate_data))):
                try:
                    fn()
                except Exception as e:
                    LOG.exception("Rollback at destination: %s on %s", what, m.host)
                    problems.append(f"{what}: {e}")
            if problems:
                raise exception.HypervisorError(host=m.host, reason="; ".join(problems))
        return True
