"""Cold migration and resize on the hosts, step by step (all casts, as in Nova).

    conductor --prep_resize--> destination    accepted -> pre-migrating
    destination --resize_instance--> source   -> migrating: power off, copy disks
                                              -> post-migrating, instance.host = dest
    source --finish_resize--> destination     -> finished: guest built and started,
                                                 vm_state RESIZED (VERIFY_RESIZE)
    API --confirm_resize--> source            confirming -> confirmed: source cleaned
    API --revert_resize--> destination        reverting: destination torn down
    destination --finish_revert_resize--> source  -> reverted: guest back, old flavor

Failures put the guest back where it can run: prep_resize failing asks the
conductor for the next host (reschedule); a failed copy removes the partial
files and restores the source; a failed finish tears the destination down
and hands the guest back to the source (migration ``error``). A failed
confirm leaves the guest running on the destination and names the
leftovers. Each step is idempotent and checks the migration's status first,
so a repeated cast does nothing twice.
"""

from oslo_log import log as logging

from compute import steps, transfer
from godwit import exception, states

LOG = logging.getLogger(__name__)


def _power_on(migration):
    return migration.get("old_vm_state") != states.STOPPED


def _flavor_values(flavor):
    return {"instance_type_id": flavor["id"], "memory_mb": flavor["memory_mb"],
            "vcpus": flavor["vcpus"], "root_gb": flavor["root_gb"],
            "ephemeral_gb": flavor["ephemeral_gb"]}


class Resizes:
    """Both sides of cold migration and resize for one compute host."""

    def __init__(self, manager):
        self.m = manager
        self._transfer = None

    @property
    def transfer(self):
        if self._transfer is None:
            self._transfer = transfer.load(self.m.conf)
        return self._transfer

    def _context(self, ctxt, migration_id):
        c = self.m.conductor.migration_context(ctxt, migration_id)
        return (c["migration"], c["instance"], c["network_info"], c["block_device_info"],
                c)

    def _driver(self):
        if not hasattr(self.m.driver, "migrate_disk_and_power_off"):
            raise exception.HypervisorError(
                host=self.m.host, reason=f"{type(self.m.driver).__name__} cannot cold-migrate")
        return self.m.driver

    def _transition(self, ctxt, migration, old, new, **kwargs):
        migration = self.m.conductor.migration_transition(ctxt, migration["id"], old, new,
                                                          **kwargs)
        return migration

    def _fail(self, ctxt, migration, status, reason, instance_values):
        LOG.warning("Migration %s failed: %s", migration["id"], reason)
        self.m.conductor.migration_transition(
            ctxt, migration["id"], status, states.ERROR_MIGRATION,
            values={"error_message": reason[:4000]},
            instance_values=dict(instance_values, task_state=None))

    @staticmethod
    def _dest_info(context):
        node = context["dest_node"]
        return {"host": node["host"], "address": node.get("host_ip") or node["host"],
                "instances_path": node["instances_path"]}

    # --- destination: prep_resize ---------------------------------------------
    def prep_resize(self, ctxt, migration_id):
        m = self.m
        migration, instance, _nw, _bdms, _c = self._context(ctxt, migration_id)
        if migration["status"] != states.ACCEPTED or migration["dest_compute"] != m.host:
            LOG.info("prep_resize for migration %s: nothing to do here", migration_id)
            return
        try:
            with m.event(ctxt, instance["uuid"], "compute_prep_resize"), \
                    m.notifier.phase(ctxt, "resize_prep", instance):
                self._driver().check_can_receive(instance, _c["new_flavor"])
                self._transition(ctxt, migration, states.ACCEPTED, states.PRE_MIGRATING)
        except Exception as e:
            m.conductor.resize_reschedule(ctxt, migration_id, m.host, str(e))
            return
        m.compute_rpc.resize_instance(ctxt, migration["source_compute"], migration_id)

    # --- source: resize_instance -----------------------------------------------
    def resize_instance(self, ctxt, migration_id):
        m = self.m
        migration, instance, nw, bdms, context = self._context(ctxt, migration_id)
        if migration["status"] != states.PRE_MIGRATING:
            LOG.info("resize_instance for migration %s in %s: nothing to do", migration_id,
                     migration["status"])
            return
        migration = self._transition(ctxt, migration, states.PRE_MIGRATING,
                                     states.MIGRATING_COLD,
                                     instance_values={"task_state": states.RESIZE_MIGRATING})
        dest_info = self._dest_info(context)
        try:
            with m.event(ctxt, instance["uuid"], "compute_resize_instance"), \
                    m.notifier.phase(ctxt, "resize", instance):
                self._driver()
                m.volume_driver.disconnect_all(instance, bdms)
                disk_info = m.driver.migrate_disk_and_power_off(
                    instance, migration, dest_info, context["new_flavor"], self.transfer)
        except Exception as e:
            problems = self._undo_copy(instance, migration, dest_info, bdms, nw)
            self._fail(ctxt, migration, states.MIGRATING_COLD,
                       f"resize_instance on {m.host} failed: {exception.message_of(e)}" +
                       (f"; undo incomplete: {'; '.join(problems)}" if problems else ""),
                       {"vm_state": migration["old_vm_state"] or states.ACTIVE,
                        "power_state": m.driver.get_power_state(instance)})
            return
        self._transition(ctxt, migration, states.MIGRATING_COLD, states.POST_MIGRATING,
                         instance_values={"host": migration["dest_compute"],
                                          "node": migration["dest_node"],
                                          "task_state": states.RESIZE_MIGRATED,
                                          "power_state": states.SHUTDOWN})
        m.compute_rpc.finish_resize(ctxt, migration["dest_compute"], migration_id, disk_info)

    def _undo_copy(self, instance, migration, dest_info, bdms, nw):
        """The copy failed: the guest goes back to how it was on this host."""
        m = self.m
        return steps.run_all([
            (f"partial copy on {migration['dest_compute']}",
             lambda: m.driver.cleanup_failed_migration(instance, migration, dest_info,
                                                       self.transfer)),
            (f"volumes on {m.host}", lambda: m.volume_driver.connect_all(instance, bdms)),
            (f"power on {m.host}",
             lambda: _power_on(migration) and m.driver.power_on(instance))],
            purpose="undoing the copy")

    # --- destination: finish_resize --------------------------------------------
    def finish_resize(self, ctxt, migration_id, disk_info):
        m = self.m
        migration, instance, nw, bdms, context = self._context(ctxt, migration_id)
        if migration["status"] != states.POST_MIGRATING:
            return
        new_flavor = context["new_flavor"]
        try:
            with m.event(ctxt, instance["uuid"], "compute_finish_resize"), \
                    m.notifier.phase(ctxt, "resize_finish", instance):
                m.vif_driver.plug_all(instance, nw)
                m.firewall_driver.apply_instance_filter(instance, nw)
                m.volume_driver.connect_all(instance, bdms)
                m.driver.finish_migration(instance, migration, disk_info, nw, bdms,
                                          new_flavor, _power_on(migration))
        except Exception as e:
            # Hand the guest back: tear this host down, the source restores it.
            problems = m._teardown(instance, nw, bdms)
            reason = f"finish_resize on {m.host} failed: {exception.message_of(e)}"
            if problems:
                reason += f"; left on {m.host}: {'; '.join(problems)}"
            m.compute_rpc.finish_revert_resize(ctxt, migration["source_compute"],
                                               migration_id, reason)
            return
        values = dict(_flavor_values(new_flavor), vm_state=states.RESIZED, task_state=None,
                      power_state=m.driver.get_power_state(instance))
        self._transition(ctxt, migration, states.POST_MIGRATING, states.FINISHED,
                         instance_values=values)

    # --- source: confirm_resize -----------------------------------------------
    def confirm_resize(self, ctxt, migration_id):
        m = self.m
        migration, instance, nw, _bdms, _c = self._context(ctxt, migration_id)
        if migration["status"] != states.CONFIRMING:
            return
        with m.event(ctxt, instance["uuid"], "compute_confirm_resize"), \
                m.notifier.phase(ctxt, "resize_confirm", instance):
            work = [("files and domain", lambda: self._driver().confirm_migration(
                instance, migration))]
            if migration["source_compute"] != migration["dest_compute"]:
                work += [("filter", lambda: m.firewall_driver.unfilter_instance(instance, nw)),
                         ("VIFs", lambda: m.vif_driver.unplug_all(instance, nw))]
            problems = steps.run_all(work, m.host, "confirm resize")
        vm_values = {"vm_state": migration["old_vm_state"] or states.ACTIVE,
                     "task_state": None}
        if problems:
            self._fail(ctxt, migration, states.CONFIRMING,
                       "confirm left the source unclean: " + "; ".join(problems), vm_values)
            return
        self._transition(ctxt, migration, states.CONFIRMING, states.CONFIRMED,
                         instance_values=vm_values)

    # --- destination: revert_resize -------------------------------------------
    def revert_resize(self, ctxt, migration_id):
        m = self.m
        migration, instance, nw, bdms, _c = self._context(ctxt, migration_id)
        if migration["status"] != states.REVERTING:
            return
        with m.event(ctxt, instance["uuid"], "compute_revert_resize"), \
                m.notifier.phase(ctxt, "resize_revert", instance):
            if migration["source_compute"] == migration["dest_compute"]:
                problems = []  # one host: finish_revert_resize rebuilds in place
                m.driver.power_off(instance)
            else:
                problems = m._teardown(instance, nw, bdms)
        reason = None
        if problems:
            reason = f"revert left {m.host} unclean: {'; '.join(problems)}"
        m.compute_rpc.finish_revert_resize(ctxt, migration["source_compute"], migration_id,
                                           reason)

    # --- source: finish_revert_resize (also the way back after a failure) -------
    def finish_revert_resize(self, ctxt, migration_id, failure=None):
        m = self.m
        migration, instance, nw, bdms, context = self._context(ctxt, migration_id)
        expected = states.POST_MIGRATING if failure and migration["status"] == \
            states.POST_MIGRATING else states.REVERTING
        if migration["status"] != expected:
            return
        old_flavor = context["old_flavor"]
        restored = dict(instance, **_flavor_values(old_flavor))
        with m.event(ctxt, instance["uuid"], "compute_finish_revert_resize"):
            problems = steps.run_all([
                ("domain and files", lambda: self._driver().finish_revert_migration(
                    restored, migration, nw, bdms, _power_on(migration))),
                ("volumes", lambda: m.volume_driver.connect_all(restored, bdms)),
                ("VIFs", lambda: m.vif_driver.plug_all(restored, nw)),
                ("filter", lambda: m.firewall_driver.apply_instance_filter(restored, nw))],
                m.host, "finish revert")
        values = dict(_flavor_values(old_flavor), host=migration["source_compute"],
                      node=migration["source_node"], task_state=None,
                      vm_state=migration["old_vm_state"] or states.ACTIVE,
                      power_state=m.driver.get_power_state(restored))
        if problems:
            values.update(vm_state=states.ERROR, fault_message="; ".join(problems))
        reasons = [r for r in (failure, "; ".join(problems)) if r]
        if reasons:
            self.m.conductor.migration_transition(
                ctxt, migration["id"], expected, states.ERROR_MIGRATION,
                values={"error_message": "; ".join(reasons)[:4000]}, instance_values=values)
            return
        self._transition(ctxt, migration, states.REVERTING, states.REVERTED,
                         instance_values=values)

