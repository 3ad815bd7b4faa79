"""The compute agent's RPC endpoint: one per hypervisor host.

The manager owns the host's drivers and answers the RPC methods of
:mod:`compute.rpcapi`. It never opens the database: state comes and goes
through :class:`conductor.rpcapi.ConductorAPI`. Each flow keeps its own
module; the live migration lives in :mod:`compute.live_migration` and this
class only dispatches to it.
"""

import time

import oslo_messaging as messaging
from oslo_log import log as logging

import godwit
from compute import drivers, live_migration, resize, steps
from compute import rpcapi as compute_rpcapi
from conductor import rpcapi as conductor_rpcapi
from godwit import context as godwit_context
from godwit import events, notifications, states
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)


class ComputeManager:
    target = messaging.Target(version="1.4")

    def __init__(self, conf, host, transport, instances_path=None):
        self.conf = conf
        self.host = host
        self.conductor = conductor_rpcapi.ConductorAPI(transport)
        self.compute_rpc = compute_rpcapi.ComputeAPI(transport,
                                                     long_timeout=conf.long_rpc_timeout)
        path = (instances_path or conf.instances_path).replace("{host}", host)
        c = conf.compute
        self.driver = drivers.load("virt", c.virt_driver, conf, host, path)
        self.vif_driver = drivers.load("vif", c.vif_driver, conf, host)
        self.volume_driver = drivers.load("volume", c.volume_driver, conf, host)
        self.firewall_driver = drivers.load("firewall", c.firewall_driver, conf, host)
        self.notifier = notifications.Notifier(conf, getattr(transport, "godwit_url", None),
                                               f"compute.{host}")
        self.live = live_migration.LiveMigrations(self)
        self.resizes = resize.Resizes(self)

    # --- service lifecycle ------------------------------------------------
    def init_host(self, attempts=60):
        self.driver.init_host()
        ctxt = godwit_context.get_admin_context()
        node_info = self.driver.get_host_info()
        for attempt in range(attempts):
            try:
                self.conductor.service_report(ctxt, self.host, states.SERVICE_COMPUTE,
                                              compute_rpcapi.TOPIC, godwit.__version__,
                                              node_info)
                return
            except messaging.MessagingTimeout:
                LOG.warning("Conductor not reachable yet (attempt %d); retrying", attempt + 1)
                time.sleep(1)
        raise RuntimeError("conductor did not answer; is godwit-conductor running?")

    def heartbeat(self):
        self.conductor.service_heartbeat(godwit_context.get_admin_context(), self.host,
                                         states.SERVICE_COMPUTE)

    def cleanup_host(self):
        self.live.shutdown()
        self.driver.cleanup_host()

    def record_event(self, ctxt, **kwargs):
        try:
            self.conductor.action_event(ctxt, **kwargs)
        except Exception:  # auditing must never break the step it audits
            LOG.exception("Could not record event %s", kwargs.get("event"))

    def event(self, ctxt, instance_uuid, name):
        return events.step_event(lambda **kw: self.record_event(ctxt, **kw), instance_uuid,
                                 name, self.host)

    # --- RPC: housekeeping -----------------------------------------------
    def ping(self, ctxt):
        return {"host": self.host, "instances": len(self.driver.list_instances())}

    # --- RPC: server lifecycle -------------------------------------------
    def build_and_run_instance(self, ctxt, instance_uuid):
        info = self.conductor.instance_get(ctxt, instance_uuid)
        instance, nw, bdms = info["instance"], info["network_info"], info["block_device_info"]
        try:
            with self.event(ctxt, instance_uuid, "compute_build_and_run_instance"):
                self.driver.spawn(instance, nw, bdms)
                self.vif_driver.plug_all(instance, nw)
                self.firewall_driver.apply_instance_filter(instance, nw)
                self.volume_driver.connect_all(instance, bdms)
        except Exception as e:
            LOG.exception("Build of %s failed on %s", instance_uuid, self.host)
            self._teardown(instance, nw, bdms)
            self.conductor.instance_update(ctxt, instance_uuid, {
                "vm_state": states.ERROR, "task_state": None, "power_state": states.NOSTATE,
                "fault_message": f"Build failed on {self.host}: {e}"})
            return
        self.conductor.instance_update(
            ctxt, instance_uuid,
            {"vm_state": states.ACTIVE, "task_state": None, "power_state": states.RUNNING,
             "launched_at": utcnow().isoformat()},
            expected={"task_state": states.SPAWNING})

    def _teardown(self, instance, nw, bdms, destroy_disks=True):
        """Remove everything of ``instance`` from this host; report what failed."""
        return steps.run_all([
            ("filter", lambda: self.firewall_driver.unfilter_instance(instance, nw)),
            ("vifs", lambda: self.vif_driver.unplug_all(instance, nw)),
            ("volumes", lambda: self.volume_driver.disconnect_all(instance, bdms)),
            ("domain", lambda: self.driver.destroy(instance, nw, bdms, destroy_disks))],
            purpose=f"teardown of {instance['uuid']} on {self.host}")

    def terminate_instance(self, ctxt, instance_uuid):
        info = self.conductor.instance_get(ctxt, instance_uuid)
        instance = info["instance"]
        with self.event(ctxt, instance_uuid, "compute_terminate_instance"):
            failures = self._teardown(instance, info["network_info"],
                                      info["block_device_info"])
        if failures:
            self.conductor.instance_update(ctxt, instance_uuid, {
                "vm_state": states.ERROR, "task_state": None,
                "fault_message": "Delete left resources: " + "; ".join(failures)})
            return
        self.conductor.instance_destroyed(ctxt, instance_uuid, self.host)

    # --- RPC: live migration (see compute.live_migration) -----------------
    def check_can_live_migrate_destination(self, ctxt, instance_uuid, source, block_migration,
                                           instance_info=None):
        return self.live.check_destination(ctxt, instance_uuid, source, block_migration,
                                           instance_info)

    def check_can_live_migrate_source(self, ctxt, instance_uuid, dest_check_data,
                                      instance_info=None):
        return self.live.check_source(ctxt, instance_uuid, dest_check_data, instance_info)

    def live_migration(self, ctxt, instance_uuid, migration_id, dest, migrate_data):
        self.live.start(ctxt, migration_id, dest, migrate_data)

    def live_migration_abort(self, ctxt, migration_id):
        self.live.abort(ctxt, migration_id)

    def live_migration_force_complete(self, ctxt, migration_id):
        self.live.force_complete(ctxt, migration_id)

    def pre_live_migration(self, ctxt, migration_id, migrate_data, instance_info=None):
        return self.live.pre_at_destination(ctxt, migration_id, migrate_data, instance_info)

    def post_live_migration_at_destination(self, ctxt, migration_id, migrate_data,
                                           instance_info=None):
        return self.live.post_at_destination(ctxt, migration_id, migrate_data, instance_info)

    def rollback_live_migration_at_destination(self, ctxt, migration_id, migrate_data,
                                               destroy_disks):
        return self.live.rollback_at_destination(ctxt, migration_id, migrate_data,
                                                 destroy_disks)

    # --- RPC: power (os-stop / os-start) ------------------------------------
    def stop_instance(self, ctxt, instance_uuid):
        self._set_power(ctxt, instance_uuid, "compute_stop_instance",
                        lambda instance, _info: self.driver.power_off(instance),
                        states.STOPPED, states.POWERING_OFF)

    def start_instance(self, ctxt, instance_uuid):
        self._set_power(ctxt, instance_uuid, "compute_start_instance",
                        lambda instance, _info: self.driver.power_on(instance),
                        states.ACTIVE, states.POWERING_ON)

    def reboot_instance(self, ctxt, instance_uuid, reboot_type):
        def reboot(instance, info):
            self.driver.reboot(instance, info.get("network_info"),
                               info.get("block_device_info"), reboot_type)
        task_state = states.REBOOTING_HARD if reboot_type == "HARD" else states.REBOOTING
        self._set_power(ctxt, instance_uuid, "compute_reboot_instance", reboot,
                        states.ACTIVE, task_state)

    def _set_power(self, ctxt, instance_uuid, event, action, vm_state, task_state):
        """Run ``action(instance, info)`` (info: the instance with its network_info
        and block_device_info) under an instance action event; on success the
        instance is ``vm_state`` and idle, on failure idle with the fault recorded."""
        info = self.conductor.instance_get(ctxt, instance_uuid)
        instance = info["instance"]
        try:
            with self.event(ctxt, instance_uuid, event):
                action(instance, info)
        except Exception as e:
            self.conductor.instance_update(ctxt, instance_uuid, {
                "task_state": None, "fault_message": f"{event} on {self.host}: {e}"},
                expected={"task_state": task_state})
            return
        self.conductor.instance_update(
            ctxt, instance_uuid, {"vm_state": vm_state, "task_state": None,
                                  "power_state": self.driver.get_power_state(instance)},
            expected={"task_state": task_state})

    # --- RPC: cold migration and resize (see compute.resize) ------------------
    def prep_resize(self, ctxt, migration_id):
        self.resizes.prep_resize(ctxt, migration_id)

    def resize_instance(self, ctxt, migration_id):
        self.resizes.resize_instance(ctxt, migration_id)

    def finish_resize(self, ctxt, migration_id, disk_info):
        self.resizes.finish_resize(ctxt, migration_id, disk_info)

    def confirm_resize(self, ctxt, migration_id):
        self.resizes.confirm_resize(ctxt, migration_id)

    def revert_resize(self, ctxt, migration_id):
        self.resizes.revert_resize(ctxt, migration_id)

    def finish_revert_resize(self, ctxt, migration_id, failure=None):
        self.resizes.finish_revert_resize(ctxt, migration_id, failure)
