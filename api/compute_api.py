"""What the REST handlers ask of the control plane.

The API reads the database directly (it is control plane, like the
conductor) and hands work to the conductor over RPC. Checks that only read
run here or in the conductor before anything is written, so refused
requests change nothing.
"""

import random

import oslo_messaging as messaging
from oslo_log import log as logging

from api import policy as policy_mod
from conductor import migrate as cold_migrate
from godwit import exception, states

LOG = logging.getLogger(__name__)


def _mac():
    return "fa:16:3e:%02x:%02x:%02x" % tuple(random.randint(0, 255) for _ in range(3))


class ComputeAPI:
    def __init__(self, conf, db, conductor_api, compute_rpc):
        self.conf = conf
        self.db = db
        self.conductor = conductor_api
        self.compute_rpc = compute_rpc
        self.policy = policy_mod.Policy(conf)

    def authorize(self, ctxt, action, target=None):
        self.policy.authorize(ctxt, action, target)

    # --- servers ----------------------------------------------------------
    def get_server(self, ctxt, server_id):
        instance = self.db.instance_get(server_id)
        if not ctxt.is_admin and instance["project_id"] != ctxt.project_id:
            raise exception.InstanceNotFound(instance_id=server_id)
        return instance

    def list_servers(self, ctxt, filters, limit=None, marker=None, all_projects=False):
        filters = dict(filters)
        if all_projects:
            self.authorize(ctxt, "os_compute_api:servers:index:get_all_tenants")
        else:
            filters["project_id"] = ctxt.project_id
        return self.db.instance_list(filters, limit=limit, marker=marker)

    def create_server(self, ctxt, name, flavor_ref, availability_zone=None,
                      block_devices=(), config_drive=False, image_ref=""):
        self.authorize(ctxt, "os_compute_api:servers:create")
        try:
            flavor = self.db.flavor_get_by_flavorid(str(flavor_ref).rstrip("/").split("/")[-1])
        except exception.FlavorNotFound:
            raise exception.Invalid(reason=f"Flavor {flavor_ref} could not be found; "
                                           "'godwit flavor list' shows the flavors.") from None
        block_devices = [self._bdm_from_request(b) for b in block_devices]
        forced_host = None
        if availability_zone and ":" in availability_zone:
            self.authorize(ctxt, "os_compute_api:servers:create:forced_host")
            forced_host = availability_zone.split(":", 1)[1].split(":")[0] or None
            if forced_host and self.db.service_get_by_host(forced_host) is None:
                raise exception.ComputeHostNotFound(host=forced_host)
        instance = self.db.instance_create({
            "display_name": name, "user_id": ctxt.user_id, "project_id": ctxt.project_id,
            "availability_zone": "nova", "instance_type_id": flavor["id"],
            "memory_mb": flavor["memory_mb"], "vcpus": flavor["vcpus"],
            "root_gb": flavor["root_gb"], "ephemeral_gb": flavor["ephemeral_gb"],
            "image_ref": image_ref or "", "vm_state": states.BUILDING,
            "task_state": states.SCHEDULING,
            "power_state": states.NOSTATE, "config_drive": bool(config_drive)})
        for bdm in block_devices:
            self.db.bdm_create(dict(bdm, instance_uuid=instance["uuid"]))
        self.db.vif_create({"instance_uuid": instance["uuid"], "address": _mac(),
                            "network_id": "public", "vif_type": "fake"})
        self.db.action_start(ctxt, instance["uuid"], states.ACTION_CREATE)
        self.conductor.build_instance(ctxt, instance["uuid"], forced_host)
        return instance

    @staticmethod
    def _bdm_from_request(b):
        """A block_device_mapping_v2 entry; only volumes and CD-ROMs are modelled."""
        if b.get("source_type") != "volume" or b.get("destination_type", "volume") != "volume":
            raise exception.Invalid(
                reason="block_device_mapping_v2 entries must have source_type 'volume' and "
                       "destination_type 'volume' (images and blank disks are not supported)")
        if not b.get("uuid"):
            raise exception.Invalid(reason="a volume block device needs the volume's uuid")
        return {"source_type": "volume", "destination_type": "volume",
                "volume_id": b["uuid"], "device_type": b.get("device_type", "disk"),
                "device_name": b.get("device_name"), "boot_index": b.get("boot_index"),
                "volume_size": b.get("volume_size"),
                "delete_on_termination": bool(b.get("delete_on_termination", False))}

    def delete_server(self, ctxt, server_id):
        instance = self.get_server(ctxt, server_id)
        self.authorize(ctxt, "os_compute_api:servers:delete", instance)
        expected = {"task_state": None}
        if instance["vm_state"] == states.ERROR and instance["task_state"] != states.MIGRATING:
            expected = {"task_state": instance["task_state"]}
        try:
            self.db.instance_update(server_id, {"task_state": states.DELETING}, expected)
        except exception.ConcurrentUpdate:
            raise exception.InstanceBusy(instance_id=server_id,
                                         task_state=instance["task_state"]) from None
        self.db.action_start(ctxt, server_id, states.ACTION_DELETE)
        self.conductor.delete_instance(ctxt, server_id)

    # --- live migration ---------------------------------------------------------
    def live_migrate(self, ctxt, server_id, host, block_migration):
        self.authorize(ctxt, "os_compute_api:os-migrate-server:migrate_live")
        self.get_server(ctxt, server_id)
        try:
            return self.conductor.live_migrate_instance(ctxt, server_id, host, block_migration)
        except messaging.MessagingTimeout:
            raise exception.ServiceUnavailable(
                reason="The conductor did not answer in time; check that godwit-conductor "
                       "is running. The migration may still start: see 'godwit migration "
                       f"list --instance {server_id}'.") from None

    # --- cold migration, resize, confirm, revert -------------------------------
    def _call_conductor(self, fn, *args):
        try:
            return fn(*args)
        except messaging.MessagingTimeout:
            raise exception.ServiceUnavailable(
                reason="The conductor did not answer in time; check that godwit-conductor "
                       "is running.") from None

    def migrate(self, ctxt, server_id, host=None):
        self.authorize(ctxt, "os_compute_api:os-migrate-server:migrate")
        self.get_server(ctxt, server_id)
        return self._call_conductor(self.conductor.migrate_server, ctxt, server_id, None,
                                    host)

    def resize(self, ctxt, server_id, flavor_ref):
        instance = self.get_server(ctxt, server_id)
        self.authorize(ctxt, "os_compute_api:servers:resize", instance)
        flavor_id = str(flavor_ref).rstrip("/").split("/")[-1]
        return self._call_conductor(self.conductor.migrate_server, ctxt, server_id,
                                    flavor_id, None)

    def _resized(self, ctxt, server_id, action):
        instance = self.get_server(ctxt, server_id)
        self.authorize(ctxt, f"os_compute_api:servers:{action}", instance)
        if instance["vm_state"] != states.RESIZED or instance["task_state"] is not None:
            raise exception.InstanceInvalidState(
                action=action, instance_id=server_id, attr="vm_state",
                state=instance["vm_state"] if instance["task_state"] is None
                else f"{instance['vm_state']} (task {instance['task_state']})",
                hint="Only a server in VERIFY_RESIZE can be confirmed or reverted.")
        found = self.db.migration_list({"instance_uuid": server_id,
                                        "status": states.FINISHED}, limit=1)
        if not found:
            raise exception.InstanceInvalidState(
                action=action, instance_id=server_id, attr="migration", state="none",
                hint="No finished migration waits for a decision.")
        return found[0]

    def confirm_resize(self, ctxt, server_id):
        migration = self._resized(ctxt, server_id, "confirm_resize")
        self.db.action_start(ctxt, server_id, "confirmResize")
        try:
            cold_migrate.start_confirm(self.db, self.compute_rpc, ctxt, migration)
        except exception.ConcurrentUpdate:
            raise exception.InstanceBusy(instance_id=server_id,
                                         task_state="confirming") from None

    def revert_resize(self, ctxt, server_id):
        migration = self._resized(ctxt, server_id, "revert_resize")
        self.db.action_start(ctxt, server_id, "revertResize")
        try:
            migration = self.db.migration_transition(
                migration["id"], states.FINISHED, states.REVERTING,
                instance_values={"task_state": states.RESIZE_REVERTING},
                instance_expected={"vm_state": states.RESIZED, "task_state": None})
        except exception.ConcurrentUpdate:
            raise exception.InstanceBusy(instance_id=server_id,
                                         task_state="reverting") from None
        self.compute_rpc.revert_resize(ctxt, migration["dest_compute"], migration["id"])

    # --- power ------------------------------------------------------------------
    def _power(self, ctxt, server_id, action, from_vm_state, task_state, cast):
        instance = self.get_server(ctxt, server_id)
        self.authorize(ctxt, f"os_compute_api:servers:{action}", instance)
        try:
            self.db.instance_update(server_id, {"task_state": task_state},
                                    expected={"vm_state": from_vm_state, "task_state": None})
        except exception.ConcurrentUpdate:
            raise exception.InstanceInvalidState(
                action=action, instance_id=server_id, attr="vm_state/task_state",
                state=f"{instance['vm_state']}/{instance['task_state']}",
                hint=f"It must be {from_vm_state} and idle.") from None
        self.db.action_start(ctxt, server_id, action)
        cast(ctxt, instance["host"], server_id)

    def stop(self, ctxt, server_id):
        self._power(ctxt, server_id, "stop", states.ACTIVE, states.POWERING_OFF,
                    self.compute_rpc.stop_instance)

    def start(self, ctxt, server_id):
        self._power(ctxt, server_id, "start", states.STOPPED, states.POWERING_ON,
                    self.compute_rpc.start_instance)

    # --- migrations -------------------------------------------------------------
    def list_migrations(self, ctxt, filters, limit=None, marker=None):
        self.authorize(ctxt, "os_compute_api:os-migrations:index")
        return self.db.migration_list(filters, limit=limit, marker=marker)

    def server_migrations(self, ctxt, server_id):
        self.authorize(ctxt, "os_compute_api:servers:migrations:index")
        self.get_server(ctxt, server_id)
        in_progress = [st for st in states.MIGRATION_IN_PROGRESS]
        return self.db.migration_list({"instance_uuid": server_id,
                                       "migration_type": states.LIVE_MIGRATION,
                                       "status": in_progress})

    def server_migration(self, ctxt, server_id, migration_id):
        self.authorize(ctxt, "os_compute_api:servers:migrations:show")
        self.get_server(ctxt, server_id)
        migration = self.db.migration_get(int(migration_id)) if str(migration_id).isdigit() \
            else self.db.migration_get_by_uuid(migration_id)
        if migration["instance_uuid"] != server_id:
            raise exception.MigrationNotFoundForInstance(migration_id=migration_id,
                                                         instance_id=server_id)
        return migration

    def _live_migration_in(self, ctxt, server_id, migration_id, action, allowed):
        m = self.server_migration(ctxt, server_id, migration_id)
        if m["migration_type"] != states.LIVE_MIGRATION or m["status"] not in allowed:
            raise exception.InvalidMigrationState(
                migration_id=migration_id, instance_id=server_id, status=m["status"],
                action=action, allowed=" or ".join(sorted(allowed)) + " live migration")
        return m

    def abort_live_migration(self, ctxt, server_id, migration_id, allow_early):
        """Abort; queued and preparing migrations only when ``allow_early`` (2.65+)."""
        self.authorize(ctxt, "os_compute_api:servers:migrations:delete")
        allowed = {states.RUNNING_MIGRATION}
        if allow_early:
            allowed |= {states.QUEUED, states.PREPARING}
        m = self._live_migration_in(ctxt, server_id, migration_id, "abort", allowed)
        self.db.action_start(ctxt, server_id, "live_migration_abort")
        self.compute_rpc.live_migration_abort(ctxt, m["source_compute"], m["id"])

    def force_complete(self, ctxt, server_id, migration_id):
        self.authorize(ctxt, "os_compute_api:servers:migrations:force_complete")
        m = self._live_migration_in(ctxt, server_id, migration_id, "force_complete",
                                    {states.RUNNING_MIGRATION})
        self.db.action_start(ctxt, server_id, "live_migration_force_complete")
        self.compute_rpc.live_migration_force_complete(ctxt, m["source_compute"], m["id"])

    # --- actions ---------------------------------------------------------------
    def list_actions(self, ctxt, server_id):
        instance = self.db.instance_get(server_id, read_deleted=True)
        self.authorize(ctxt, "os_compute_api:os-instance-actions:list", instance)
        return self.db.action_list(server_id)

    def get_action(self, ctxt, server_id, request_id):
        instance = self.db.instance_get(server_id, read_deleted=True)
        self.authorize(ctxt, "os_compute_api:os-instance-actions:show", instance)
        action = self.db.action_get_by_request_id(server_id, request_id)
        if action is None:
            raise exception.NotFound(f"Action {request_id} not found for server {server_id}.")
        events = self.db.event_list(action["id"])
        if not self.policy.check(ctxt, "os_compute_api:os-instance-actions:events:details"):
            for e in events:
                e.pop("traceback", None)
                e.pop("host", None)
        return action, events

    # --- flavors, services, hypervisors ---------------------------------------
    def list_flavors(self, ctxt):
        return self.db.flavor_list()

    def get_flavor(self, ctxt, flavor_id):
        return self.db.flavor_get_by_flavorid(flavor_id)

    def list_services(self, ctxt, host=None, binary=None):
        self.authorize(ctxt, "os_compute_api:os-services:list")
        return self.db.service_list(binary=binary, host=host)

    def update_service(self, ctxt, service_id, values):
        self.authorize(ctxt, "os_compute_api:os-services:update")
        return self.db.service_update(service_id, values)

    def list_hypervisors(self, ctxt):
        self.authorize(ctxt, "os_compute_api:os-hypervisors:list")
        out = []
        services = {s["host"]: s for s in self.db.service_list(binary=states.SERVICE_COMPUTE)}
        for node in self.db.compute_node_list():
            usage = self.db.host_usage(node["host"])
            out.append((node, services.get(node["host"]), usage))
        return out
