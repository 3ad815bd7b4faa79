"""Live migration on the hosts: idempotent steps the conductor calls.

The conductor that owns a migration drives it (:mod:`conductor.flows.live`);
each host answers one step at a time. Every step is keyed by (migration,
step) in the host's journal (:mod:`compute.journal`) and carries the owner's
epoch, so a repeat returns the first outcome and a stale owner is refused.

Destination: ``pre_live_migration`` (directory, disks, volume connections,
VIFs, filter), ``post_live_migration_at_destination`` (the arrived domain made
persistent), ``rollback_live_migration_at_destination`` (all of it removed).
Source: ``live_migration_start`` (the hypervisor job, steered by the monitor;
the call returns at once and the source reports the job's end to the
conductor), ``live_migration_steer`` (abort, force-complete),
``live_migration_tune`` (the user's bandwidth and max downtime, 2.2),
``post_live_migration_at_source`` and ``rollback_live_migration_at_source``.
Either host: ``inspect`` tells where the guest is defined and running and
whether a migration job still runs, which is what recovery decides from.

Destructive steps look first: neither host destroys a domain that runs as the
guest (GuestRunningHere), whatever the message asked for.
"""

import threading
import time

import oslo_messaging as messaging
from oslo_log import log as logging

from compute import migration_monitor, steps
from godwit import exception

LOG = logging.getLogger(__name__)

# How long a finished job's outcome is re-sent to the conductors before the
# agent leaves it to them to ask (live_migration_start returns it too).
REPORT_FOR = 600


class LiveMigrations:
    """Both sides of live migration for one compute host."""

    def __init__(self, manager):
        self.manager = manager
        self.monitors = {}            # migration id -> running Monitor
        self._starting = {}           # migration id -> Lock held while its job starts
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def shutdown(self):
        """Stop watching jobs; they go on in the hypervisor (a successor finds them)."""
        self.stopping.set()

    def _step(self, migration_id, step, epoch, fn, instance):
        m = self.manager
        return m.journal.run(migration_id, step, epoch, fn, wait=m.step_wait,
                             after=lambda name: m.step_done(name, instance["uuid"]))

    # --- checks (before the move is durable; nothing to journal) ---------------
    def check_destination(self, ctxt, instance_uuid, source, block_migration,
                          instance_info):
        m = self.manager
        with m.event(ctxt, instance_uuid, "compute_check_can_live_migrate_destination"):
            dest_check = m.driver.check_can_live_migrate_destination(
                instance_info["instance"], block_migration)
            try:
                migrate_data = m.compute_rpc.check_can_live_migrate_source(
                    ctxt, source, instance_uuid, dest_check, instance_info=instance_info)
            except messaging.MessagingTimeout:
                raise exception.PreCheckNoAnswer(
                    reason=f"the source host {source} did not answer its pre-check in "
                           "time; is its compute service running?") from None
            finally:
                m.driver.cleanup_live_migration_destination_check(dest_check)
        return dict(migrate_data, dest_host=m.host)

    def check_source(self, ctxt, instance_uuid, dest_check_data, instance_info):
        m = self.manager
        with m.event(ctxt, instance_uuid, "compute_check_can_live_migrate_source"):
            migrate_data = m.driver.check_can_live_migrate_source(instance_info["instance"],
                                                                  dest_check_data)
            if migrate_data.get("block_migration"):
                for bdm in instance_info["block_device_info"]:
                    if bdm.get("device_type") == "cdrom":
                        raise exception.MigrationPreCheckError(
                            reason="the instance has a CD-ROM, which cannot be "
                                   "block-migrated")
            return migrate_data

    # --- destination -------------------------------------------------------------
    def pre_at_destination(self, ctxt, migration_id, epoch, migrate_data, info):
        m = self.manager
        instance, nw, bdms = info["instance"], info["network_info"], info["block_device_info"]

        def prepare():
            with m.event(ctxt, instance["uuid"], "compute_pre_live_migration_at_destination"), \
                    m.notifier.phase(ctxt, "live_migration_pre", instance):
                data = m.driver.pre_live_migration(instance, bdms, nw, migrate_data)
                connections = m.volume_driver.connect_all(instance, bdms)
                m.vif_driver.plug_all(instance, nw)
                m.firewall_driver.apply_instance_filter(instance, nw)
            return dict(data, dest_volume_connections=connections)
        return self._step(migration_id, "pre_live_migration", epoch, prepare, instance)

    def post_at_destination(self, ctxt, migration_id, epoch, migrate_data, info):
        m = self.manager
        instance, nw, bdms = info["instance"], info["network_info"], info["block_device_info"]

        def finish():
            with m.event(ctxt, instance["uuid"],
                         "compute_post_live_migration_at_destination"), \
                    m.notifier.phase(ctxt, "live_migration_post_dest", instance):
                m.driver.post_live_migration_at_destination(instance, nw, bdms, migrate_data)
            return True
        return self._step(migration_id, "post_live_migration_at_destination", epoch, finish,
                          instance)

    def rollback_at_destination(self, ctxt, migration_id, epoch, migrate_data,
                                destroy_disks, info):
        m = self.manager
        instance, nw, bdms = info["instance"], info["network_info"], info["block_device_info"]

        def undo():
            found = m.driver.inspect_instance(instance)
            if found["active"]:
                # The switch-over happened after all: this is the guest.
                raise exception.GuestRunningHere(action="rollback", instance_id=instance["uuid"],
                                                 host=m.host, state="running")
            with m.event(ctxt, instance["uuid"],
                         "compute_rollback_live_migration_at_destination"), \
                    m.notifier.phase(ctxt, "live_migration_rollback_dest", instance):
                problems = steps.run_all([
                    ("volume connections",
                     lambda: m.volume_driver.disconnect_all(instance, bdms)),
                    ("filter", lambda: m.firewall_driver.unfilter_instance(instance, nw)),
                    ("VIFs", lambda: m.vif_driver.unplug_all(instance, nw)),
                    ("domain and files",
                     lambda: m.driver.rollback_live_migration_at_destination(
                         instance, nw, bdms, destroy_disks, migrate_data))],
                    purpose="rollback at destination")
                if problems:
                    raise exception.HypervisorError(host=m.host, reason="; ".join(problems))
            return True
        return self._step(migration_id, "rollback_live_migration_at_destination", epoch, undo,
                          instance)

    # --- source: the job -----------------------------------------------------------
    def start(self, ctxt, migration_id, epoch, dest, migrate_data, info, tuning=None):
        """Start (or find again) the hypervisor job; answer at once.

        Returns ``{"state": "running"}`` while the job runs (its end is reported
        to the conductor), else ``{"state": "ended", "outcome": ...}``.
        """
        m = self.manager
        m.journal.fence(migration_id, "live_migration", epoch)
        # One start at a time per migration: a repeated call waits for the
        # first to have started the job (or given up), then sees its monitor.
        with self._lock:
            starting = self._starting.setdefault(migration_id, threading.Lock())
        if not starting.acquire(timeout=m.step_wait):
            raise exception.StepInProgress(step="live_migration", migration_id=migration_id,
                                           host=m.host)
        try:
            return self._start(ctxt, migration_id, epoch, dest, migrate_data, info, tuning)
        finally:
            starting.release()

    def _start(self, ctxt, migration_id, epoch, dest, migrate_data, info, tuning):
        m = self.manager
        instance = info["instance"]
        with self._lock:
            monitor = self.monitors.get(migration_id)
            if monitor is not None:
                monitor.epoch = max(monitor.epoch, epoch)
                return {"state": "running", "stats": monitor.job.stats()}
        entry = m.journal.get(migration_id, "live_migration")
        if entry is not None and entry["state"] == "done":
            return {"state": "ended", "outcome": _loads(entry["result"])}
        job = m.driver.find_migration_job(instance)
        if job is None and entry is not None:
            # Started by an earlier process of this agent and over by now.
            outcome = self._outcome_from_host(instance, dest)
            m.journal.record(migration_id, "live_migration", epoch, outcome)
            return {"state": "ended", "outcome": outcome}
        tuning = dict(tuning or {})
        if job is None:
            m.journal.begin(migration_id, "live_migration", epoch)
            params = migration_monitor.initial_params(m.conf, instance, migrate_data, tuning)
            try:
                job = m.driver.live_migration(instance, dest, dict(
                    migrate_data, migration_id=migration_id), params)
            except Exception as e:
                outcome = {"ok": False, "guest": "source", "cancelled": False,
                           "reason": f"live migration to {dest} failed: "
                                     f"{exception.message_of(e)}"}
                m.journal.record(migration_id, "live_migration", epoch, outcome)
                self._event(ctxt, instance["uuid"], time.time(), outcome, e)
                return {"state": "ended", "outcome": outcome}
            tuning.setdefault("started_at", time.time())
        else:
            LOG.info("Migration %s: found its job still running on %s; watching it again",
                     migration_id, m.host)
        self._watch(ctxt, migration_id, epoch, instance, dest, migrate_data, job, tuning)
        return {"state": "running"}

    def _watch(self, ctxt, migration_id, epoch, instance, dest, migrate_data, job, tuning):
        m = self.manager
        monitor = migration_monitor.Monitor(
            m.conf, job, instance, migrate_data,
            report=lambda stats, pct, tuning: self._progress(ctxt, migration_id, stats, pct,
                                                             tuning),
            resume=tuning)
        monitor.epoch = epoch
        with self._lock:
            self.monitors[migration_id] = monitor
        threading.Thread(target=self._run_monitor, name=f"monitor-{migration_id}",
                         args=(ctxt, migration_id, instance, dest, monitor),
                         daemon=True).start()

    def _run_monitor(self, ctxt, migration_id, instance, dest, monitor):
        m = self.manager
        started = time.time()
        error = None
        try:
            stats = monitor.run(stopping=self.stopping)
            outcome = {"ok": True, "guest": "destination", "forced": monitor.forced,
                       "stats": _progress_values(stats)}
        except migration_monitor.MonitorStopped:
            LOG.info("Migration %s: the agent stops; its job goes on without a monitor",
                     migration_id)
            with self._lock:
                self.monitors.pop(migration_id, None)
            return
        except migration_monitor.MigrationAborted as e:
            error = e
            outcome = {"ok": False, "guest": "source", "cancelled": e.by_request,
                       "reason": str(e)}
        except Exception as e:
            error = e
            outcome = {"ok": False, "guest": "source", "cancelled": False,
                       "reason": f"live migration to {dest} failed: {exception.message_of(e)}"}
        if not outcome["ok"]:
            # Ground truth over the job's word: a job that failed after the
            # switch-over (post-copy) leaves the guest on the destination.
            here = m.driver.inspect_instance(instance)
            if not here["active"]:
                outcome = dict(outcome, guest="unknown")
        m.journal.record(migration_id, "live_migration", monitor.epoch, outcome)
        self._event(ctxt, instance["uuid"], started, outcome, error)
        with self._lock:
            self.monitors.pop(migration_id, None)
        self._report(ctxt, migration_id, monitor, outcome)

    def _event(self, ctxt, instance_uuid, started, outcome, error):
        import traceback

        from godwit import states
        from godwit.timeutils import utcnow
        self.manager.record_event(
            ctxt, instance_uuid=instance_uuid, event="compute_live_migration",
            host=self.manager.host, start_time=_iso(started), finish_time=utcnow(),
            result=states.EVENT_SUCCESS if outcome["ok"] else states.EVENT_ERROR,
            traceback=("".join(traceback.format_exception(error))[-8000:]
                       if error is not None else None))

    def _report(self, ctxt, migration_id, monitor, outcome):
        """Tell the conductors how the job ended, until one has it."""
        m = self.manager
        deadline = time.monotonic() + REPORT_FOR
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                m.conductor.migration_job_ended(ctxt, migration_id, monitor.epoch, outcome)
                return
            except messaging.MessagingTimeout:
                LOG.warning("Migration %s: no conductor took the job's end yet; retrying",
                            migration_id)
            except Exception:
                LOG.exception("Migration %s: could not report the job's end", migration_id)
            self.stopping.wait(2)

    def _progress(self, ctxt, migration_id, stats, percent, tuning):
        values = _progress_values(stats)
        values["progress"] = percent
        # Rates and the downtime now: for the timeline's progress samples only.
        for key, name in (("dirty_rate", "dirty_rate"), ("bandwidth", "transfer_rate"),
                          ("max_downtime_ms", "max_downtime_ms")):
            if stats.get(key) is not None:
                values[name] = int(stats[key])
        try:
            self.manager.conductor.migration_progress(ctxt, migration_id, values, tuning)
        except Exception:
            LOG.warning("Could not record progress of migration %s", migration_id,
                        exc_info=True)

    def _outcome_from_host(self, instance, dest):
        """How a job that is no longer running ended, from what this host has."""
        here = self.manager.driver.inspect_instance(instance)
        if here["active"]:
            return {"ok": False, "guest": "source", "cancelled": False,
                    "reason": f"the migration job to {dest} ended while the compute agent "
                              f"on {self.manager.host} was down; the guest still runs here"}
        return {"ok": False, "guest": "unknown", "cancelled": False,
                "reason": f"the migration job to {dest} ended while the compute agent on "
                          f"{self.manager.host} was down, and the guest no longer runs here"}

    def _monitor_of(self, ctxt, migration_id, epoch, info):
        """The running job's monitor (attached again if this agent restarted),
        or the job's state as start() answers it when there is none."""
        m = self.manager
        m.journal.fence(migration_id, "live_migration", epoch)
        with self._lock:
            monitor = self.monitors.get(migration_id)
        if monitor is None:
            entry = m.journal.get(migration_id, "live_migration")
            if entry is not None and entry["state"] == "done":
                return None, {"state": "ended", "outcome": _loads(entry["result"])}
            job = m.driver.find_migration_job(info["instance"])
            if job is None:
                return None, {"state": "not running"}
            self._watch(ctxt, migration_id, epoch, info["instance"], None,
                        info.get("migrate_data") or {}, job, info.get("tuning"))
            with self._lock:
                monitor = self.monitors.get(migration_id)
        return monitor, None

    def tune(self, ctxt, migration_id, epoch, values, info):
        """The user's ``bandwidth_mib`` (MiB/s) and ``max_downtime_ms`` for the
        running job (either may be absent); absolute values, so asking again is
        harmless. Returns ``{"state": "running", "tuning": ..., "applied": True|False}``
        (False: the hypervisor had not taken it yet; it goes on trying) or the
        job's state as start() does."""
        monitor, state = self._monitor_of(ctxt, migration_id, epoch, info)
        if monitor is None:
            return state
        tuning, applied = monitor.set_user_tuning(
            bandwidth_mib=values.get("bandwidth_mib"),
            max_downtime_ms=values.get("max_downtime_ms"))
        return {"state": "running", "tuning": tuning, "applied": applied}

    def steer(self, ctxt, migration_id, epoch, action, info):
        """``abort`` or ``force_complete`` the running job; finds it again first
        if this agent restarted. Returns the job's state as start() does."""
        monitor, state = self._monitor_of(ctxt, migration_id, epoch, info)
        if monitor is None:
            return state
        if action == "abort":
            monitor.request_abort()
        else:
            monitor.request_force_complete()
        return {"state": "running"}

    # --- source: after the job ------------------------------------------------------
    def post_at_source(self, ctxt, migration_id, epoch, migrate_data, info):
        m = self.manager
        instance, nw, bdms = info["instance"], info["network_info"], info["block_device_info"]

        def cleanup():
            if m.driver.inspect_instance(instance)["active"]:
                raise exception.GuestRunningHere(action="post-migration clean-up",
                                                 instance_id=instance["uuid"], host=m.host,
                                                 state="running")
            with m.event(ctxt, instance["uuid"], "compute_post_live_migration"), \
                    m.notifier.phase(ctxt, "live_migration_post", instance):
                problems = steps.run_all([
                    ("source volume connections",
                     lambda: m.volume_driver.disconnect_all(instance, bdms)),
                    ("source filter",
                     lambda: m.firewall_driver.unfilter_instance(instance, nw)),
                    ("source VIFs", lambda: m.vif_driver.unplug_all(instance, nw)),
                    ("source domain", lambda: m.driver.post_live_migration_at_source(
                        instance, bdms, migrate_data)),
                    ("source files", lambda: m.driver.cleanup_source_files(
                        instance, migrate_data))], m.host, "post live migration")
                if problems:
                    raise exception.HypervisorError(host=m.host, reason="; ".join(problems))
            return True
        return self._step(migration_id, "post_live_migration_at_source", epoch, cleanup, instance)

    def rollback_at_source(self, ctxt, migration_id, epoch, info):
        """The guest stays here: make sure its networking is whole again."""
        m = self.manager
        instance, nw = info["instance"], info["network_info"]

        def restore():
            with m.event(ctxt, instance["uuid"], "compute_rollback_live_migration"), \
                    m.notifier.phase(ctxt, "live_migration_rollback", instance):
                # Never taken down before the switch-over; re-asserting it is
                # idempotent and repairs a half-done step.
                m.vif_driver.plug_all(instance, nw)
                m.firewall_driver.apply_instance_filter(instance, nw)
            return True
        return self._step(migration_id, "rollback_live_migration_at_source", epoch, restore,
                          instance)


def _progress_values(stats):
    return {k: int(stats[k]) for k in ("memory_total", "memory_processed", "memory_remaining",
                                       "disk_total", "disk_processed", "disk_remaining")
            if (stats or {}).get(k) is not None}


def _loads(raw):
    import json
    return json.loads(raw) if raw else None


def _iso(ts):
    import datetime
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).replace(tzinfo=None)
