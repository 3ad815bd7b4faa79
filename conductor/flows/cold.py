"""Cold migration and resize, driven by the conductor that owns the move
(phases: godwit.phases.COLD).

The request (:mod:`conductor.migrate`) checks, claims the instance and
schedules, leaving the move in ``accepted`` with the chosen destination and
its alternates. From there every step is a call to one host::

    accepted        destination: prep_resize (refused: the next alternate)
    pre-migrating   (the conductor moves on to the copy)
    migrating       source: resize_instance, power off and copy -> post-migrating,
                    instances.host is the destination
    post-migrating  destination: finish_resize                 -> finished (VERIFY_RESIZE)
    finished        the user (or resize_confirm_window) decides
    confirming      source: confirm_resize                      -> confirmed
    reverting       destination: revert_resize, source: finish_revert_resize -> reverted
    rolling-back    after a failed copy, source: rollback_resize_at_source; after
                    a failed finish, destination: revert_resize and source:
                    finish_revert_resize                        -> failed

What one step hands the next (disk_info) is stored with the migration, so a
conductor that takes the move over goes on from it. A host that cannot be
asked is waited for until the phase's deadline; then, where the guest's
whereabouts depend on it, the move ends in ``error`` and resumes when the host
returns.
"""

import json

from oslo_log import log as logging

from conductor import checks
from conductor.flows import base
from godwit import exception, states
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)


def flavor_values(flavor):
    return {"instance_type_id": flavor["id"], "memory_mb": flavor["memory_mb"],
            "vcpus": flavor["vcpus"], "root_gb": flavor["root_gb"],
            "ephemeral_gb": flavor["ephemeral_gb"]}


class ColdFlow(base.Flow):

    def context(self, m):
        # A deleted instance too: a server deleted in VERIFY_RESIZE has its resize
        # confirmed (and a deferred confirm_resize run) after the delete was asked
        # (api: _delete_resized). Every other step of a cold move runs while the
        # server has a task, which a delete must wait for; confirm_resize only
        # removes what the source kept.
        return self.db.migration_context(m["id"], with_nodes_and_flavors=True,
                                         read_deleted=True)

    def _ends_on_source(self, m, context, power_state=None):
        """The instance as it is when the move ends with the guest on its source."""
        values = dict(flavor_values(context["old_flavor"]), host=m["source_compute"],
                      node=m["source_node"] or m["source_compute"], task_state=None,
                      vm_state=m["old_vm_state"] or states.ACTIVE)
        if power_state is not None:
            values["power_state"] = power_state
        return values

    # --- accepted: prep_resize on the destination -------------------------------------------
    def accepted(self, m):
        dest = m["dest_compute"]
        try:
            self.call(m, dest, "prep_resize", m["id"], m["epoch"], self.context(m))
        except exception.HostUnreachable as e:
            return self.reschedule(m, f"{dest}: {e}")
        except (exception.MigrationFenced, base.Stopping):
            raise
        except Exception as e:
            return self.reschedule(m, f"{dest}: {exception.message_of(e)}")
        return self.advance(m, "prepped")

    def reschedule(self, m, refusal):
        """The destination could not take the server: try the next alternate."""
        alternates = json.loads(m["alternates"] or "[]")
        data = self.data(m)
        refused = data.setdefault("refused", [])
        refused.append(refusal)
        flavor = self.db.flavor_get(m["new_instance_type_id"])
        need = {"memory_mb": flavor["memory_mb"], "vcpus": flavor["vcpus"],
                "disk_gb": flavor["root_gb"] + flavor["ephemeral_gb"]}
        while alternates:
            host = alternates.pop(0)
            try:
                checks.check_service_up(self.db, self.conf, host)
                # Its room claimed as it becomes the destination (one transaction).
                self.db.claim_move(m, host, need, self.conf)
            except exception.GodwitException as e:
                refused.append(f"{host}: {e}")
                continue
            LOG.info("Migration %s: %s; trying %s", m["id"], refusal, host)
            return self.save(m, data, alternates=json.dumps(alternates))
        reason = "no host could take the server: " + "; ".join(refused)
        LOG.warning("Migration %s of %s: %s", m["id"], m["instance_uuid"], reason)
        return self.advance(m, "refused", data=data, values={"error_message": reason[:4000]},
                            instance_values={"task_state": None},
                            instance_expected={"task_state": states.RESIZE_PREP})

    # --- pre-migrating ------------------------------------------------------------------------
    def pre_migrating(self, m):
        return self.advance(m, "copy", instance_values={"task_state": states.RESIZE_MIGRATING})

    # --- migrating: the copy -------------------------------------------------------------------
    def migrating(self, m):
        source = m["source_compute"]
        try:
            disk_info = self.call(m, source, "resize_instance", m["id"], m["epoch"],
                                  self.context(m))
        except exception.HostUnreachable:
            if not self.overdue(m):
                return None
            return self.unresolved(m, [source], f"the source {source} stopped answering "
                                                "while it copied the disks")
        except (exception.MigrationFenced, base.Stopping):
            raise
        except Exception as e:
            return self.roll_back(m, f"resize_instance on {source} failed: "
                                     f"{exception.message_of(e)}")
        data = dict(self.data(m), disk_info=disk_info)
        return self.advance(m, "copied", data=data, instance_values={
            "host": m["dest_compute"], "node": m["dest_node"],
            "task_state": states.RESIZE_MIGRATED, "power_state": states.SHUTDOWN})

    # --- post-migrating: the destination builds the guest ---------------------------------------
    def post_migrating(self, m):
        dest = m["dest_compute"]
        context = self.context(m)
        try:
            power = self.call(m, dest, "finish_resize", m["id"], m["epoch"], context,
                              self.data(m)["disk_info"])
        except exception.HostUnreachable:
            if not self.overdue(m):
                return None
            return self.unresolved(m, [dest], f"the destination {dest} stopped answering "
                                              "while it built the guest")
        except (exception.MigrationFenced, base.Stopping):
            raise
        except Exception as e:
            return self.roll_back(m, f"finish_resize on {dest} failed: "
                                     f"{exception.message_of(e)}")
        values = dict(flavor_values(context["new_flavor"]), vm_state=states.RESIZED,
                      task_state=None, power_state=power)
        return self.advance(m, "finished", instance_values=values)

    # --- finished: waiting for the user ---------------------------------------------------------
    def finished(self, m):
        window = self.conf.resize_confirm_window
        if window <= 0:
            return None
        since = m["updated_at"] or m["created_at"]
        if (utcnow() - since).total_seconds() < window:
            return None
        LOG.info("Confirming migration %s: in VERIFY_RESIZE for over %d s", m["id"], window)
        try:
            return self.advance(m, "confirm",
                                instance_expected={"vm_state": states.RESIZED,
                                                   "task_state": None},
                                instance_values={"vm_state": states.RESIZED})
        except exception.ConcurrentUpdate as e:
            LOG.info("Auto-confirm of migration %s skipped: %s", m["id"], e)
            return None

    # --- confirming ------------------------------------------------------------------------------
    def confirming(self, m):
        source = m["source_compute"]
        data = self.data(m)
        context = self.context(m)
        # Deleted in VERIFY_RESIZE (api: _delete_resized): the server is left to
        # its delete, carried out here once the source is clean.
        deleting = context["instance"]["task_state"] == states.DELETING
        vm_values = None if deleting else {"vm_state": m["old_vm_state"] or states.ACTIVE,
                                           "task_state": None}
        try:
            self.call(m, source, "confirm_resize", m["id"], m["epoch"], context)
        except exception.HostUnreachable:
            # The guest runs on the destination: the source is cleaned when it returns.
            self.defer(data, source, "confirm_resize")
        except (exception.MigrationFenced, base.Stopping):
            raise
        except Exception as e:
            row = self.advance(m, "fail", values={"error_message":
                                                  exception.message_of(e)[:4000]},
                               instance_values=vm_values)
            return self._delete_if_asked(row, deleting)
        values = self.deferred_values(data)
        if data.get("deferred"):
            values["error_message"] = f"{source} was down; its copy is removed when it returns"
        row = self.advance(m, "confirmed", data=data, values=values, instance_values=vm_values)
        return self._delete_if_asked(row, deleting)

    def _delete_if_asked(self, m, deleting):
        """The move that a delete confirmed has ended: delete the server now, in
        the name of whoever asked. A conductor that dies before this leaves the
        server 'deleting', which the power sweep carries out."""
        if deleting:
            self.engine.conductor.delete_instance(self.ctxt(m, "delete_context"),
                                                  m["instance_uuid"])
        return m

    # --- reverting ------------------------------------------------------------------------
    def reverting(self, m):
        r = self._back_to_source(m, "revert")
        if r is None or r.get("row") is not None:
            return None if r is None else r["row"]
        if r["problems"]:
            return self.advance(m, "fail", values={"error_message": r["reason"][:4000]},
                                instance_values=r["instance"])
        return self.advance(m, "reverted", instance_values=r["instance"])

    def _back_to_source(self, m, why):
        """Tear the destination down, then bring the guest back on the source.

        Returns None to wait, {"row": row} if the move ended otherwise, or
        {"problems": [...], "reason": str, "instance": values}.
        """
        source, dest = m["source_compute"], m["dest_compute"]
        context = self.context(m)
        data = self.data(m)
        problems = []
        if not data.get("dest_torn_down"):
            try:
                self.call(m, dest, "revert_resize", m["id"], m["epoch"], context)
            except exception.HostUnreachable:
                # The destination's copy may still run: never start the source's
                # copy before it is known to be down.
                if not self.overdue(m):
                    return None
                return {"row": self.unresolved(
                    m, [dest], f"the destination {dest} could not be stopped for the {why}")}
            except (exception.MigrationFenced, base.Stopping):
                raise
            except Exception as e:
                problems.append(f"tearing down {dest}: {exception.message_of(e)}")
        try:
            power = self.call(m, source, "finish_revert_resize", m["id"], m["epoch"], context)
        except exception.HostUnreachable:
            if not self.overdue(m):
                return None
            return {"row": self.unresolved(m, [source], f"the source {source} could not "
                                                        f"take the guest back ({why})")}
        except (exception.MigrationFenced, base.Stopping):
            raise
        except Exception as e:
            reason = "; ".join(problems + [f"restoring on {source}: {exception.message_of(e)}"])
            return {"problems": [reason], "reason": reason,
                    "instance": dict(self._ends_on_source(m, context), vm_state=states.ERROR,
                                     fault_message=reason[:4000])}
        return {"problems": problems, "reason": "; ".join(problems),
                "instance": self._ends_on_source(m, context, power)}

    # --- rolling back after a failed copy or finish -----------------------------------------
    def roll_back(self, m, reason):
        LOG.warning("Rolling back migration %s: %s", m["id"], reason)
        data = dict(self.data(m), rollback={"reason": reason, "from": m["status"]})
        return self.advance(m, "fail", data=data, values={"error_message": reason[:4000]})

    def rolling_back(self, m):
        data = self.data(m)
        rb = data["rollback"]
        reason = rb["reason"]
        if rb["from"] == states.MIGRATING_COLD:
            source = m["source_compute"]
            context = self.context(m)
            try:
                power = self.call(m, source, "rollback_resize_at_source", m["id"], m["epoch"],
                                  context)
            except exception.HostUnreachable:
                if not self.overdue(m):
                    return None
                return self.unresolved(m, [source], f"{reason}; the source {source} could "
                                                    "not restore the guest")
            except (exception.MigrationFenced, base.Stopping):
                raise
            except Exception as e:
                reason += f"; undo incomplete: {exception.message_of(e)}"
                return self.advance(m, "fail", values={"error_message": reason[:4000]},
                                    instance_values=dict(self._ends_on_source(m, context),
                                                         vm_state=states.ERROR,
                                                         fault_message=reason[:4000]))
            return self.advance(m, "rolled_back", values={"error_message": reason[:4000]},
                                instance_values=self._ends_on_source(m, context, power))
        r = self._back_to_source(m, "rollback")
        if r is None or r.get("row") is not None:
            return None if r is None else r["row"]
        if r["problems"]:
            reason += "; " + r["reason"]
            return self.advance(m, "fail", values={"error_message": reason[:4000]},
                                instance_values=r["instance"])
        return self.advance(m, "rolled_back", values={"error_message": reason[:4000]},
                            instance_values=r["instance"])

    # --- clean-up for a host that was down ------------------------------------------------------
    def run_deferred(self, m, step):
        if step["step"] == "confirm_resize":
            self.rpc.confirm_resize(self.ctxt(m), step["host"], m["id"], m["epoch"],
                                    self.context(m))
