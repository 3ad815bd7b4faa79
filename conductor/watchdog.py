"""The watchdog: no migration stays in an in-progress status forever.

Cold migrations and resizes get one timeout for any step
(``cold_migration_step_timeout``): a step that has not moved the record by
then ends the migration in ``error`` (the hosts' steps are casts, there is no
job to abort). The guest is then wherever that step left it: untouched
before the copy, ERROR from the copy on (an operator, or later the
reconciler, settles it), running on the destination while confirming.


Every ``migration_watchdog_interval`` the conductor looks at unfinished live
migrations. One whose row has not changed for longer than its phase's
timeout (progress writes count as changes, so a migration that advances is
never cut short) is dealt with:

* source agent down, or the status is one only the conductor drives
  (``accepted``) or past the switch-over (``post-migrating``): the migration
  ends in ``error`` at once, with the reason, and task_state is cleared. If
  the source died while the guest was being transferred, where the guest runs
  is not known, so the instance goes to ERROR for an operator (or, later, the
  reconciler) to settle.
* source agent up: it is asked to abort (a defined outcome in every phase);
  if the migration is still unfinished one timeout later, it ends in
  ``error``.
"""

import datetime

from oslo_log import log as logging

from godwit import exception, states
from godwit.db import api as db_api
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)


class Watchdog:
    def __init__(self, conductor):
        self.c = conductor
        self.conf = conductor.conf
        self.db = conductor.db
        self.abort_asked = {}  # migration id -> (status, when) of our abort request

    def timeout_for(self, status):
        conf = self.conf
        return {states.ACCEPTED: conf.live_migration_accepted_timeout,
                states.QUEUED: conf.live_migration_queued_timeout,
                states.PREPARING: conf.live_migration_preparing_timeout,
                states.RUNNING_MIGRATION: conf.live_migration_progress_timeout,
                states.POST_MIGRATING: conf.live_migration_post_timeout}[status]

    COLD_ACTIVE = (states.ACCEPTED, states.PRE_MIGRATING, states.MIGRATING_COLD,
                   states.POST_MIGRATING, states.CONFIRMING, states.REVERTING)

    def sweep(self, ctxt, now=None):
        now = now or utcnow()
        self._sweep_cold(now)
        unfinished = self.db.migration_list({
            "migration_type": states.LIVE_MIGRATION,
            "status": [states.ACCEPTED, states.QUEUED, states.PREPARING,
                       states.RUNNING_MIGRATION, states.POST_MIGRATING]})
        live_ids = {m["id"] for m in unfinished}
        for mid in list(self.abort_asked):
            if mid not in live_ids:
                del self.abort_asked[mid]
        for m in unfinished:
            last = m["updated_at"] or m["created_at"]
            limit = datetime.timedelta(seconds=self.timeout_for(m["status"]))
            if now - last > limit:
                try:
                    self._overdue(ctxt, m, now, limit)
                except exception.GodwitException:
                    LOG.exception("Watchdog could not settle migration %s", m["id"])

    def _sweep_cold(self, now):
        limit = datetime.timedelta(seconds=self.conf.cold_migration_step_timeout)
        for m in self.db.migration_list({"migration_type": [states.COLD_MIGRATION,
                                                            states.RESIZE],
                                         "status": list(self.COLD_ACTIVE)}):
            if now - (m["updated_at"] or m["created_at"]) <= limit:
                continue
            reason = (f"watchdog: the {m['migration_type']} stayed '{m['status']}' for over "
                      f"{int(limit.total_seconds())} s (a host did not finish its step)")
            values = {"task_state": None}
            if m["status"] in (states.MIGRATING_COLD, states.POST_MIGRATING,
                               states.REVERTING):
                values.update(vm_state=states.ERROR, fault_message=reason)
            elif m["status"] == states.CONFIRMING:
                values["vm_state"] = m["old_vm_state"] or states.ACTIVE
            LOG.error("Migration %s: %s", m["id"], reason)
            try:
                self.db.migration_transition(m["id"], m["status"], states.ERROR_MIGRATION,
                                             values={"error_message": reason},
                                             instance_values=values)
            except exception.ConcurrentUpdate:
                pass

    def _overdue(self, ctxt, m, now, limit):
        status = m["status"]
        phase = f"'{status}' for over {int(limit.total_seconds())} s"
        source_up = self._service_up(m["source_compute"])
        asked = self.abort_asked.get(m["id"])
        if status in (states.ACCEPTED, states.POST_MIGRATING) or not source_up or (
                asked and asked[0] == status and now - asked[1] > limit):
            why = "source host down" if not source_up else "no answer to abort" \
                if asked else "stuck"
            self._end_in_error(m, f"watchdog: {why}, migration stayed {phase}")
            return
        if asked is None or asked[0] != status:
            LOG.warning("Watchdog: migration %s stayed %s; asking %s to abort it", m["id"],
                        phase, m["source_compute"])
            self.abort_asked[m["id"]] = (status, now)
            self.c.compute_rpc.live_migration_abort(ctxt, m["source_compute"], m["id"])

    def _service_up(self, host):
        svc = self.db.service_get_by_host(host) if host else None
        return svc is not None and db_api.is_service_up(svc, self.conf.service_down_time)

    def _end_in_error(self, m, reason):
        instance_values = {"task_state": None}
        if m["status"] == states.RUNNING_MIGRATION:
            instance_values.update(vm_state=states.ERROR, fault_message=(
                reason + "; the guest may be on either host, check before recovering"))
        LOG.error("Migration %s: %s", m["id"], reason)
        try:
            self.db.migration_transition(m["id"], m["status"], states.ERROR_MIGRATION,
                                         values={"error_message": reason},
                                         instance_values=instance_values,
                                         instance_expected={"task_state": states.MIGRATING})
        except exception.ConcurrentUpdate:
            LOG.info("Migration %s moved on meanwhile; leaving it", m["id"])
        self.abort_asked.pop(m["id"], None)
