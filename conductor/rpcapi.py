"""Client for the conductor (RPC topic ``conductor``).

Two kinds of caller use it: the API, which hands the conductor work
(build, delete, live-migrate), and the compute agents, which own no database
credentials and read and write state only through these methods.

Version history:

* 1.0 - Initial version: service_report, service_heartbeat, instance_get,
  instance_update, instance_destroyed, migration_context,
  migration_transition, migration_update, action_event, build_instance,
  delete_instance, live_migrate_instance.
* 1.1 - migrate_server (cold migration and resize), resize_reschedule.
* 1.2 - migration_advance (several edges in one transaction, optionally
  returning the migration context).
"""

from godwit import rpc

TOPIC = "conductor"
VERSION_CAP = "1.2"


class ConductorAPI:
    def __init__(self, transport, timeout=None, long_timeout=1800, version_cap=VERSION_CAP):
        self.client = rpc.get_client(transport, TOPIC, version_cap=version_cap,
                                     timeout=timeout)
        self.long_timeout = long_timeout

    # --- for compute agents: their window onto the database ---------------
    def service_report(self, ctxt, host, binary, topic, version, node_info):
        """Register (or re-register) a service and its compute node."""
        return self.client.call(ctxt, "service_report", host=host, binary=binary, topic=topic,
                                version=version, node_info=node_info)

    def service_heartbeat(self, ctxt, host, binary):
        return self.client.call(ctxt, "service_heartbeat", host=host, binary=binary)

    def instance_get(self, ctxt, instance_uuid):
        """The instance with its network_info and block_device_info."""
        return self.client.call(ctxt, "instance_get", instance_uuid=instance_uuid)

    def instance_update(self, ctxt, instance_uuid, values, expected=None):
        return self.client.call(ctxt, "instance_update", instance_uuid=instance_uuid,
                                values=values, expected=expected)

    def instance_destroyed(self, ctxt, instance_uuid, host):
        return self.client.call(ctxt, "instance_destroyed", instance_uuid=instance_uuid,
                                host=host)

    def migration_context(self, ctxt, migration_id):
        """The migration, its instance, network_info and block_device_info, in one trip."""
        return self.client.call(ctxt, "migration_context", migration_id=migration_id)

    def migration_transition(self, ctxt, migration_id, old, new, values=None,
                             instance_values=None, instance_expected=None):
        """CAS a migration's status, and optionally its instance, in one transaction."""
        return self.client.call(ctxt, "migration_transition", migration_id=migration_id,
                                old=old, new=new, values=values,
                                instance_values=instance_values,
                                instance_expected=instance_expected)

    def can_advance(self):
        return self.client.can_send_version("1.2")

    def migration_advance(self, ctxt, migration_id, path, context=False):
        """CAS the migration along ``path`` (several edges) in one transaction.

        With ``context`` returns what migration_context does, else the migration.
        """
        return self.client.prepare(version="1.2").call(
            ctxt, "migration_advance", migration_id=migration_id, path=list(path),
            context=context)

    def migration_update(self, ctxt, migration_id, values, expected_status=None):
        """Progress and other non-status fields; a no-op if status moved on."""
        return self.client.call(ctxt, "migration_update", migration_id=migration_id,
                                values=values, expected_status=expected_status)

    def action_event(self, ctxt, instance_uuid, event, host, start_time, finish_time,
                     result, traceback=None):
        """Record one step of the instance action of this request (a cast)."""
        self.client.cast(ctxt, "action_event", instance_uuid=instance_uuid, event=event,
                         host=host, start_time=start_time, finish_time=finish_time,
                         result=result, traceback=traceback)

    # --- for the API: work for the conductor ---------------------------------
    def build_instance(self, ctxt, instance_uuid, requested_host=None):
        self.client.cast(ctxt, "build_instance", instance_uuid=instance_uuid,
                         requested_host=requested_host)

    def delete_instance(self, ctxt, instance_uuid):
        self.client.cast(ctxt, "delete_instance", instance_uuid=instance_uuid)

    def live_migrate_instance(self, ctxt, instance_uuid, requested_host, block_migration):
        """Run the pre-checks (synchronously) and start the migration.

        Returns the migration once a destination accepted it; raises the
        check's error otherwise (the migration is then in status error).
        """
        # The checks call the destination, which calls the source: allow for
        # those nested calls (and the scheduler trying several hosts).
        return self.client.prepare(timeout=self.long_timeout).call(
            ctxt, "live_migrate_instance", instance_uuid=instance_uuid,
            requested_host=requested_host, block_migration=block_migration)

    def migrate_server(self, ctxt, instance_uuid, flavor_id, requested_host):
        """Check and start a cold migration (flavor_id None) or a resize."""
        return self.client.prepare(timeout=self.long_timeout, version="1.1").call(
            ctxt, "migrate_server", instance_uuid=instance_uuid, flavor_id=flavor_id,
            requested_host=requested_host)

    def resize_reschedule(self, ctxt, migration_id, failed_host, reason):
        """From a destination whose prep_resize failed: try the next host."""
        self.client.prepare(version="1.1").cast(
            ctxt, "resize_reschedule", migration_id=migration_id, failed_host=failed_host,
            reason=reason)
