"""The compute agent's RPC endpoint: one per hypervisor host.

The manager owns the host's drivers and its journal of move steps
(:mod:`compute.journal`), and answers the RPC methods of
:mod:`compute.rpcapi`. It never opens the database: state comes and goes
through :class:`conductor.rpcapi.ConductorClient`. The conductor drives every
move; the steps of live migration are in :mod:`compute.live_migration`, those
of cold migration and resize in :mod:`compute.resize`, and this class only
dispatches to them.
"""

import os
import time

import oslo_messaging as messaging
from kombu import exceptions as kombu_exceptions
from oslo_log import log as logging

import godwit
from compute import drivers, journal, live_migration, resize, steps
from compute import rpcapi as compute_rpcapi
from conductor import rpcapi as conductor_rpcapi
from godwit import context as godwit_context
from godwit import events, exception, notifications, rpc, states, upgrade
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)

# How long a step's event waits at least before it is cast (at most
# godwit.events.Deferred's max_delay, a quarter of a second). The conductor
# takes each cast in the process that drives the move's next steps; cast right
# after the step, it lands in the middle of them and delays them. A tenth of a
# second later a quick move's remaining steps are done (a move between fake
# hosts takes about that long end to end), and a slow one's conductor waits
# for its hypervisor job meanwhile. The user sees the event that much later.
EVENT_DELAY = 0.1


class ComputeManager:
    target = messaging.Target(version=compute_rpcapi.VERSION)
    #: What this agent records in the services table as the compute RPC version
    #: it serves (for [upgrade_levels] compute = auto): its target's. (None: it
    #: registers as agents did before versions were recorded; the test kit's
    #: older agents.)
    rpc_version = target.version

    def __init__(self, conf, host, transport, instances_path=None):
        self.conf = conf
        self.host = host
        # [upgrade_levels]: with auto, an agent (no database) learns its caps
        # from the conductor's answer when it registers (init_host).
        self.conductor_cap = upgrade.cap(conf, conductor_rpcapi.INTERFACE)
        self.compute_cap = upgrade.cap(conf, compute_rpcapi.INTERFACE)
        self.conductor = conductor_rpcapi.ConductorClient(
            transport, timeout=conf.host_step_timeout, version_cap=self.conductor_cap)
        self.compute_rpc = compute_rpcapi.ComputeAgentClient(
            transport, long_timeout=conf.long_rpc_timeout, step_timeout=conf.host_step_timeout,
            version_cap=self.compute_cap)
        path = (instances_path or conf.instances_path).replace("{host}", host)
        c = conf.compute
        self.driver = drivers.load("virt", c.virt_driver, conf, host, path)
        self.vif_driver = drivers.load("vif", c.vif_driver, conf, host)
        self.volume_driver = drivers.load("volume", c.volume_driver, conf, host)
        self.firewall_driver = drivers.load("firewall", c.firewall_driver, conf, host)
        self.notifier = notifications.Notifier(conf, getattr(transport, "godwit_url", None),
                                               f"compute.{host}")
        self.journal = journal.Journal(
            os.path.join(conf.state_path, "journal", f"{host}.sqlite"), host)
        # How long a repeated step call waits for the same step still running
        # before answering "in progress": under the caller's own timeout.
        self.step_wait = max(1.0, conf.host_step_timeout * 0.75)
        self.live = live_migration.LiveMigrations(self)
        self.resizes = resize.Resizes(self)
        # Step events are cast to the conductor from a thread of their own once
        # the step has answered and no other step runs (godwit.events.Deferred),
        # and not before EVENT_DELAY: see there.
        self._events = events.Deferred(
            lambda ctxt, **kw: self.conductor.action_event(ctxt, **kw),
            name=f"events-{host}", idle=self.journal.idle, min_delay=EVENT_DELAY)

    # --- service lifecycle ------------------------------------------------
    def init_host(self, attempts=60):
        self.driver.init_host()
        self.journal.prune()
        ctxt = godwit_context.get_admin_context()
        node_info = dict(self.driver.get_host_info(),
                         max_live_migrations=self.conf.max_concurrent_live_migrations or None)
        inventory = self.host_inventory(ctxt)
        for attempt in range(attempts):
            try:
                # The conductor also looks at every unfinished move this host
                # is part of (it may have restarted in the middle of them), and
                # says what it holds that nothing should hold any more: that is
                # removed before this agent takes any work.
                answer = self.conductor.service_report(
                    ctxt, self.host, states.SERVICE_COMPUTE, compute_rpcapi.TOPIC,
                    godwit.__version__, node_info, inventory, rpc_version=self.rpc_version)
                caps = answer.get("rpc_versions") or {}
                self.conductor_cap.set(caps.get(conductor_rpcapi.TOPIC))
                self.compute_cap.set(caps.get(compute_rpcapi.TOPIC))
                if answer.get("orphans"):
                    for result in self.remove_orphans(ctxt, answer["orphans"]):
                        LOG.info("Orphan %s %s of %s: %s", result["kind"], result["name"],
                                 result["instance_uuid"], "removed" if result["removed"]
                                 else f"left: {result['reason']}")
                return
            except messaging.MessagingTimeout:
                LOG.warning("Conductor not reachable yet (attempt %d); retrying", attempt + 1)
                time.sleep(1)
        raise RuntimeError("conductor did not answer; is godwit-conductor running?")

    def heartbeat(self):
        # A short timeout: a heartbeat lost with the broker must not hold the
        # next one back (the next tick sends a fresh one).
        try:
            self.conductor.service_heartbeat(godwit_context.get_admin_context(), self.host,
                                             states.SERVICE_COMPUTE,
                                             timeout=self.conf.report_interval)
        except messaging.MessagingTimeout:
            LOG.warning("Heartbeat of %s not answered within %d s (conductor or broker "
                        "away); the next one follows", self.host, self.conf.report_interval)
        except (messaging.MessageDeliveryFailure, kombu_exceptions.OperationalError) as e:
            LOG.warning("Heartbeat of %s not sent, the broker is away (%s); the next one "
                        "follows", self.host, e)

    def cleanup_host(self):
        self.live.shutdown()
        self._events.flush()
        self.driver.cleanup_host()
        self.journal.close()

    def record_event(self, ctxt, **kwargs):
        self._events(ctxt=ctxt, **kwargs)

    def event(self, ctxt, instance_uuid, name):
        return events.step_event(lambda **kw: self.record_event(ctxt, **kw), instance_uuid,
                                 name, self.host)

    def step_done(self, step, instance_uuid=None):
        """A step did its work (before the journal records it): where the fake
        driver has an ``after`` fault armed for it, the process dies here."""
        faults = getattr(self.driver, "faults", None)
        if faults is not None:
            faults.done(step, instance_uuid)

    # --- RPC: housekeeping -----------------------------------------------
    def ping(self, ctxt):
        return {"host": self.host, "instances": len(self.driver.list_instances())}

    def inspect_instance(self, ctxt, instance_uuid, migration_id=None):
        """What this host has of the instance: its domain (defined, running as
        the guest, an incoming shell), a migration job still running, and the
        journal's steps of ``migration_id``. What recovery decides from."""
        instance = {"uuid": instance_uuid}
        found = dict(self.driver.inspect_instance(instance), host=self.host)
        job = self.driver.find_migration_job(instance)
        found["job_running"] = job is not None or migration_id in self.live.monitors
        if migration_id is not None:
            found["steps"] = {e["step"]: {"state": e["state"],
                                          "result": live_migration._loads(e["result"])}
                              for e in self.journal.steps(migration_id)}
        return found

    # --- RPC: what exists here, for the reconciler (conductor.reconciler) ---------
    def host_inventory(self, ctxt):
        """Everything of Godwit's on this host, by kind."""
        return {"domains": self.driver.list_domains(),
                "dirs": self.driver.list_instance_dirs(),
                "vifs": self.vif_driver.list_plugged(),
                "volumes": self.volume_driver.list_connections(),
                "filters": [{"instance_uuid": u} for u in self.firewall_driver.list_filtered()]}

    def remove_orphans(self, ctxt, items):
        """Remove what the conductor found orphaned here, looking first: nothing a
        running guest of this host uses is touched, whatever the list says."""
        results = []
        for item in items:
            try:
                removed = self._remove_orphan(item)
                results.append(dict(item, removed=removed, reason=None if removed else
                                    "its guest runs here: left alone"))
            except Exception as e:
                LOG.warning("Could not remove orphan %s: %s", item, e)
                results.append(dict(item, removed=False, reason=exception.message_of(e)))
        return results

    def _remove_orphan(self, item):
        uuid = item["instance_uuid"]
        if self.driver.inspect_instance({"uuid": uuid})["active"]:
            return False
        kind = item["kind"]
        instance = {"uuid": uuid}
        if kind == "domains":
            self.driver.remove_domain(uuid)
        elif kind == "dirs":
            self.driver.remove_instance_dir(uuid, item["dir_kind"])
        elif kind == "vifs":
            self.vif_driver.unplug(instance, item["vif"])
        elif kind == "volumes":
            self.volume_driver.disconnect_volume(instance, item["bdm"])
        elif kind == "filters":
            self.firewall_driver.unfilter_instance(instance, item["network_info"])
        else:
            raise ValueError(f"unknown kind of orphan {kind!r}")
        LOG.info("Removed orphan %s of %s on %s", kind, uuid, self.host)
        return True

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
            self.teardown(instance, nw, bdms)
            self.conductor.instance_update(ctxt, instance_uuid, {
                "vm_state": states.ERROR, "task_state": None, "power_state": states.NOSTATE,
                "fault_message": f"Build failed on {self.host}: {e}"})
            return
        self.conductor.instance_update(
            ctxt, instance_uuid,
            {"vm_state": states.ACTIVE, "task_state": None, "power_state": states.RUNNING,
             "launched_at": utcnow().isoformat()},
            expected={"task_state": states.SPAWNING})

    def teardown(self, instance, nw, bdms, destroy_disks=True):
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
            failures = self.teardown(instance, info["network_info"],
                                     info["block_device_info"])
        if failures:
            self.conductor.instance_update(ctxt, instance_uuid, {
                "vm_state": states.ERROR, "task_state": None,
                "fault_message": "Delete left resources: " + "; ".join(failures)})
            return
        self.conductor.instance_destroyed(ctxt, instance_uuid, self.host)

    # --- RPC: power (stop, start, reboot), driven by the conductor -----------
    def power_action(self, ctxt, instance_uuid, action, request_id, reboot_type=None):
        """Run ``action`` once per request (the conductor may ask again after a
        crash); returns the power state afterwards."""
        def run():
            info = self.conductor.instance_get(ctxt, instance_uuid)
            instance = info["instance"]
            with self.event(ctxt, instance_uuid, f"compute_{action}_instance"):
                if action == "stop":
                    self.driver.power_off(instance)
                elif action == "start":
                    self.driver.power_on(instance)
                else:
                    self.driver.reboot(instance, info.get("network_info"),
                                       info.get("block_device_info"), reboot_type)
            return self.driver.get_power_state(instance)
        return self.journal.run(f"power:{instance_uuid}", f"{action}:{request_id}", None, run,
                                wait=self.step_wait)

    # --- RPC: live migration (see compute.live_migration) -----------------
    @rpc.refusals
    def check_can_live_migrate_destination(self, ctxt, instance_uuid, source, block_migration,
                                           instance_info):
        return self.live.check_destination(ctxt, instance_uuid, source, block_migration,
                                           instance_info)

    @rpc.refusals
    def check_can_live_migrate_source(self, ctxt, instance_uuid, dest_check_data,
                                      instance_info):
        return self.live.check_source(ctxt, instance_uuid, dest_check_data, instance_info)

    @rpc.refusals
    def estimate_live_migration(self, ctxt, instance_uuid, instance_info):
        """2.1: what a live migration from here would meet (the dry run's
        prediction); reads only."""
        return self.driver.migration_estimate(instance_info["instance"])

    @rpc.refusals
    def pre_live_migration(self, ctxt, migration_id, epoch, migrate_data, instance_info):
        return self.live.pre_at_destination(ctxt, migration_id, epoch, migrate_data,
                                            instance_info)

    @rpc.refusals
    def live_migration_start(self, ctxt, migration_id, epoch, dest, migrate_data,
                             instance_info, tuning=None):
        return self.live.start(ctxt, migration_id, epoch, dest, migrate_data, instance_info,
                               tuning)

    @rpc.refusals
    def live_migration_steer(self, ctxt, migration_id, epoch, action, instance_info):
        return self.live.steer(ctxt, migration_id, epoch, action, instance_info)

    @rpc.refusals
    def live_migration_tune(self, ctxt, migration_id, epoch, values, instance_info):
        """2.2: the user's bandwidth and max downtime for a running job."""
        return self.live.tune(ctxt, migration_id, epoch, values, instance_info)

    @rpc.refusals
    def post_live_migration_at_source(self, ctxt, migration_id, epoch, migrate_data,
                                      instance_info):
        return self.live.post_at_source(ctxt, migration_id, epoch, migrate_data,
                                        instance_info)

    @rpc.refusals
    def post_live_migration_at_destination(self, ctxt, migration_id, epoch, migrate_data,
                                           instance_info):
        return self.live.post_at_destination(ctxt, migration_id, epoch, migrate_data,
                                             instance_info)

    @rpc.refusals
    def rollback_live_migration_at_destination(self, ctxt, migration_id, epoch, migrate_data,
                                               destroy_disks, instance_info):
        return self.live.rollback_at_destination(ctxt, migration_id, epoch, migrate_data,
                                                 destroy_disks, instance_info)

    @rpc.refusals
    def rollback_live_migration_at_source(self, ctxt, migration_id, epoch, instance_info):
        return self.live.rollback_at_source(ctxt, migration_id, epoch, instance_info)

    # --- RPC: cold migration and resize (see compute.resize) ------------------
    @rpc.refusals
    def prep_resize(self, ctxt, migration_id, epoch, context):
        return self.resizes.prep_resize(ctxt, migration_id, epoch, context)

    @rpc.refusals
    def resize_instance(self, ctxt, migration_id, epoch, context):
        return self.resizes.resize_instance(ctxt, migration_id, epoch, context)

    @rpc.refusals
    def rollback_resize_at_source(self, ctxt, migration_id, epoch, context):
        return self.resizes.rollback_at_source(ctxt, migration_id, epoch, context)

    @rpc.refusals
    def finish_resize(self, ctxt, migration_id, epoch, context, disk_info):
        return self.resizes.finish_resize(ctxt, migration_id, epoch, context, disk_info)

    @rpc.refusals
    def confirm_resize(self, ctxt, migration_id, epoch, context):
        return self.resizes.confirm_resize(ctxt, migration_id, epoch, context)

    @rpc.refusals
    def revert_resize(self, ctxt, migration_id, epoch, context):
        return self.resizes.revert_resize(ctxt, migration_id, epoch, context)

    @rpc.refusals
    def finish_revert_resize(self, ctxt, migration_id, epoch, context):
        return self.resizes.finish_revert_resize(ctxt, migration_id, epoch, context)
