"""The conductor's RPC endpoint: the only service that writes the database.

Compute agents call the first group of methods to read and write state
(they hold no database credentials); the API calls the second group to
start work. Each flow lives in its own module (:mod:`conductor.live_migrate`
for live migration); this class holds the shared pieces and dispatches.
"""

import datetime

import oslo_messaging as messaging
from oslo_log import log as logging

import godwit
from compute import rpcapi as compute_rpcapi
from conductor import checks, live_migrate, migrate, watchdog
from conductor import scheduler as scheduler_mod
from godwit import context as godwit_context
from godwit import events, exception, states
from godwit.db import api as db_api
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)

_DATETIME_FIELDS = ("launched_at", "terminated_at", "start_time", "finish_time")


def _datetimes(values):
    """RPC carries datetimes as ISO strings; the database wants datetimes."""
    out = dict(values)
    for key in _DATETIME_FIELDS:
        if isinstance(out.get(key), str):
            out[key] = datetime.datetime.fromisoformat(out[key]).replace(tzinfo=None)
    return out


class ConductorManager:
    target = messaging.Target(version="1.2")

    def __init__(self, conf, transport, db=None, host=None):
        self.conf = conf
        self.host = host or conf.host
        self.db = db or db_api.get_database(conf.database.connection, conf.database.echo)
        self.compute_rpc = compute_rpcapi.ComputeAPI(transport,
                                                     long_timeout=conf.long_rpc_timeout)
        self.scheduler = scheduler_mod.Scheduler(self.db, conf)
        self.watchdog = watchdog.Watchdog(self)

    # --- service lifecycle ------------------------------------------------
    def init_host(self):
        self.db.service_register(self.host, states.SERVICE_CONDUCTOR, "conductor",
                                 godwit.__version__)

    def heartbeat(self):
        self.db.service_heartbeat(self.host, states.SERVICE_CONDUCTOR)

    def watchdog_sweep(self):
        self.watchdog.sweep(godwit_context.get_admin_context())

    def event(self, ctxt, instance_uuid, name):
        return events.step_event(lambda **kw: self.action_event(ctxt, **kw), instance_uuid,
                                 name, self.host)

    # --- for compute agents ---------------------------------------------------
    def service_report(self, ctxt, host, binary, topic, version, node_info):
        svc = self.db.service_register(host, binary, topic, version)
        node = self.db.compute_node_upsert(host, dict(node_info, hypervisor_hostname=host))
        LOG.info("Compute host %s registered (%s %s)", host, node["hypervisor_type"],
                 node["hypervisor_version"])
        return {"service": svc, "node": node}

    def service_heartbeat(self, ctxt, host, binary):
        if not self.db.service_heartbeat(host, binary):
            raise exception.ServiceNotFound(service_id=f"{binary} on {host}")
        return True

    def instance_get(self, ctxt, instance_uuid):
        return self.db.instance_get_with_devices(instance_uuid)

    def instance_update(self, ctxt, instance_uuid, values, expected=None):
        return self.db.instance_update(instance_uuid, _datetimes(values), expected)

    def instance_destroyed(self, ctxt, instance_uuid, host):
        now = utcnow()
        return self.db.instance_update(
            instance_uuid, {"vm_state": states.DELETED, "task_state": None,
                            "power_state": states.NOSTATE, "terminated_at": now,
                            "deleted_at": now},
            expected={"task_state": states.DELETING})

    def migration_context(self, ctxt, migration_id):
        """The migration and all a host needs about it, in one round trip and one
        transaction (nodes and flavors too for cold migrations and resizes)."""
        return self.db.migration_context(migration_id)

    def migration_transition(self, ctxt, migration_id, old, new, values=None,
                             instance_values=None, instance_expected=None):
        return self.db.migration_transition(
            migration_id, old, new, values=values,
            instance_values=_datetimes(instance_values) if instance_values else None,
            instance_expected=instance_expected)

    def migration_advance(self, ctxt, migration_id, path, context=False):
        return self.db.migration_advance(migration_id, path, context=context)

    def migration_update(self, ctxt, migration_id, values, expected_status=None):
        values = dict(values)
        # The percentage only ever rises (peers' bars that run backwards are a
        # known complaint); the task_state guard makes that hold across writers.
        # It is written in the same transaction as the migration's fields.
        progress = values.pop("progress", None)
        return self.db.migration_update(migration_id, values, expected_status,
                                        instance_progress=progress)

    def action_event(self, ctxt, instance_uuid, event, host, start_time, finish_time,
                     result, traceback=None):
        # The action id is remembered per request: a migration records about
        # eight events under the same one.
        action_id = self.db.action_id_for_request(instance_uuid, ctxt.request_id)
        if action_id is None:
            LOG.debug("No action for request %s on %s; event %s not recorded",
                      ctxt.request_id, instance_uuid, event)
            return
        times = _datetimes({"start_time": start_time, "finish_time": finish_time})
        self.db.event_record(action_id, event, host, times["start_time"],
                             times["finish_time"], result, traceback)

    # --- for the API -------------------------------------------------------------
    def build_instance(self, ctxt, instance_uuid, requested_host=None):
        instance = self.db.instance_get(instance_uuid)
        need = {"memory_mb": instance["memory_mb"], "vcpus": instance["vcpus"],
                "disk_gb": instance["root_gb"] + instance["ephemeral_gb"]}
        try:
            with self.event(ctxt, instance_uuid, "conductor_schedule_and_build_instance"):
                if requested_host:
                    checks.check_service_up(self.db, self.conf, requested_host)
                    node = self.db.compute_node_get_by_host(requested_host)
                    checks.check_capacity(self.db, self.conf, node, need)
                    host = requested_host
                else:
                    hosts, refusals = self.scheduler.candidates(need)
                    if not hosts:
                        raise exception.NoValidHost(reason=scheduler_mod.explain(refusals))
                    host = hosts[0]
                self.db.instance_update(instance_uuid,
                                        {"host": host, "node": host,
                                         "task_state": states.SPAWNING},
                                        expected={"task_state": states.SCHEDULING})
        except exception.GodwitException as e:
            self.db.instance_update(instance_uuid, {"vm_state": states.ERROR,
                                                    "task_state": None,
                                                    "fault_message": str(e)})
            return
        self.compute_rpc.build_and_run_instance(ctxt, host, instance_uuid)

    def delete_instance(self, ctxt, instance_uuid):
        instance = self.db.instance_get(instance_uuid)
        svc = self.db.service_get_by_host(instance["host"]) if instance["host"] else None
        if svc is not None and db_api.is_service_up(svc, self.conf.service_down_time):
            self.compute_rpc.terminate_instance(ctxt, instance["host"], instance_uuid)
            return
        if instance["host"]:
            LOG.warning("Host %s of %s is down: deleting the record only; the host must be "
                        "cleaned when it returns", instance["host"], instance_uuid)
        self.instance_destroyed(ctxt, instance_uuid, instance["host"])

    def migrate_server(self, ctxt, instance_uuid, flavor_id=None, requested_host=None):
        """Cold migration (no flavor) or resize; see conductor.migrate."""
        return migrate.MigrationTask(self, ctxt, instance_uuid, flavor_id,
                                     requested_host).execute()

    def resize_reschedule(self, ctxt, migration_id, failed_host, reason):
        migrate.reschedule(self, ctxt, migration_id, failed_host, reason)

    def auto_confirm(self):
        migrate.auto_confirm(self, godwit_context.get_admin_context())

    def live_migrate_instance(self, ctxt, instance_uuid, requested_host=None,
                              block_migration="auto"):
        task = live_migrate.LiveMigrationTask(self, ctxt, instance_uuid, requested_host,
                                              block_migration)
        return task.execute()

