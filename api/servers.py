"""/servers: the servers, their actions, migrations and instance actions."""

from api import schemas, views
from godwit import exception


def _flavors(req):
    return {f["id"]: f for f in req.api.list_flavors(req.context)}


def _limit(req):
    value = req.params.get("limit")
    if value is None:
        return None
    if not value.isdigit():
        raise exception.Invalid(reason=f"limit must be a non-negative integer, not {value!r}")
    return int(value)


def list_servers(req, detail=False):
    filters = {}
    for param, key in (("host", "host"), ("name", "name"), ("node", "node")):
        if req.params.get(param):
            filters[key] = req.params[param]
    status = req.params.get("status")
    if status:
        vm_state = views.STATUS_TO_VM_STATE.get(status.upper())
        if vm_state is None:
            raise exception.Invalid(reason=f"unknown status {status!r}; use one of "
                                           f"{', '.join(sorted(views.STATUS_TO_VM_STATE))}")
        filters["vm_state"] = vm_state
    all_projects = req.params.get("all_tenants", "0").lower() not in ("0", "false", "")
    instances = req.api.list_servers(req.context, filters, limit=_limit(req),
                                     marker=req.params.get("marker"),
                                     all_projects=all_projects)
    flavors = _flavors(req) if detail else {}
    return 200, {"servers": [views.server(req, i, flavors, brief=not detail)
                             for i in instances]}


def list_servers_detail(req):
    return list_servers(req, detail=True)


def show_server(req, server_id):
    instance = req.api.get_server(req.context, server_id)
    return 200, {"server": views.server(req, instance, _flavors(req))}


def create_server(req):
    schemas.validate(req, schemas.CREATE_SERVER, req.json)
    body = req.json["server"]
    instance = req.api.create_server(
        req.context, body["name"], body["flavorRef"], body.get("availability_zone"),
        block_devices=body.get("block_device_mapping_v2") or [],
        config_drive=schemas.to_bool(body.get("config_drive", False)),
        image_ref=body.get("imageRef") or "")
    view = views.server(req, instance, {}, brief=True)
    view.update({"OS-DCF:diskConfig": "MANUAL", "security_groups": [{"name": "default"}],
                 "adminPass": ""})
    return 202, {"server": view}


def delete_server(req, server_id):
    req.api.delete_server(req.context, server_id)
    return 204, None


def server_action(req, server_id):
    body = req.json
    if not isinstance(body, dict) or len(body) != 1:
        raise exception.Invalid(reason="the body must be an object with exactly one action, "
                                       'e.g. {"os-migrateLive": {...}}')
    name = next(iter(body))
    handler = ACTIONS.get(name)
    if handler is None:
        raise exception.Invalid(reason=f"there is no action {name!r}; Godwit supports "
                                       f"{', '.join(sorted(ACTIONS))}")
    return handler(req, server_id, body)


def migrate_live(req, server_id, body):
    schemas.validate(req, schemas.MIGRATE_LIVE, body)
    args = body["os-migrateLive"]
    block = args["block_migration"]
    block = "auto" if block == "auto" else schemas.to_bool(block)
    req.api.live_migrate(req.context, server_id, args.get("host"), block)
    return 202, None


def migrate(req, server_id, body):
    schemas.validate(req, schemas.MIGRATE, body)
    host = (body["migrate"] or {}).get("host")
    req.api.migrate(req.context, server_id, host)
    return 202, None


def resize(req, server_id, body):
    schemas.validate(req, schemas.RESIZE, body)
    req.api.resize(req.context, server_id, body["resize"]["flavorRef"])
    return 202, None


def _null_action(name, method, status):
    def handler(req, server_id, body):
        schemas.validate(req, schemas.null_action(name), body)
        getattr(req.api, method)(req.context, server_id)
        return status, None
    return handler


ACTIONS = {
    "os-migrateLive": migrate_live,
    "migrate": migrate,
    "resize": resize,
    "confirmResize": _null_action("confirmResize", "confirm_resize", 204),
    "revertResize": _null_action("revertResize", "revert_resize", 202),
    "os-stop": _null_action("os-stop", "stop", 202),
    "os-start": _null_action("os-start", "start", 202),
}


def list_server_migrations(req, server_id):
    if not req.api_version.matches("2.23"):
        raise exception.NotFound("Server migrations need API version 2.23 or later.")
    migrations = req.api.server_migrations(req.context, server_id)
    return 200, {"migrations": [views.server_migration(req, m) for m in migrations]}


def show_server_migration(req, server_id, migration_id):
    if not req.api_version.matches("2.23"):
        raise exception.NotFound("Server migrations need API version 2.23 or later.")
    m = req.api.server_migration(req.context, server_id, migration_id)
    return 200, {"migration": views.server_migration(req, m)}


def abort_server_migration(req, server_id, migration_id):
    if not req.api_version.matches("2.24"):
        raise exception.NotFound("Aborting a migration needs API version 2.24 or later.")
    req.api.abort_live_migration(req.context, server_id, migration_id,
                                 allow_early=req.api_version.matches("2.65"))
    return 202, None


def server_migration_action(req, server_id, migration_id):
    if not req.api_version.matches("2.22"):
        raise exception.NotFound("force_complete needs API version 2.22 or later.")
    if req.json != {"force_complete": None}:
        raise exception.Invalid(reason='the body must be {"force_complete": null}')
    req.api.force_complete(req.context, server_id, migration_id)
    return 202, None


def list_instance_actions(req, server_id):
    actions = req.api.list_actions(req.context, server_id)
    return 200, {"instanceActions": [views.action(a) for a in actions]}


def show_instance_action(req, server_id, request_id):
    action, events = req.api.get_action(req.context, server_id, request_id)
    view = views.action(action)
    view["events"] = [views.event(e) for e in events]
    return 200, {"instanceAction": view}
