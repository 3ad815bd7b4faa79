"""Live migration, driven by the conductor that owns it (phases: godwit.phases.LIVE).

The request (:mod:`conductor.live_migrate`) checks, claims the instance and
picks the destination, leaving the move in ``queued``. From there::

    queued          a slot on the source (max_concurrent_live_migrations), or wait
    preparing       destination: pre_live_migration           -> running
    running         source: live_migration_start (the job and its monitor);
                    the source reports the job's end          -> post-migrating
                    (switched: instances.host is the destination), or rolling-back
    post-migrating  source: post_live_migration_at_source; destination:
                    post_live_migration_at_destination        -> completed
    rolling-back    destination: rollback_live_migration_at_destination; source:
                    rollback_live_migration_at_source         -> failed | cancelled

Recovery is the same handlers run again, with ground truth where a step's
answer is not enough: when the job's end is unknown (the source's agent died
and its job is gone), both hosts are asked where the domain is defined and
running (:meth:`LiveFlow.resolve`). A destination that is down while preparing
or rolling back is given up (the guest stays on the source) and cleaned when
it returns; a source that is down after the switch-over is cleaned when it
returns. Only when neither host can say where the guest runs does the move
end in ``error``, resumed when the missing host returns.
"""

import time

import oslo_messaging as messaging
from oslo_log import log as logging

from conductor.flows import base
from godwit import exception, states
from godwit.db import moves, timeline

LOG = logging.getLogger(__name__)

# What LiveFlow._post_at_source returns when the source cannot be asked.
_SOURCE_AWAY = object()


class LiveFlow(base.Flow):

    def info(self, m):
        """The instance, VIFs and BDMs the host steps are sent: read once while
        this conductor holds the move (the request path leaves what its checks
        read), then kept up to date with what the move writes to the instance."""
        info = self.engine.info_of(m)
        if info is None:
            c = self.db.migration_context(m["id"], with_nodes_and_flavors=False)
            info = {"instance": c["instance"], "network_info": c["network_info"],
                    "block_device_info": c["block_device_info"]}
            self.engine.keep_info(m, info)
        return info

    def advanced(self, m, new, kwargs):
        # What the move wrote to its instance, in the kept copy too.
        info = self.engine.info_of(m)
        if info is not None and kwargs.get("instance_values"):
            self.engine.keep_info(new, dict(
                info, instance=dict(info["instance"], **kwargs["instance_values"])))

    def advance(self, m, event, **kwargs):
        new = super().advance(m, event, **kwargs)
        if m["status"] in moves.SLOT_HOLDERS and new["status"] not in moves.SLOT_HOLDERS:
            # A slot on the source is free: the next queued migration may start.
            for q in self.db.migrations_queued_on(m["source_compute"]):
                self.engine.kick(q["id"])
                break
        return new

    # --- accepted: only seen by recovery ---------------------------------------------------
    def accepted(self, m):
        data = self.data(m)
        if data.get("migrate_data") and m["dest_compute"]:
            return self.advance(m, "checked")
        reason = ("the conductor stopped during the pre-checks; nothing was prepared on any "
                  "host; ask for the migration again")
        return self.advance(m, "interrupted", values={"error_message": reason},
                            instance_values={"task_state": None},
                            instance_expected={"task_state": states.MIGRATING})

    # --- queued ------------------------------------------------------------------------------
    def queued(self, m):
        if m["abort_requested_at"] or self.overdue(m):
            reason = ("aborted on request while queued" if m["abort_requested_at"] else
                      f"waited longer than live_migration_queued_timeout "
                      f"({self.conf.live_migration_queued_timeout} s) for a slot on "
                      f"{m['source_compute']}")
            new = self.advance(m, "abort", values={"error_message": reason},
                               instance_values={"task_state": None},
                               instance_expected={"task_state": states.MIGRATING})
            self.conductor.notify(self.ctxt(m), "instance.live_migration_abort.end",
                                  {"migration_id": m["id"], "phase": "queued"})
            return new
        return self.db.migration_take_slot(m)

    # --- preparing ---------------------------------------------------------------------------
    def preparing(self, m):
        if m["abort_requested_at"]:
            return self.roll_back(m, "abort", states.CANCELLED,
                                  "aborted on request while preparing")
        data = self.data(m)
        dest = m["dest_compute"]
        try:
            with self.conductor.event(self.ctxt(m), m["instance_uuid"],
                                      "conductor_pre_live_migration"):
                migrate_data = self.call(m, dest, "pre_live_migration", m["id"], m["epoch"],
                                         data["migrate_data"], self.info(m))
        except exception.HostUnreachable as e:
            if not self.overdue(m) and "down" not in str(e):
                return None
            return self.roll_back(m, "fail", states.FAILED,
                                  f"the destination {dest} could not be prepared: {e}")
        except (exception.MigrationFenced, base.Stopping):
            raise
        except Exception as e:
            return self.roll_back(m, "fail", states.FAILED,
                                  f"pre_live_migration on {dest} failed: "
                                  f"{exception.message_of(e)}")
        data["migrate_data"] = migrate_data
        try:
            return self.advance(m, "prepared", data=data, unless_aborted=True)
        except exception.AbortRequested:
            return self.roll_back(m, "abort", states.CANCELLED,
                                  "aborted on request while preparing")

    # --- running -----------------------------------------------------------------------------
    def running(self, m):
        outcome = self.engine.outcomes.pop(m["id"], None)
        if outcome is None:
            kind, value = self._job(m)
            if kind != "outcome":
                return value          # a row it moved on to, or None: wait
            outcome = value
        return self.job_ended(m, outcome)

    def _job(self, m):
        """Start or find the job and send the user's intents.

        Returns ("outcome", <how the job ended>), or ("row", <the row moved
        on to, None to wait>).
        """
        data = self.data(m)
        source = m["source_compute"]
        info = self.info(m)
        try:
            if m["abort_requested_at"]:
                st = self.call(m, source, "live_migration_steer", m["id"], m["epoch"], "abort",
                               dict(info, migrate_data=data["migrate_data"],
                                    tuning=data.get("tuning")))
                if st["state"] == "not running":
                    return "outcome", {"ok": False, "guest": "source", "cancelled": True,
                                       "reason": "aborted on request before the transfer "
                                                 "started"}
            else:
                st = self.call(m, source, "live_migration_start", m["id"], m["epoch"],
                               m["dest_compute"], data["migrate_data"], info,
                               tuning=self._tuning(data))
                if st["state"] == "running" and m["force_complete_requested_at"]:
                    st = self.call(m, source, "live_migration_steer", m["id"], m["epoch"],
                                   "force_complete", info)
                if st["state"] == "running" and moves.tuning_pending(m):
                    st = self._tune(m, info, data) or st
        except exception.HostUnreachable:
            return "row", self.resolve(m, f"the source {source} could not be asked about "
                                          "its migration job")
        if st["state"] == "ended":
            return "outcome", st["outcome"]
        if st["state"] == "running" and self.overdue(m):
            self._stalled(m, st.get("stats") or {})
        return "row", None

    @staticmethod
    def _tuning(data):
        """The tuning a monitor (re)attached to the job starts from: its own last
        report, with what the user set and this conductor applied."""
        tuning = dict(data.get("tuning") or {})
        # Only what the source took (or was still taking): a value recorded as
        # "not applied" must not come into force when the agent restarts.
        in_effect = data.get("user_tuning_in_effect") or {}
        for key, name in (("bandwidth_mib", "user_bandwidth_mib"),
                          ("max_downtime_ms", "user_downtime_ms")):
            if in_effect.get(key) is not None:
                tuning[name] = in_effect[key]
        return tuning or None

    def _tune(self, m, info, data):
        """Apply the user's set-speed / set-downtime on the source (compute 2.2)
        and record it: in the timeline a ``tuning`` entry named ``user`` with the
        values and the outcome. Returns the source's answer when the job had
        ended, else None. Whatever the outcome, the request counts as handled
        (an agent that cannot take it will not take it next time either)."""
        wanted = moves.tuning_pending(m)
        source = m["source_compute"]
        values = {k: wanted[k] for k in ("bandwidth_mib", "max_downtime_ms")
                  if wanted.get(k) is not None}
        asked = time.monotonic()
        answer = None
        if not self.rpc.can_tune():
            outcome = ("not applied: [upgrade_levels] compute caps this conductor below "
                       "compute RPC 2.2; upgrade the compute agents and lift the pin")
        else:
            try:
                # Not self.call: the tuning entry below is this step's entry.
                answer = self._call(m, source, "live_migration_tune", self.ctxt(m),
                                    (m["id"], m["epoch"], values,
                                     dict(info, migrate_data=data["migrate_data"],
                                          tuning=self._tuning(data))), {})
                outcome = {"running": "ok", "ended": "not applied: the job had ended",
                           "not running": "not applied: the job was not running"}.get(
                    answer["state"], answer["state"])
                if answer["state"] == "running" and answer.get("applied") is False:
                    outcome = ("asked: the hypervisor had not taken it after 2 s (libvirt "
                               "takes a new speed once a block migration's disk copy "
                               "ended); the source goes on applying it")
            except (exception.HostUnreachable, exception.MigrationFenced, base.Stopping):
                raise
            except Exception as e:  # noqa: BLE001 - an agent's refusal, an old agent
                outcome = f"not applied: {exception.message_of(e)[:300]}"
                if isinstance(e, messaging.UnsupportedVersion) or \
                        getattr(e, "exc_type", None) == "UnsupportedVersion":
                    outcome = (f"not applied: the compute agent on {source} does not serve "
                               f"compute RPC 2.2 ({exception.message_of(e)[:200]}); upgrade "
                               "it")
        LOG.info("Migration %s: user tuning %s on %s: %s", m["id"], values, source, outcome)
        entry = timeline.step_entry("tuning", "user", source, asked, outcome=outcome,
                                    seq=wanted["seq"], **values)
        patch = {"user_tuning_applied": wanted["seq"]}
        if outcome == "ok" or outcome.startswith("asked"):
            patch["user_tuning_in_effect"] = dict(data.get("user_tuning_in_effect") or {},
                                                  **values)
        try:
            self.db.migration_merge_data(m["id"], states.RUNNING_MIGRATION, patch,
                                         timeline=[entry])
        except exception.ConcurrentUpdate:
            self.db.timeline_append(m["id"], [entry])    # the job ended meanwhile
        if answer is not None and answer["state"] == "ended":
            return answer
        return None

    def _stalled(self, m, stats):
        """No progress recorded for a whole progress_timeout, yet the job runs.

        Progress lost on its way (the broker or this conductor was away) is not
        a stall: the job's own figures are compared with what this conductor saw
        at the previous overrun. A job that moved gets another period; one that
        did not move in a whole period is aborted (and rolled back).
        """
        now = (stats.get("memory_processed") or 0) + (stats.get("disk_processed") or 0)
        seen = self.engine.job_marks.get(m["id"])
        self.engine.job_marks[m["id"]] = now
        if seen is None or now > seen:
            values = {k: int(stats[k]) for k in ("memory_total", "memory_processed",
                                                  "memory_remaining", "disk_total",
                                                  "disk_processed", "disk_remaining")
                      if stats.get(k) is not None}
            self.db.migration_update(m["id"], dict(values, deadline_at=self.deadline_in(
                self.conf.live_migration_progress_timeout)),
                expected_status=states.RUNNING_MIGRATION)
            return
        LOG.warning("Migration %s made no progress for %d s; aborting its job", m["id"],
                    self.conf.live_migration_progress_timeout)
        self.db.migration_request(m["id"], "abort", {states.RUNNING_MIGRATION})
        self.engine.kick(m["id"])

    def job_ended(self, m, outcome):
        if outcome["ok"]:
            return self.switched(m, outcome)
        if outcome.get("guest") == "source":
            if outcome.get("cancelled"):
                self.conductor.notify(self.ctxt(m), "instance.live_migration_abort.end",
                                      {"migration_id": m["id"], "phase": "running"})
                return self.roll_back(m, "abort", states.CANCELLED, outcome["reason"])
            return self.roll_back(m, "fail", states.FAILED, outcome["reason"])
        return self.resolve(m, outcome.get("reason") or "the job's end is unknown")

    def switched(self, m, outcome):
        data = self.data(m)
        if outcome.get("forced"):
            data["migrate_data"] = dict(data["migrate_data"], forced=outcome["forced"])
            self.conductor.notify(self.ctxt(m), "instance.live_migration_force_complete.end",
                                  {"migration_id": m["id"], "how": outcome["forced"]})
        dest = m["dest_compute"]
        return self.advance(
            m, "switched", data=data, values=outcome.get("stats") or None,
            instance_values={"host": dest, "node": m.get("dest_node") or dest,
                             "progress": 100, "power_state": states.RUNNING},
            instance_expected={"task_state": states.MIGRATING})

    def resolve(self, m, why):
        """Where is the guest? Ask both hosts; roll forward, back, wait (None) or
        give up until a missing host returns."""
        source, dest = m["source_compute"], m["dest_compute"]
        src, dst = self.inspect(m, source), self.inspect(m, dest)
        LOG.info("Migration %s: %s; source %s has %s, destination %s has %s", m["id"], why,
                 source, src, dest, dst)
        if dst is not None and dst["active"] and not (src and src["active"]):
            return self.switched(m, {"ok": True})
        if src is not None and src["active"] and not src.get("job_running") and \
                not (dst and dst["active"]):
            return self.roll_back(m, "fail", states.FAILED,
                                  f"{why}; the guest still runs on {source}")
        if src is not None and src.get("job_running"):
            return None   # the job goes on: its end will be reported
        if src is None and dst is not None and not dst["defined"]:
            # The destination never received the guest (a job that runs has a
            # domain waiting there, one that switched over runs it): it is on the
            # source, which is away. Roll back; the source's part waits for it.
            return self.roll_back(m, "fail", states.FAILED,
                                  f"{why}; the guest never reached {dest}")
        missing = [h for h, found in ((source, src), (dest, dst)) if found is None]
        if missing:
            if not self.overdue(m):
                return None
            return self.unresolved(m, missing, why)
        # Both answered and neither runs the guest (nor a job): it has stopped
        # somewhere, which needs a person.
        reason = (f"{why}; neither {source} ({src}) nor {dest} ({dst}) runs the guest")
        return self.roll_back(m, "fail", states.ERROR_MIGRATION, reason)

    # --- post-migrating ------------------------------------------------------------------------
    def post_migrating(self, m):
        data = self.data(m)
        source, dest = m["source_compute"], m["dest_compute"]
        info = self.info(m)
        md = data["migrate_data"]
        problems, dest_failed = [], False
        # The two post steps do not depend on each other (the guest runs on the
        # destination already): the source's is asked at the same time as the
        # destination's, one round trip instead of two (decision 33).
        at_source = None
        if not data.get("source_cleaned"):
            try:
                at_source = self.engine.side_pool.submit(self._post_at_source, m, source, md,
                                                         info)
            except RuntimeError:   # the side pool is shut down: this conductor stops
                raise base.Stopping() from None
        dest_error = None
        try:
            self.call(m, dest, "post_live_migration_at_destination", m["id"], m["epoch"],
                      md, info)
        except Exception as e:   # handled once the source's step is over too
            dest_error = e
        finally:
            source_result = at_source.result() if at_source is not None else None
        if source_result is _SOURCE_AWAY:
            self.defer(data, source, "post_live_migration_at_source")
        elif source_result is not None:
            problems.append(source_result)
        if isinstance(dest_error, exception.HostUnreachable):
            # What the move waits for is the destination (the source's thread
            # may have written its own name there last).
            self.engine.waiting_for[m["id"]] = dest
            if not self.overdue(m):
                return None
            return self.unresolved(m, [dest], f"the destination {dest} could not finish the "
                                              "migration")
        if isinstance(dest_error, (exception.MigrationFenced, base.Stopping)):
            raise dest_error
        if dest_error is not None:
            dest_failed = True
            problems.append(f"finishing the instance on {dest}: "
                            f"{exception.message_of(dest_error)}")
        values = self.deferred_values(data)
        if data.get("deferred"):
            values["error_message"] = (f"{source} was down; its clean-up runs when it "
                                       "reports again")
        if problems:
            reason = "; ".join(problems)
            instance_values = {"task_state": None}
            if dest_failed:
                instance_values.update(vm_state=states.ERROR, fault_message=reason[:4000])
            return self.advance(m, "fail", data=data,
                                values=dict(values, error_message=reason[:4000]),
                                instance_values=instance_values,
                                instance_expected={"task_state": states.MIGRATING})
        new = self.advance(m, "done", data=data, values=values,
                           instance_values={"task_state": None, "vm_state": states.ACTIVE},
                           instance_expected={"task_state": states.MIGRATING})
        LOG.info("Live migration %s of %s to %s completed", m["id"], m["instance_uuid"], dest)
        return new

    def _post_at_source(self, m, source, md, info):
        """The source's post step (in a side thread): None once done, _SOURCE_AWAY
        when the source is away (its clean-up waits for it), else the problem.
        A fence or a stop is raised, as from the handler's own thread."""
        try:
            self.call(m, source, "post_live_migration_at_source", m["id"], m["epoch"], md,
                      info)
        except exception.HostUnreachable:
            return _SOURCE_AWAY
        except (exception.MigrationFenced, base.Stopping):
            raise
        except Exception as e:   # GuestRunningHere too: its message says why
            return exception.message_of(e)
        return None

    # --- rolling back ---------------------------------------------------------------------------
    def roll_back(self, m, event, outcome, reason):
        """Leave the phase for rolling-back (abort or fail), saying how it will end."""
        LOG.warning("Rolling back live migration %s: %s", m["id"], reason)
        data = dict(self.data(m), rollback={"outcome": outcome, "reason": reason,
                                            "from": m["status"]})
        return self.advance(m, event, data=data, values={"error_message": reason[:4000]})

    def rolling_back(self, m):
        data = self.data(m)
        rb = data["rollback"]
        source, dest = m["source_compute"], m["dest_compute"]
        info = self.info(m)
        md = data.get("migrate_data") or {}
        problems = []
        if not data.get("dest_cleaned"):
            try:
                self.call(m, dest, "rollback_live_migration_at_destination", m["id"],
                          m["epoch"], md, not md.get("is_shared_instance_path"), info)
            except exception.HostUnreachable:
                self.defer(data, dest, "rollback_live_migration_at_destination")
            except exception.GuestRunningHere:
                # The guest ran on the destination after all (the job switched over
                # as it was being given up): finish it instead.
                return self.advance(m, "fail", values={
                    "error_message": f"{rb['reason']}; but the guest runs on {dest}: the "
                                     "migration could not be rolled back"},
                    instance_values={"task_state": None, "vm_state": states.ERROR,
                                     "host": dest, "node": dest, "fault_message":
                                     f"the guest runs on {dest} after a rollback was "
                                     "started; check both hosts"})
            except (exception.MigrationFenced, base.Stopping):
                raise
            except Exception as e:
                problems.append(f"cleaning {dest}: {exception.message_of(e)}")
        try:
            self.call(m, source, "rollback_live_migration_at_source", m["id"], m["epoch"], info)
        except exception.HostUnreachable:
            self.defer(data, source, "rollback_live_migration_at_source")
        except (exception.MigrationFenced, base.Stopping):
            raise
        except Exception as e:
            problems.append(f"restoring networking on {source}: {exception.message_of(e)}")
        reason = rb["reason"]
        if data.get("deferred"):
            reason += ("; " + ", ".join(sorted({d["host"] for d in data["deferred"]})) +
                       " was down: cleaned when it reports again")
        values = dict(self.deferred_values(data))
        if problems:
            values["error_message"] = (reason + "; rollback incomplete: " +
                                       "; ".join(problems))[:4000]
            event = "fail"
        else:
            values["error_message"] = reason[:4000]
            event = {states.CANCELLED: "cancelled", states.FAILED: "rolled_back"}.get(
                rb["outcome"], "fail")
        return self.advance(m, event, data=data, values=values,
                            instance_values={"task_state": None, "vm_state": states.ACTIVE,
                                             "host": source, "node": m["source_node"] or source},
                            instance_expected={"task_state": states.MIGRATING})

    # --- clean-up for a host that was down ------------------------------------------------------
    def run_deferred(self, m, step):
        data = self.data(m)
        info = self.info(m)
        md = data.get("migrate_data") or {}
        host = step["host"]
        if step["step"] == "post_live_migration_at_source":
            self.rpc.post_live_migration_at_source(self.ctxt(m), host, m["id"], m["epoch"], md,
                                                   info)
        elif step["step"] == "rollback_live_migration_at_destination":
            self.rpc.rollback_live_migration_at_destination(
                self.ctxt(m), host, m["id"], m["epoch"], md,
                not md.get("is_shared_instance_path"), info)
        elif step["step"] == "rollback_live_migration_at_source":
            self.rpc.rollback_live_migration_at_source(self.ctxt(m), host, m["id"],
                                                       m["epoch"], info)
