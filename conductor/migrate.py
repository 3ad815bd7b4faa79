"""Conductor side of cold migration and resize: check, schedule, hand over.

``MigrationTask.execute`` runs inside the API's call, so refusals reach the
user: everything that only reads the database is checked before anything
is written (instance state, source up, flavor, disk size, a requested
host). The scheduler always runs, even for a requested host (it must have
room), and keeps the other candidates as alternates on the migration row:
if prep_resize fails on the chosen host, :func:`reschedule` sends the move to
the next one. ``allow_resize_to_same_host`` lets the source itself be chosen.
Confirm and revert start in the API; :func:`auto_confirm` confirms resizes
left in VERIFY_RESIZE longer than ``resize_confirm_window``.
"""

import datetime
import json

from oslo_log import log as logging

from conductor import checks
from conductor import scheduler as scheduler_mod
from godwit import exception, states
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)


class MigrationTask:
    def __init__(self, conductor, ctxt, instance_uuid, flavor_id, requested_host):
        self.c = conductor
        self.db = conductor.db
        self.conf = conductor.conf
        self.ctxt = ctxt
        self.instance_uuid = instance_uuid
        self.flavor_id = flavor_id
        self.requested_host = requested_host

    def _check_instance(self, instance, action):
        if instance["vm_state"] not in (states.ACTIVE, states.STOPPED):
            raise exception.InstanceInvalidState(
                action=action, instance_id=instance["uuid"], attr="vm_state",
                state=instance["vm_state"],
                hint="Only ACTIVE or SHUTOFF servers can be migrated or resized.")
        if instance["task_state"] is not None:
            raise exception.InstanceBusy(instance_id=instance["uuid"],
                                         task_state=instance["task_state"])

    def _new_flavor(self, instance):
        current = self.db.flavor_get(instance["instance_type_id"])
        if self.flavor_id is None:
            return current
        try:
            flavor = self.db.flavor_get_by_flavorid(self.flavor_id)
        except exception.FlavorNotFound:
            raise exception.Invalid(reason=f"flavor {self.flavor_id} could not be found; "
                                           "'godwit flavor list' shows the flavors") from None
        if flavor["id"] == current["id"]:
            raise exception.Invalid(reason=f"the server already has flavor {flavor['name']}; "
                                           "resize to a different flavor")
        for what, old, new in (("root disk", instance["root_gb"], flavor["root_gb"]),
                               ("ephemeral disk", instance["ephemeral_gb"],
                                flavor["ephemeral_gb"])):
            if new < old:
                raise exception.Invalid(
                    reason=f"flavor {flavor['name']} has a {new} GiB {what}, smaller than "
                           f"the server's {old} GiB; disks cannot shrink, choose a flavor "
                           f"with at least {old} GiB")
        return flavor

    def execute(self):
        instance = self.db.instance_get(self.instance_uuid)
        resize = self.flavor_id is not None
        action = "resize" if resize else "migrate"
        self._check_instance(instance, action)
        source = instance["host"]
        checks.check_service_up(self.db, self.conf, source)
        flavor = self._new_flavor(instance)
        need = {"memory_mb": flavor["memory_mb"], "vcpus": flavor["vcpus"],
                "disk_gb": flavor["root_gb"] + flavor["ephemeral_gb"]}
        same_host = self.conf.allow_resize_to_same_host
        if self.requested_host:
            if self.requested_host == source and not same_host:
                raise exception.DestinationIsSource(host=source)
            svc = checks.check_service_up(self.db, self.conf, self.requested_host)
            if svc["disabled"]:
                raise exception.ComputeServiceDisabled(
                    host=self.requested_host, reason=f" ({svc['disabled_reason']})"
                    if svc.get("disabled_reason") else "")
        source_node = self.db.compute_node_get_by_host(source)
        candidates, refusals = self.c.scheduler.candidates(
            need, exclude=set() if same_host else {source},
            check=lambda node: self._same_hypervisor(source_node, node))
        if self.requested_host:
            if self.requested_host not in candidates:
                reason = refusals.get(self.requested_host, "it cannot take this server")
                raise exception.NoValidHost(reason=f"{self.requested_host}: {reason}")
            candidates = [self.requested_host]
        if not candidates:
            raise exception.NoValidHost(reason=scheduler_mod.explain(refusals))

        # Claim (compare-and-swap), action and migration row in one transaction.
        dest = candidates[0]
        _, _, migration = self.db.instance_claim_move(
            self.ctxt, self.instance_uuid, {"task_state": states.RESIZE_PREP},
            {"task_state": None, "vm_state": (states.ACTIVE, states.STOPPED)},
            states.ACTION_RESIZE if resize else states.ACTION_MIGRATE, {
            "instance_uuid": self.instance_uuid,
            "migration_type": states.RESIZE if resize else states.COLD_MIGRATION,
            "source_compute": source, "source_node": instance["node"],
            "dest_compute": dest, "dest_node": dest,
            "old_instance_type_id": instance["instance_type_id"],
            "new_instance_type_id": flavor["id"], "old_vm_state": instance["vm_state"],
            "alternates": json.dumps(candidates[1:]), "user_id": self.ctxt.user_id,
            "project_id": self.ctxt.project_id})
        self.c.compute_rpc.prep_resize(self.ctxt, dest, migration["id"])
        return migration

    @staticmethod
    def _same_hypervisor(source_node, node):
        if source_node and node["hypervisor_type"] != source_node["hypervisor_type"]:
            raise exception.MigrationPreCheckError(
                reason=f"{node['host']} runs {node['hypervisor_type']}, the source "
                       f"{source_node['hypervisor_type']}")


def reschedule(conductor, ctxt, migration_id, failed_host, reason):
    """prep_resize failed on ``failed_host``: try the next alternate, or give up."""
    db = conductor.db
    migration = db.migration_get(migration_id)
    alternates = json.loads(migration["alternates"] or "[]")
    refused = [f"{failed_host}: {reason}"]
    instance = db.instance_get(migration["instance_uuid"])
    flavor = db.flavor_get(migration["new_instance_type_id"])
    need = {"memory_mb": flavor["memory_mb"], "vcpus": flavor["vcpus"],
            "disk_gb": flavor["root_gb"] + flavor["ephemeral_gb"]}
    while alternates:
        host = alternates.pop(0)
        try:
            checks.check_service_up(db, conductor.conf, host)
            checks.check_capacity(db, conductor.conf, db.compute_node_get_by_host(host), need)
        except exception.GodwitException as e:
            refused.append(f"{host}: {e}")
            continue
        LOG.info("Migration %s: prep_resize failed on %s (%s); trying %s", migration_id,
                 failed_host, reason, host)
        db.migration_update(migration_id, {"dest_compute": host, "dest_node": host,
                                           "alternates": json.dumps(alternates)},
                            expected_status=states.ACCEPTED)
        conductor.compute_rpc.prep_resize(ctxt, host, migration_id)
        return
    db.migration_transition(
        migration_id, states.ACCEPTED, states.ERROR_MIGRATION,
        values={"error_message": "no host could take the server: " + "; ".join(refused)},
        instance_values={"task_state": None}, instance_expected={"task_state":
                                                                 states.RESIZE_PREP})
    LOG.warning("Migration %s of %s: no host left (%s)", migration_id, instance["uuid"],
                "; ".join(refused))


def start_confirm(db, compute_rpc, ctxt, migration):
    """finished -> confirming, then the source cleans up (API and auto-confirm)."""
    # The instance write changes nothing; it makes the transition also require
    # that the server is still RESIZED and idle, in the same transaction.
    migration = db.migration_transition(migration["id"], states.FINISHED, states.CONFIRMING,
                                        instance_expected={"vm_state": states.RESIZED,
                                                           "task_state": None},
                                        instance_values={"vm_state": states.RESIZED})
    compute_rpc.confirm_resize(ctxt, migration["source_compute"], migration["id"])
    return migration


def auto_confirm(conductor, ctxt):
    window = conductor.conf.resize_confirm_window
    if window <= 0:
        return
    cutoff = utcnow() - datetime.timedelta(seconds=window)
    for m in conductor.db.migration_list({"status": states.FINISHED}):
        if (m["updated_at"] or m["created_at"]) <= cutoff:
            LOG.info("Confirming migration %s: in VERIFY_RESIZE for over %d s", m["id"],
                     window)
            try:
                start_confirm(conductor.db, conductor.compute_rpc, ctxt, m)
            except exception.GodwitException as e:
                LOG.info("Auto-confirm of migration %s skipped: %s", m["id"], e)
