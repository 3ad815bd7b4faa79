"""Client for the compute agents (RPC topic ``compute``, server = host name).

Calls wait for the host's answer; casts return at once and the host reports
back through the conductor. As in Nova, the live migration itself is a cast
to the source, which then drives the destination with calls.

Version history:

* 1.0 - Initial version: build_and_run_instance, terminate_instance,
  check_can_live_migrate_destination, check_can_live_migrate_source,
  live_migration, pre_live_migration, post_live_migration_at_destination,
  rollback_live_migration_at_destination, ping.
* 1.1 - live_migration_abort, live_migration_force_complete.
* 1.2 - stop_instance, start_instance; cold migration and resize:
  prep_resize, resize_instance, finish_resize, confirm_resize, revert_resize,
  finish_revert_resize.
* 1.3 - instance_info (the instance, network_info and block_device_info the
  caller already holds) for check_can_live_migrate_destination,
  check_can_live_migrate_source, pre_live_migration and
  post_live_migration_at_destination, which then need not fetch it.
* 1.4 - reboot_instance.
"""

from godwit import rpc

TOPIC = "compute"
VERSION_CAP = "1.4"


class ComputeAPI:
    def __init__(self, transport, timeout=None, long_timeout=1800, version_cap=VERSION_CAP):
        self.client = rpc.get_client(transport, TOPIC, version_cap=version_cap,
                                     timeout=timeout)
        self.long_timeout = long_timeout

    def _at(self, host, timeout=None):
        return self.client.prepare(server=host, timeout=timeout)

    def _with_info(self, host, timeout, kwargs, instance_info):
        """Prepare a call that carries ``instance_info`` if the host takes it (1.3)."""
        if instance_info is not None and self.client.can_send_version("1.3"):
            kwargs["instance_info"] = instance_info
            return self.client.prepare(server=host, timeout=timeout, version="1.3")
        return self._at(host, timeout)

    def ping(self, ctxt, host, timeout=None):
        return self._at(host, timeout).call(ctxt, "ping")

    def build_and_run_instance(self, ctxt, host, instance_uuid):
        self._at(host).cast(ctxt, "build_and_run_instance", instance_uuid=instance_uuid)

    def terminate_instance(self, ctxt, host, instance_uuid):
        self._at(host).cast(ctxt, "terminate_instance", instance_uuid=instance_uuid)

    def check_can_live_migrate_destination(self, ctxt, dest, instance_uuid, source,
                                           block_migration, instance_info=None):
        kwargs = {"instance_uuid": instance_uuid, "source": source,
                  "block_migration": block_migration}
        return self._with_info(dest, None, kwargs, instance_info).call(
            ctxt, "check_can_live_migrate_destination", **kwargs)

    def check_can_live_migrate_source(self, ctxt, source, instance_uuid, dest_check_data,
                                      instance_info=None):
        kwargs = {"instance_uuid": instance_uuid, "dest_check_data": dest_check_data}
        return self._with_info(source, None, kwargs, instance_info).call(
            ctxt, "check_can_live_migrate_source", **kwargs)

    def live_migration(self, ctxt, source, instance_uuid, migration_id, dest, migrate_data):
        self._at(source).cast(ctxt, "live_migration", instance_uuid=instance_uuid,
                              migration_id=migration_id, dest=dest, migrate_data=migrate_data)

    def live_migration_abort(self, ctxt, source, migration_id):
        self.client.prepare(server=source, version="1.1").cast(
            ctxt, "live_migration_abort", migration_id=migration_id)

    def live_migration_force_complete(self, ctxt, source, migration_id):
        self.client.prepare(server=source, version="1.1").cast(
            ctxt, "live_migration_force_complete", migration_id=migration_id)

    def pre_live_migration(self, ctxt, dest, migration_id, migrate_data, instance_info=None):
        kwargs = {"migration_id": migration_id, "migrate_data": migrate_data}
        return self._with_info(dest, self.long_timeout, kwargs, instance_info).call(
            ctxt, "pre_live_migration", **kwargs)

    def post_live_migration_at_destination(self, ctxt, dest, migration_id, migrate_data,
                                           instance_info=None):
        kwargs = {"migration_id": migration_id, "migrate_data": migrate_data}
        return self._with_info(dest, self.long_timeout, kwargs, instance_info).call(
            ctxt, "post_live_migration_at_destination", **kwargs)

    def rollback_live_migration_at_destination(self, ctxt, dest, migration_id, migrate_data,
                                               destroy_disks):
        # A call, not Nova's cast: the source marks the migration failed only
        # once the destination says it is clean, so nothing is left behind
        # unnoticed.
        return self._at(dest, self.long_timeout).call(
            ctxt, "rollback_live_migration_at_destination", migration_id=migration_id,
            migrate_data=migrate_data, destroy_disks=destroy_disks)

    # --- 1.2: power, cold migration and resize (all casts, as in Nova) ---------
    def _cast12(self, ctxt, host, method, **kwargs):
        self.client.prepare(server=host, version="1.2").cast(ctxt, method, **kwargs)

    def stop_instance(self, ctxt, host, instance_uuid):
        self._cast12(ctxt, host, "stop_instance", instance_uuid=instance_uuid)

    def start_instance(self, ctxt, host, instance_uuid):
        self._cast12(ctxt, host, "start_instance", instance_uuid=instance_uuid)

    def reboot_instance(self, ctxt, host, instance_uuid, reboot_type):
        """A cast, as in Nova; the host reports the result in the instance."""
        self.client.prepare(server=host, version="1.4").cast(
            ctxt, "reboot_instance", instance_uuid=instance_uuid, reboot_type=reboot_type)

    def prep_resize(self, ctxt, dest, migration_id):
        self._cast12(ctxt, dest, "prep_resize", migration_id=migration_id)

    def resize_instance(self, ctxt, source, migration_id):
        self._cast12(ctxt, source, "resize_instance", migration_id=migration_id)

    def finish_resize(self, ctxt, dest, migration_id, disk_info):
        self._cast12(ctxt, dest, "finish_resize", migration_id=migration_id,
                     disk_info=disk_info)

    def confirm_resize(self, ctxt, source, migration_id):
        self._cast12(ctxt, source, "confirm_resize", migration_id=migration_id)

    def revert_resize(self, ctxt, dest, migration_id):
        self._cast12(ctxt, dest, "revert_resize", migration_id=migration_id)

    def finish_revert_resize(self, ctxt, source, migration_id, failure=None):
        self._cast12(ctxt, source, "finish_revert_resize", migration_id=migration_id,
                     failure=failure)
