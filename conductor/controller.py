"""The conductor's side of the controllers' RPC interface (godwit/controller.py).

Every call goes through the REST API's own code (api.compute_api.ComputeAPI):
the same input checks (the REST schemas), the same policy, the same refusals,
the same intents written to the database before anything is woken. Only the
transport differs. The two calls that run checks in the conductor
(live migration, cold migration and resize) are run here directly instead of
over RPC to another conductor: the caller already waits on this one.

Trust: a context arrives as the caller wrote it. Its roles are what the
broker account vouches for (docs/controller.md: give each controller its own
RabbitMQ user, limited to this topic); its ``is_admin`` flag is not taken on
trust but derived from the roles again, as the REST API derives it.
"""

import oslo_messaging as messaging

from api import compute_api, schemas, servers
from conductor import rpcapi as conductor_rpcapi
from godwit import controller, exception, rpc


class _HereFirst(conductor_rpcapi.ConductorClient):
    """The conductor client the REST code expects, with the calls that check and
    start a move answered by this conductor instead of another's RPC server."""

    def __init__(self, manager, transport):
        # Its other calls go to any conductor: under the manager's cap.
        super().__init__(transport, version_cap=manager.conductor_cap)
        self.manager = manager

    def live_migrate_instance(self, ctxt, instance_uuid, requested_host, block_migration):
        return self.manager.live_migrate_instance(ctxt, instance_uuid, requested_host,
                                                  block_migration)

    def migrate_server(self, ctxt, instance_uuid, flavor_id, requested_host):
        return self.manager.migrate_server(ctxt, instance_uuid, flavor_id, requested_host)

    def live_migration_dry_run(self, ctxt, instance_uuid, requested_host, block_migration):
        return self.manager.live_migration_dry_run(ctxt, instance_uuid, requested_host,
                                                   block_migration)


def _caller(ctxt):
    """The caller's context with ``is_admin`` derived from its roles, which must
    be a list of strings (``"admin" in "xadminx"`` is true of a string)."""
    roles = ctxt.roles
    if roles is None:
        roles = []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise exception.Invalid(reason=f"the context's roles must be a list of strings, "
                                       f"not {roles!r}")
    ctxt.is_admin = "admin" in roles
    return ctxt


def _server_id(value):
    if not isinstance(value, str) or not value:
        raise exception.Invalid(reason=f"server_id must be a server's id (a string), not "
                                       f"{value!r}")
    return value


def _migration_id(value):
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise exception.Invalid(reason=f"migration_id must be a migration's id or uuid, "
                                       f"not {value!r}")
    return str(value)


_view = controller.migration_view


class ControllerEndpoint:
    target = messaging.Target(version=controller.VERSION)

    def __init__(self, manager, transport):
        self.api = compute_api.ComputeAPI(manager.conf, manager.db,
                                          _HereFirst(manager, transport))

    @rpc.refusals
    def live_migrate(self, ctxt, server_id, host=None, block_migration="auto"):
        schemas.check(schemas.MIGRATE_LIVE_V225, {"os-migrateLive": {
            "host": host, "block_migration": block_migration}})
        block = "auto" if block_migration == "auto" else schemas.to_bool(block_migration)
        return _view(self.api.live_migrate(_caller(ctxt), _server_id(server_id), host,
                                           block))

    @rpc.refusals
    def live_migration_dry_run(self, ctxt, server_id, host=None, block_migration="auto"):
        schemas.check(schemas.LIVE_MIGRATION_DRY_RUN, {"host": host,
                                                       "block_migration": block_migration})
        block = "auto" if block_migration == "auto" else schemas.to_bool(block_migration)
        return self.api.live_migrate_dry_run(_caller(ctxt), _server_id(server_id), host,
                                             block)

    @rpc.refusals
    def migrate(self, ctxt, server_id, host=None):
        schemas.check(schemas.MIGRATE[0][2], {"migrate": {"host": host}})
        return _view(self.api.migrate(_caller(ctxt), _server_id(server_id), host))

    @rpc.refusals
    def resize(self, ctxt, server_id, flavor):
        schemas.check(schemas.RESIZE[0][2], {"resize": {"flavorRef": flavor}})
        return _view(self.api.resize(_caller(ctxt), _server_id(server_id), flavor))

    @rpc.refusals
    def confirm_resize(self, ctxt, server_id):
        return _view(self.api.confirm_resize(_caller(ctxt), _server_id(server_id)))

    @rpc.refusals
    def revert_resize(self, ctxt, server_id):
        return _view(self.api.revert_resize(_caller(ctxt), _server_id(server_id)))

    @rpc.refusals
    def abort(self, ctxt, server_id, migration_id):
        # As REST at its newest microversion: a queued or preparing move may be
        # aborted too.
        return _view(self.api.abort_live_migration(
            _caller(ctxt), _server_id(server_id), _migration_id(migration_id),
            allow_early=True))

    @rpc.refusals
    def force_complete(self, ctxt, server_id, migration_id):
        return _view(self.api.force_complete(_caller(ctxt), _server_id(server_id),
                                             _migration_id(migration_id)))

    def _tune(self, ctxt, server_id, migration_id, action, value):
        # The REST handlers' validation, with its messages.
        key = servers.TUNING_ACTIONS[action][0]
        value = servers.tuning_value(action, {key: value})
        return _view(self.api.tune_live_migration(_caller(ctxt), _server_id(server_id),
                                                  _migration_id(migration_id), action, value))

    @rpc.refusals
    def live_migration_set_speed(self, ctxt, server_id, migration_id, mib_per_s):
        """1.2: as POST .../action {"set-speed": {"mib_per_s": N}}."""
        return self._tune(ctxt, server_id, migration_id, "set-speed", mib_per_s)

    @rpc.refusals
    def live_migration_set_downtime(self, ctxt, server_id, migration_id, ms):
        """1.2: as POST .../action {"set-downtime": {"ms": N}}."""
        return self._tune(ctxt, server_id, migration_id, "set-downtime", ms)

    @rpc.refusals
    def migration(self, ctxt, migration_id):
        ctxt = _caller(ctxt)
        self.api.authorize(ctxt, "os_compute_api:os-migrations:index")
        return _view(self.api.migration_by_id(_migration_id(migration_id)))

    @rpc.refusals
    def migrations(self, ctxt, server_id):
        ctxt = _caller(ctxt)
        server_id = _server_id(server_id)
        self.api.get_server(ctxt, server_id)    # 404 for a server that is not there
        return [_view(m) for m in self.api.list_migrations(ctxt,
                                                           {"instance_uuid": server_id})]
