"""What the REST handlers ask of the control plane.

The API reads the database directly (it is control plane, like the
conductor) and hands work to the conductor over RPC; it never talks to a
compute host. Checks that only read run here or in the conductor before
anything is written, so refused requests change nothing. A user's intent
on a move (abort, force-complete, confirm, revert) or a server (stop,
start, reboot) is written to the database first and a conductor is then
woken: the answer 202 means it is recorded and will be carried out, even if
the wake-up message is lost (docs/crash-safety.md).
"""

import os
import random

import oslo_messaging as messaging
from oslo_log import log as logging

from api import policy as policy_mod
from api import regex as regex_mod
from api import schemas
from compute import fault_injection
from compute import rpcapi as compute_rpcapi
from godwit import exception, phases, states, upgrade
from godwit.db import moves as moves_mod
from godwit.db import timeline

LOG = logging.getLogger(__name__)

# The compute RPC version that added live_migration_tune (set-speed, set-downtime).
TUNE_VERSION = compute_rpcapi.ADDED_IN["live_migration_tune"]


def _mac():
    return "fa:16:3e:%02x:%02x:%02x" % tuple(random.randint(0, 255) for _ in range(3))


class ComputeAPI:
    def __init__(self, conf, db, conductor_api):
        self.conf = conf
        self.db = db
        self.conductor = conductor_api
        self.policy = policy_mod.Policy(conf)
        self._compute_cap = None
        # Faults the crash-safety tests arm in the API ([api] faults).
        self.faults = fault_injection.for_host(
            "api", os.path.join(conf.state_path, "api-faults"), conf.api.faults)

    def compute_cap(self):
        """What this cloud may send to compute agents ([upgrade_levels] compute,
        ``auto`` read from the services table as the conductors read it)."""
        if self._compute_cap is None:
            self._compute_cap = upgrade.cap(self.conf, compute_rpcapi.INTERFACE, self.db)
        return self._compute_cap

    def authorize(self, ctxt, action, target=None):
        self.policy.authorize(ctxt, action, target)

    # --- servers ----------------------------------------------------------
    def get_server(self, ctxt, server_id):
        instance = self.db.instance_get(server_id)
        if not ctxt.is_admin and instance["project_id"] != ctxt.project_id:
            raise exception.InstanceNotFound(instance_id=server_id)
        return instance

    def list_servers(self, ctxt, filters, limit=None, marker=None, all_projects=False,
                     detail=False, sort=None, regex=None, changes_before=None,
                     predicate=None):
        """Servers matching ``filters`` (column -> value or tuple of values) and
        ``regex`` (column -> pattern, matched anywhere as Nova's REGEXP does),
        newest first unless ``sort`` [(column, "asc"|"desc")] says otherwise."""
        kind = "detail" if detail else "index"
        self.authorize(ctxt, f"os_compute_api:servers:{kind}")
        filters = dict(filters)
        if all_projects:
            self.authorize(ctxt, f"os_compute_api:servers:{kind}:get_all_tenants")
        else:
            filters["project_id"] = ctxt.project_id
        deleted = filters.pop("deleted", None)
        changes_since = filters.pop("changes_since", None)
        # The filters the database cannot apply (regex, predicate) and the
        # marker come after it, so only without them is the limit its own.
        rows = self.db.instance_query(
            filters, sort=sort, changes_since=changes_since, changes_before=changes_before,
            deleted=deleted,
            limit=limit if not regex and predicate is None and not marker else None)
        if regex:
            # RE2: linear in each value, so no pattern can hold the API
            # (api/regex.py). The query schema already refused what it cannot run.
            try:
                compiled = {k: regex_mod.compile_filter(v) for k, v in regex.items()}
            except regex_mod.InvalidPattern as e:
                raise exception.Invalid(f"Invalid regular expression filter: {e}") from None
            rows = [r for r in rows
                    if all(regex_mod.search(p, r[k]) for k, p in compiled.items())]
        if predicate is not None:
            rows = [r for r in rows if predicate(r)]
        if marker:
            ids = [r["uuid"] for r in rows]
            if marker not in ids:
                if not self.db.instance_exists(marker):
                    raise exception.Invalid(f"marker [{marker}] not found")
                rows = []
            else:
                rows = rows[ids.index(marker) + 1:]
        if limit is not None:
            rows = rows[:limit]
        return rows

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
        # The request schema (schemas.BLOCK_DEVICE_MAPPING_V2) has checked
        # every entry's types and bounds before this runs.
        if b.get("source_type") != "volume" or b.get("destination_type", "volume") != "volume":
            raise exception.Invalid(
                reason="block_device_mapping_v2 entries must have source_type 'volume' and "
                       "destination_type 'volume' (images and blank disks are not supported)")
        if not b.get("uuid"):
            raise exception.Invalid(reason="a volume block device needs the volume's uuid")
        return {"source_type": "volume", "destination_type": "volume",
                "volume_id": b["uuid"], "device_type": b.get("device_type", "disk"),
                "device_name": b.get("device_name"),
                "boot_index": None if b.get("boot_index") is None else int(b["boot_index"]),
                "volume_size": None if b.get("volume_size") is None
                else int(b["volume_size"]),
                # "false" is a true string: Nova's booleans are parsed.
                "delete_on_termination": schemas.to_bool(
                    b.get("delete_on_termination", False))}

    def delete_server(self, ctxt, server_id):
        instance = self.get_server(ctxt, server_id)
        self.authorize(ctxt, "os_compute_api:servers:delete", instance)
        if instance["vm_state"] == states.RESIZED:
            return self._delete_resized(ctxt, server_id, instance)
        if instance["vm_state"] == states.ERROR:
            self._refuse_if_unresolved(server_id, "delete")
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

    def _delete_resized(self, ctxt, server_id, instance):
        """A server in VERIFY_RESIZE is deleted by confirming its resize first, as
        Nova does: the source's copy is removed, then the server. Both intents are
        recorded in one write (the move 'confirming', the server 'deleting'), and
        the move's owner carries out the delete once the source is clean, so a
        crash in between loses neither. While a confirm or revert runs, 409."""
        if instance["task_state"] is not None:     # deleting already, or reverting
            raise exception.InstanceBusy(instance_id=server_id,
                                         task_state=instance["task_state"])
        moves = self.db.migration_list({"instance_uuid": server_id,
                                        "status": sorted(phases.IN_PROGRESS)})
        busy = [m for m in moves if m["status"] != states.FINISHED]
        if busy or not moves:
            raise exception.InstanceBusy(instance_id=server_id,
                                         task_state=busy[0]["status"] if busy
                                         else "none (no finished migration found)")
        migration = moves[0]
        data = dict(moves_mod.step_data(migration), delete_context=ctxt.to_saved_dict())
        try:
            migration = self.db.migration_advance(
                migration, "confirm", fenced=False, data=data,
                instance_values={"task_state": states.DELETING},
                instance_expected={"vm_state": states.RESIZED, "task_state": None},
                timeline=[timeline.entry("intent", "confirm", user_id=ctxt.user_id,
                                         detail={"why": "the server is deleted"})])
        except exception.ConcurrentUpdate:
            raise exception.InstanceBusy(instance_id=server_id,
                                         task_state="confirming or reverting") from None
        self.db.action_start(ctxt, server_id, states.ACTION_DELETE)
        self._wake(ctxt, migration)

    # --- live migration ---------------------------------------------------------
    def live_migrate(self, ctxt, server_id, host, block_migration):
        instance = self.get_server(ctxt, server_id)
        rule = policy_mod.MIGRATE_LIVE + (":host" if host else "")
        self.authorize(ctxt, rule, {"project_id": instance["project_id"]})
        try:
            return self.conductor.live_migrate_instance(ctxt, server_id, host, block_migration)
        except messaging.MessagingTimeout:
            raise exception.ServiceUnavailable(
                reason="The conductor did not answer in time; check that godwit-conductor "
                       "is running. The migration may still start: see 'godwit migration "
                       f"list --instance {server_id}'.") from None

    def live_migrate_dry_run(self, ctxt, server_id, host, block_migration):
        """Godwit extension: the checks of a live migration against every
        candidate (or ``host``), with predictions; nothing is written."""
        instance = self.get_server(ctxt, server_id)
        rule = policy_mod.MIGRATE_LIVE + (":host" if host else "")
        self.authorize(ctxt, rule, {"project_id": instance["project_id"]})
        return self._call_conductor(self.conductor.live_migration_dry_run, ctxt, server_id,
                                    host, block_migration)

    # --- cold migration, resize, confirm, revert -------------------------------
    def _call_conductor(self, fn, *args):
        try:
            return fn(*args)
        except messaging.MessagingTimeout:
            raise exception.ServiceUnavailable(
                reason="The conductor did not answer in time; check that godwit-conductor "
                       "is running.") from None

    def migrate(self, ctxt, server_id, host=None):
        instance = self.get_server(ctxt, server_id)
        rule = policy_mod.MIGRATE + (":host" if host else "")
        self.authorize(ctxt, rule, {"project_id": instance["project_id"]})
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
        # The server stays RESIZED (shown VERIFY_RESIZE) and idle until its
        # owner has cleaned the source: the write only requires it, in the
        # same transaction as the intent.
        return self._decide(ctxt, server_id, migration, "confirm", "confirming",
                            {"vm_state": states.RESIZED})

    def revert_resize(self, ctxt, server_id):
        migration = self._resized(ctxt, server_id, "revert_resize")
        self.db.action_start(ctxt, server_id, "revertResize")
        return self._decide(ctxt, server_id, migration, "revert", "reverting",
                            {"task_state": states.RESIZE_REVERTING})

    def _decide(self, ctxt, server_id, migration, event, busy, instance_values):
        try:
            migration = self.db.migration_advance(
                migration, event, fenced=False, instance_values=instance_values,
                timeline=[timeline.entry("intent", event, user_id=ctxt.user_id)],
                instance_expected={"vm_state": states.RESIZED, "task_state": None})
        except exception.ConcurrentUpdate:
            raise exception.InstanceBusy(instance_id=server_id, task_state=busy) from None
        self.faults.check(f"intent.{event}", server_id)
        self._wake(ctxt, migration)
        return migration

    def _wake(self, ctxt, migration):
        """Tell the move's owner to look (only a wake-up: its sweep finds the
        intent anyway)."""
        try:
            self.conductor.wake(ctxt, migration["id"], owner=migration.get("owner"))
        except Exception:  # noqa: BLE001 - the intent is recorded; the sweep acts
            LOG.warning("Could not wake the conductor for migration %s; its sweep will "
                        "carry out the request", migration["id"], exc_info=True)

    # --- power ------------------------------------------------------------------
    def _power(self, ctxt, server_id, action, from_vm_state, task_state, reboot_type=None,
               hint=None):
        """Move an idle server in ``from_vm_state`` (one state or a tuple) to
        ``task_state`` and wake a conductor to carry out ``action``."""
        instance = self.get_server(ctxt, server_id)
        self.authorize(ctxt, f"os_compute_api:servers:{action}", instance)
        if action != "stop":
            self._refuse_if_unresolved(server_id, action)
        if not instance.get("host"):
            raise exception.InstanceInvalidState(
                action=action, instance_id=server_id, attr="host", state="none",
                hint="The server was never placed on a host; delete it and create it again.")
        try:
            self.db.instance_update(server_id, {"task_state": task_state},
                                    expected={"vm_state": from_vm_state, "task_state": None})
        except exception.ConcurrentUpdate:
            raise exception.InstanceInvalidState(
                action=action, instance_id=server_id, attr="vm_state/task_state",
                state=f"{instance['vm_state']}/{instance['task_state']}",
                hint=hint or f"It must be {from_vm_state} and idle.") from None
        self.db.action_start(ctxt, server_id, action)
        self.faults.check(f"intent.{action}", server_id)
        try:
            self.conductor.power_action(ctxt, server_id, action, reboot_type)
        except Exception:  # noqa: BLE001 - recorded; a conductor's sweep carries it out
            LOG.warning("Could not wake a conductor for the %s of %s; its sweep will carry "
                        "it out", action, server_id, exc_info=True)

    def _refuse_if_unresolved(self, server_id, action):
        """Starting a guest whose move is unresolved could run a second copy."""
        for m in self.db.migration_list({"instance_uuid": server_id,
                                         "status": sorted(phases.IN_PROGRESS
                                                          | {states.ERROR_MIGRATION})}):
            if m["status"] != states.ERROR_MIGRATION or m.get("awaiting_hosts"):
                raise exception.MoveUnresolved(
                    instance_id=server_id, action={"start": "started", "reboot": "rebooted",
                                                   "delete": "deleted"}.get(action, action),
                    migration_id=m["id"],
                    reason=m.get("error_message") or f"it is {m['status']}")

    def stop(self, ctxt, server_id):
        self._power(ctxt, server_id, "stop", states.ACTIVE, states.POWERING_OFF)

    def start(self, ctxt, server_id):
        self._power(ctxt, server_id, "start", states.STOPPED, states.POWERING_ON)

    def reboot(self, ctxt, server_id, reboot_type):
        """Nova's rules: a soft reboot needs an active, idle server; a hard one also
        takes a stopped server or one in error (the way out for an operator)."""
        if reboot_type == "HARD":
            allowed, task_state = (states.ACTIVE, states.STOPPED, states.ERROR), \
                states.REBOOTING_HARD
        else:
            allowed, task_state = (states.ACTIVE,), states.REBOOTING

        self._power(ctxt, server_id, "reboot", allowed, task_state, reboot_type,
                    hint=f"A {reboot_type.lower()} reboot needs an idle server in "
                         f"{' or '.join(allowed)}.")

    # --- migrations -------------------------------------------------------------
    def list_migrations(self, ctxt, filters, limit=None, marker=None):
        self.authorize(ctxt, "os_compute_api:os-migrations:index")
        return self.db.migration_list(filters, limit=limit, marker=marker)

    def server_migrations(self, ctxt, server_id):
        instance = self.get_server(ctxt, server_id)
        self.authorize(ctxt, "os_compute_api:servers:migrations:index",
                       {"project_id": instance["project_id"]})
        in_progress = sorted(phases.IN_PROGRESS)
        return self.db.migration_list({"instance_uuid": server_id,
                                       "migration_type": states.LIVE_MIGRATION,
                                       "status": in_progress})

    def migration_by_id(self, migration_id):
        """A migration by its id or its uuid (MigrationNotFound otherwise)."""
        if str(migration_id).isascii() and str(migration_id).isdigit():
            try:
                number = schemas.parse_int(migration_id, "migration id")
            except exception.Invalid:
                raise exception.MigrationNotFound(migration_id=migration_id) from None
            return self.db.migration_get(number)
        return self.db.migration_get_by_uuid(migration_id)

    def _migration_of(self, server_id, migration_id):
        """The migration ``migration_id`` (its id, or its uuid) of ``server_id``."""
        try:
            # An id beyond the column's range names no migration (and SQLite's
            # driver overflows on it): not found, like any other.
            migration = self.migration_by_id(migration_id)
        except exception.MigrationNotFound:
            raise exception.MigrationNotFoundForInstance(migration_id=migration_id,
                                                         instance_id=server_id) from None
        if migration["instance_uuid"] != server_id:
            raise exception.MigrationNotFoundForInstance(migration_id=migration_id,
                                                         instance_id=server_id)
        return migration

    def server_migration(self, ctxt, server_id, migration_id):
        """An in-progress live migration of the server (Nova shows no other kind)."""
        instance = self.get_server(ctxt, server_id)
        self.authorize(ctxt, "os_compute_api:servers:migrations:show",
                       {"project_id": instance["project_id"]})
        migration = self._migration_of(server_id, migration_id)
        if migration["migration_type"] != states.LIVE_MIGRATION:
            raise exception.NotFound(
                f"Migration {migration_id} of server {server_id} is not a live migration "
                f"(GET /os-migrations?instance_uuid={server_id} lists every kind).")
        if migration["status"] not in phases.LIVE_UNDER_WAY:
            raise exception.NotFound(
                f"Live migration {migration_id} of server {server_id} is not in progress "
                f"(it is {migration['status']}; GET /os-migrations?instance_uuid={server_id} "
                "shows finished ones).")
        return migration

    def migration_timeline(self, ctxt, server_id, migration_id):
        """(migration, its timeline) of any migration of the server (extension)."""
        instance = self.get_server(ctxt, server_id)
        self.authorize(ctxt, "os_compute_api:servers:migrations:show",
                       {"project_id": instance["project_id"]})
        m = self._migration_of(server_id, migration_id)
        return m, self.db.timeline(m["id"])

    def _live_migration_in(self, ctxt, server_id, migration_id, rule, action, allowed):
        """Nova's checks for abort and force_complete, in Nova's order: the server
        (404), the policy (403), the server migrating (409), the migration (404 or
        400), its status (400)."""
        instance = self.get_server(ctxt, server_id)
        self.authorize(ctxt, rule, {"project_id": instance["project_id"]})
        if instance["task_state"] != states.MIGRATING:
            raise exception.InstanceInvalidState(
                action=action, instance_id=server_id, attr="task_state",
                state=instance["task_state"],
                hint="Only a server that is being live-migrated (task_state migrating) "
                     "has a live migration to steer.")
        m = self._migration_of(server_id, migration_id)
        if m["migration_type"] != states.LIVE_MIGRATION or m["status"] not in allowed:
            raise exception.InvalidMigrationState(
                migration_id=migration_id, instance_id=server_id, status=m["status"],
                action=action, allowed=" or ".join(sorted(allowed)) + " live migration")
        return m

    def abort_live_migration(self, ctxt, server_id, migration_id, allow_early):
        """Abort; queued and preparing migrations only when ``allow_early`` (2.65+)."""
        allowed = {states.RUNNING_MIGRATION}
        if allow_early:
            allowed |= {states.QUEUED, states.PREPARING}
        m = self._live_migration_in(ctxt, server_id, migration_id,
                                    "os_compute_api:servers:migrations:delete", "abort",
                                    allowed)
        return self._request(ctxt, server_id, m, "abort", allowed, "live_migration_abort")

    def force_complete(self, ctxt, server_id, migration_id):
        try:
            m = self._live_migration_in(ctxt, server_id, migration_id,
                                        "os_compute_api:servers:migrations:force_complete",
                                        "force_complete", {states.RUNNING_MIGRATION})
        except exception.MigrationNotFoundForInstance as e:
            raise exception.Invalid(str(e)) from None   # Nova answers 400 here
        return self._request(ctxt, server_id, m, "force_complete",
                             {states.RUNNING_MIGRATION}, "live_migration_force_complete")

    # Godwit extension: a running live migration's bandwidth and max downtime.
    TUNING = {"set-speed": ("bandwidth_mib", "os_compute_api:servers:migrations:set_speed"),
              "set-downtime": ("max_downtime_ms",
                               "os_compute_api:servers:migrations:set_downtime")}

    def tune_live_migration(self, ctxt, server_id, migration_id, intent, value):
        """Record the user's set-speed (MiB/s) or set-downtime (ms) on a running
        live migration and wake its owner, who applies it on the source
        (compute RPC 2.2). Checks as force_complete's, then that the compute
        RPC cap allows 2.2 (409 otherwise: nothing is recorded)."""
        key, rule = self.TUNING[intent]
        m = self._live_migration_in(ctxt, server_id, migration_id, rule, intent,
                                    {states.RUNNING_MIGRATION})
        cap = self.compute_cap().current()
        if upgrade.parse(cap) < upgrade.parse(TUNE_VERSION):
            raise exception.Conflict(
                f"{intent} needs compute RPC {TUNE_VERSION} and this API sends compute RPC "
                f"up to {cap} ([upgrade_levels] compute = "
                f"{self.conf.upgrade_levels.compute or 'unset'}): upgrade every compute "
                "agent, then remove the pin (or set it to auto) on the conductors and APIs "
                "(docs/upgrades.md). Nothing was changed.")
        try:
            m = self.db.migration_request_tuning(m["id"], intent, {key: value},
                                                 {states.RUNNING_MIGRATION})
        except exception.ConcurrentUpdate:
            m = self.db.migration_get(m["id"])
            raise exception.InvalidMigrationState(
                migration_id=m["id"], instance_id=server_id, status=m["status"],
                action=intent, allowed="a running live migration") from None
        self._wake(ctxt, m)
        return m

    def _request(self, ctxt, server_id, migration, intent, allowed, action):
        """Record ``intent`` on the migration (while still in ``allowed``), then wake
        its owner."""
        try:
            migration = self.db.migration_request(migration["id"], intent, allowed)
        except exception.ConcurrentUpdate:
            m = self.db.migration_get(migration["id"])
            raise exception.InvalidMigrationState(
                migration_id=m["id"], instance_id=server_id, status=m["status"],
                action=intent, allowed=" or ".join(sorted(allowed)) + " live migration"
            ) from None
        self.db.action_start(ctxt, server_id, action)
        self.faults.check(f"intent.{intent}", server_id)
        self._wake(ctxt, migration)
        return migration

    # --- actions ---------------------------------------------------------------
    def _server_for_actions(self, ctxt, server_id, rule):
        instance = self.db.instance_get(server_id, read_deleted=True)
        if not ctxt.is_admin and instance["project_id"] != ctxt.project_id:
            raise exception.InstanceNotFound(instance_id=server_id)
        self.authorize(ctxt, rule, {"project_id": instance["project_id"]})
        return instance

    def list_actions(self, ctxt, server_id):
        self._server_for_actions(ctxt, server_id, "os_compute_api:os-instance-actions:list")
        return self.db.action_list(server_id)

    def get_action(self, ctxt, server_id, request_id):
        """The action and its events, or None for events the caller may not see.

        Returns ``(action, events, show_host_and_traceback, project_id)``.
        """
        instance = self._server_for_actions(ctxt, server_id,
                                            "os_compute_api:os-instance-actions:show")
        action = self.db.action_get_by_request_id(server_id, request_id)
        if action is None:
            raise exception.NotFound(f"Action {request_id} not found for server {server_id}; "
                                     f"GET /servers/{server_id}/os-instance-actions lists "
                                     "them.")
        target = {"project_id": instance["project_id"]}
        privileged = self.policy.check(ctxt, "os_compute_api:os-instance-actions:events",
                                       target)
        details = self.policy.check(ctxt, "os_compute_api:os-instance-actions:events:details",
                                    target)
        events = self.db.event_list(action["id"])
        return action, events, privileged, details

    # --- flavors, services, hypervisors ---------------------------------------
    def list_flavors(self, ctxt):
        return self.db.flavor_list()

    def get_flavor(self, ctxt, flavor_id):
        return self.db.flavor_get_by_flavorid(flavor_id)

    def list_services(self, ctxt, host=None, binary=None):
        self.authorize(ctxt, "os_compute_api:os-services:list")
        return self.db.service_list(binary=binary, host=host)

    def get_service(self, ctxt, service_id):
        self.authorize(ctxt, "os_compute_api:os-services:update")
        return self.db.service_get(service_id)

    def update_service(self, ctxt, service_id, values):
        self.authorize(ctxt, "os_compute_api:os-services:update")
        return self.db.service_update(service_id, values)

    def list_hypervisors(self, ctxt, rule="os_compute_api:os-hypervisors:list"):
        self.authorize(ctxt, rule)
        out = []
        services = {s["host"]: s for s in self.db.service_list(binary=states.SERVICE_COMPUTE)}
        for node in self.db.compute_node_list():
            usage = self.db.host_usage(node["host"])
            out.append((node, services.get(node["host"]), usage))
        return out

    def servers_on_host(self, ctxt, host):
        return self.db.instance_list({"host": host})
