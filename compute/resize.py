"""Cold migration and resize on the hosts: idempotent steps the conductor calls.

The conductor that owns the move (:mod:`conductor.flows.cold`) calls each
step and records its outcome; no host casts to another. Every step gets the
migration's context (the migration, its instance with network_info and
block_device_info, both compute nodes and both flavors) with the call, runs
once per (migration, step) through the host's journal, and carries the
owner's epoch.

    destination  prep_resize           can this host take the guest?
    source       resize_instance       power off, set the files aside in
                                       <uuid>_resize, copy the disks; -> disk_info
    destination  finish_resize         networking, volumes, domain; started if it ran
    source       confirm_resize        the set-aside files and old domain removed
    destination  revert_resize         everything of the guest removed here
    source       finish_revert_resize  the guest back from <uuid>_resize
    source       rollback_resize_at_source
                                       after a failed copy: partial files on the
                                       destination removed, the originals back,
                                       volumes reconnected, powered on as before
"""

from oslo_log import log as logging

from compute import steps, transfer
from godwit import exception, states

LOG = logging.getLogger(__name__)


def power_on_after(migration):
    return migration.get("old_vm_state") != states.STOPPED


def dest_info(context):
    node = context["dest_node"]
    return {"host": node["host"], "address": node.get("host_ip") or node["host"],
            "instances_path": node["instances_path"]}


def with_flavor(instance, flavor):
    return dict(instance, instance_type_id=flavor["id"], memory_mb=flavor["memory_mb"],
                vcpus=flavor["vcpus"], root_gb=flavor["root_gb"],
                ephemeral_gb=flavor["ephemeral_gb"])


class Resizes:
    """Both sides of cold migration and resize for one compute host."""

    def __init__(self, manager):
        self.manager = manager
        self._transfer = None

    @property
    def transfer(self):
        if self._transfer is None:
            self._transfer = transfer.load(self.manager.conf)
        return self._transfer

    def _driver(self):
        if not hasattr(self.manager.driver, "migrate_disk_and_power_off"):
            raise exception.HypervisorError(
                host=self.manager.host,
                reason=f"{type(self.manager.driver).__name__} cannot cold-migrate")
        return self.manager.driver

    def _step(self, migration_id, step, epoch, fn, instance):
        m = self.manager
        return m.journal.run(migration_id, step, epoch, fn, wait=m.step_wait,
                             after=lambda name: m.step_done(name, instance["uuid"]))

    @staticmethod
    def _parts(context):
        return (context["migration"], context["instance"], context["network_info"],
                context["block_device_info"])

    # --- destination: prep_resize ---------------------------------------------
    def prep_resize(self, ctxt, migration_id, epoch, context):
        m = self.manager
        migration, instance, _nw, _bdms = self._parts(context)

        def check():
            with m.event(ctxt, instance["uuid"], "compute_prep_resize"), \
                    m.notifier.phase(ctxt, "resize_prep", instance):
                self._driver().check_can_receive(instance, context["new_flavor"])
            return True
        return self._step(migration_id, "prep_resize", epoch, check, instance)

    # --- source: resize_instance -----------------------------------------------
    def resize_instance(self, ctxt, migration_id, epoch, context):
        m = self.manager
        migration, instance, _nw, bdms = self._parts(context)

        def copy():
            with m.event(ctxt, instance["uuid"], "compute_resize_instance"), \
                    m.notifier.phase(ctxt, "resize", instance):
                driver = self._driver()
                m.volume_driver.disconnect_all(instance, bdms)
                return driver.migrate_disk_and_power_off(
                    instance, migration, dest_info(context), context["new_flavor"],
                    self.transfer)
        return self._step(migration_id, "resize_instance", epoch, copy, instance)

    def rollback_at_source(self, ctxt, migration_id, epoch, context):
        """The copy failed or was cut short: the guest back as it was here."""
        m = self.manager
        migration, instance, nw, bdms = self._parts(context)

        def undo():
            with m.event(ctxt, instance["uuid"], "compute_rollback_resize_at_source"):
                problems = steps.run_all([
                    (f"partial copy on {migration['dest_compute']}",
                     lambda: self._driver().cleanup_failed_migration(
                         instance, migration, dest_info(context), self.transfer)),
                    (f"volumes on {m.host}", lambda: m.volume_driver.connect_all(instance,
                                                                                  bdms)),
                    (f"networking on {m.host}", lambda: (
                        m.vif_driver.plug_all(instance, nw),
                        m.firewall_driver.apply_instance_filter(instance, nw))),
                    (f"power on {m.host}", lambda: power_on_after(migration)
                     and m.driver.power_on(instance))],
                    purpose="undoing the copy")
            if problems:
                raise exception.HypervisorError(host=m.host, reason="; ".join(problems))
            return m.driver.get_power_state(instance)
        return self._step(migration_id, "rollback_resize_at_source", epoch, undo, instance)

    # --- destination: finish_resize --------------------------------------------
    def finish_resize(self, ctxt, migration_id, epoch, context, disk_info):
        m = self.manager
        migration, instance, nw, bdms = self._parts(context)

        def build():
            with m.event(ctxt, instance["uuid"], "compute_finish_resize"), \
                    m.notifier.phase(ctxt, "resize_finish", instance):
                m.vif_driver.plug_all(instance, nw)
                m.firewall_driver.apply_instance_filter(instance, nw)
                m.volume_driver.connect_all(instance, bdms)
                m.driver.finish_migration(instance, migration, disk_info, nw, bdms,
                                          context["new_flavor"], power_on_after(migration))
            return m.driver.get_power_state(instance)
        return self._step(migration_id, "finish_resize", epoch, build, instance)

    # --- source: confirm_resize -----------------------------------------------
    def confirm_resize(self, ctxt, migration_id, epoch, context):
        m = self.manager
        migration, instance, nw, _bdms = self._parts(context)

        def clean():
            with m.event(ctxt, instance["uuid"], "compute_confirm_resize"), \
                    m.notifier.phase(ctxt, "resize_confirm", instance):
                work = [("files and domain", lambda: self._driver().confirm_migration(
                    instance, migration))]
                if migration["source_compute"] != migration["dest_compute"]:
                    work += [("filter",
                              lambda: m.firewall_driver.unfilter_instance(instance, nw)),
                             ("VIFs", lambda: m.vif_driver.unplug_all(instance, nw))]
                problems = steps.run_all(work, m.host, "confirm resize")
            if problems:
                raise exception.HypervisorError(
                    host=m.host, reason="confirm left the source unclean: " +
                    "; ".join(problems))
            return True
        return self._step(migration_id, "confirm_resize", epoch, clean, instance)

    # --- destination: revert_resize (also the rollback of a failed finish) ------
    def revert_resize(self, ctxt, migration_id, epoch, context):
        m = self.manager
        migration, instance, nw, bdms = self._parts(context)

        def teardown():
            with m.event(ctxt, instance["uuid"], "compute_revert_resize"), \
                    m.notifier.phase(ctxt, "resize_revert", instance):
                if migration["source_compute"] == migration["dest_compute"]:
                    problems = []  # one host: finish_revert_resize rebuilds in place
                    m.driver.power_off(instance)
                else:
                    problems = m.teardown(instance, nw, bdms)
            if problems:
                raise exception.HypervisorError(
                    host=m.host, reason=f"revert left {m.host} unclean: {'; '.join(problems)}")
            return True
        return self._step(migration_id, "revert_resize", epoch, teardown, instance)

    # --- source: finish_revert_resize -------------------------------------------
    def finish_revert_resize(self, ctxt, migration_id, epoch, context):
        m = self.manager
        migration, instance, nw, bdms = self._parts(context)
        restored = with_flavor(instance, context["old_flavor"])

        def restore():
            with m.event(ctxt, instance["uuid"], "compute_finish_revert_resize"):
                problems = steps.run_all([
                    ("domain and files", lambda: self._driver().finish_revert_migration(
                        restored, migration, nw, bdms, power_on_after(migration))),
                    ("volumes", lambda: m.volume_driver.connect_all(restored, bdms)),
                    ("VIFs", lambda: m.vif_driver.plug_all(restored, nw)),
                    ("filter", lambda: m.firewall_driver.apply_instance_filter(restored, nw))],
                    m.host, "finish revert")
            if problems:
                raise exception.HypervisorError(host=m.host, reason="; ".join(problems))
            return m.driver.get_power_state(restored)
        return self._step(migration_id, "finish_revert_resize", epoch, restore, instance)
