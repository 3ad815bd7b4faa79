"""The request for a cold migration or resize: check, schedule, hand over.

``MigrationTask.execute`` runs inside the API's call, so refusals reach the
user: everything that only reads the database is checked before anything
is written (instance state, source up, flavor, disk size, a requested
host). The scheduler always runs, even for a requested host (it must have
room), and keeps the other candidates as alternates on the migration row:
if prep_resize fails on the chosen host, the flow tries the next one.
``allow_resize_to_same_host`` lets the source itself be chosen. The
migration row is created owned by this conductor, and the engine drives it
from there (:mod:`conductor.flows.cold`); confirm and revert are recorded by
the API and carried out by the owner, as is auto-confirm after
``resize_confirm_window``.
"""

import json

from oslo_log import log as logging

from conductor import checks, live_migrate
from conductor import scheduler as scheduler_mod
from godwit import exception, states

LOG = logging.getLogger(__name__)


class MigrationTask:
    def __init__(self, conductor, ctxt, instance_uuid, flavor_id, requested_host):
        self.conductor = conductor
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
        candidates, refusals = self.conductor.scheduler.candidates(
            need, exclude=set() if same_host else {source},
            check=lambda node: self._same_hypervisor(source_node, node))
        if self.requested_host:
            if self.requested_host not in candidates:
                reason = refusals.get(self.requested_host, "it cannot take this server")
                raise exception.NoValidHost(reason=f"{self.requested_host}: {reason}")
            candidates = [self.requested_host]
        if not candidates:
            raise exception.NoValidHost(reason=scheduler_mod.explain(refusals))

        # Claim (compare-and-swap), action, migration row and the destination's
        # room in one transaction; a candidate whose room went meanwhile gives
        # way to the next.
        # The new row is this conductor's before it is adopted: the sweep leaves it.
        with self.conductor.engine.claiming(self.instance_uuid):
            for i, dest in enumerate(candidates):
                try:
                    _, _, migration = self.db.instance_claim_move(
                        self.ctxt, self.instance_uuid, {"task_state": states.RESIZE_PREP},
                        {"task_state": None, "vm_state": (states.ACTIVE, states.STOPPED)},
                        states.ACTION_RESIZE if resize else states.ACTION_MIGRATE, {
                            "instance_uuid": self.instance_uuid,
                            "migration_type": states.RESIZE if resize else states.COLD_MIGRATION,
                            "source_compute": source, "source_node": instance["node"],
                            "dest_compute": dest, "dest_node": dest,
                            "old_instance_type_id": instance["instance_type_id"],
                            "new_instance_type_id": flavor["id"],
                            "old_vm_state": instance["vm_state"],
                            "alternates": json.dumps(candidates[i + 1:]),
                            "user_id": self.ctxt.user_id, "project_id": self.ctxt.project_id,
                            **live_migrate.move_owner(self.conductor),
                            "step_data": json.dumps({"context": self.ctxt.to_saved_dict()})},
                        room=(need, self.conf))
                    break
                except exception.HostCapacityExceeded as e:
                    refusals[dest] = str(e)
            else:
                raise exception.NoValidHost(reason=scheduler_mod.explain(refusals))
            self.conductor.engine.adopt(migration)
        self.conductor.engine.faults.check("advance.accepted", self.instance_uuid)
        self.conductor.engine.kick(migration["id"])
        return migration

    @staticmethod
    def _same_hypervisor(source_node, node):
        if source_node and node["hypervisor_type"] != source_node["hypervisor_type"]:
            raise exception.MigrationPreCheckError(
                reason=f"{node['host']} runs {node['hypervisor_type']}, the source "
                       f"{source_node['hypervisor_type']}")
