"""/servers: the servers, their actions, migrations and instance actions."""

import json

from api import schemas, views
from api.query import limit_param, page, timestamp
from godwit import exception, states

# Server list filters anyone may use; the rest need allow_all_filters (admins)
# and are dropped silently for others, as in Nova.
USER_FILTERS = {"reservation_id", "name", "status", "image", "flavor", "ip",
                "changes-since", "changes-before", "ip6", "tags", "tags-any", "not-tags",
                "not-tags-any", "all_tenants", "limit", "marker", "sort_key", "sort_dir"}
# Equality filters on instance columns (query name -> column).
EQUAL_FILTERS = {"host": "host", "uuid": "uuid", "user_id": "user_id",
                 "vm_state": "vm_state", "task_state": "task_state", "image": "image_ref",
                 "image_ref": "image_ref"}
# Regular-expression filters on instance columns (Nova matches them anywhere).
REGEX_FILTERS = {"name": "display_name", "display_name": "display_name", "node": "node",
                 "availability_zone": "availability_zone", "power_state": "power_state",
                 "progress": "progress", "launched_at": "launched_at",
                 "terminated_at": "terminated_at", "created_at": "created_at"}
# Filters on what Godwit servers never have (IPs, tags, key pairs, ...): a
# non-empty value matches no server.
NEVER_MATCH = {"ip", "ip6", "tags", "tags-any", "key_name", "kernel_id", "ramdisk_id",
               "locked_by", "root_device_name", "access_ip_v4", "access_ip_v6",
               "description", "display_description", "reservation_id", "launch_index"}
SORT_COLUMNS = {"created_at", "updated_at", "display_name", "host", "node", "vm_state",
                "task_state", "power_state", "uuid", "user_id", "project_id", "launched_at",
                "terminated_at", "availability_zone", "image_ref", "instance_type_id",
                "progress", "config_drive"}


def _flavors(req):
    return {f["id"]: f for f in req.api.list_flavors(req.context)}


def _all_tenants(query):
    if "all_tenants" not in query:
        return False
    value = schemas.first(query, "all_tenants")
    if value in ("", None):
        return True
    if str(value).lower() not in {"true", "1", "on", "yes", "false", "0", "off", "no",
                                  "y", "n", "t", "f"}:
        raise exception.Invalid(f"Invalid value '{value}' for all_tenants: use a boolean "
                                "such as true or false")
    return str(value).lower() in {"true", "1", "on", "yes", "y", "t"}


def _status_predicate(query, req):
    wanted = {s.upper() for s in query.get("status", []) if s}
    if not wanted:
        return None
    known = set(views.STATUS_TO_VM_STATE) | {"MIGRATING", "RESIZE", "REVERT_RESIZE"}
    unknown = wanted - known
    if unknown and req.api_version.matches("2.38"):
        raise exception.Invalid(f"Invalid status value {', '.join(sorted(unknown))}; "
                                f"use one of {', '.join(sorted(known))}")
    return lambda row: views.server_status(row) in wanted


def list_servers(req, detail=False):
    query = schemas.validate_query(req, schemas.SERVERS_QUERY)
    if not req.api.policy.check(req.context, "os_compute_api:servers:allow_all_filters"):
        query = {k: v for k, v in query.items() if k in USER_FILTERS}
    filters, regex = {}, {}
    for param, column in EQUAL_FILTERS.items():
        values = [v for v in query.get(param, []) if v != ""]
        if values:
            filters[column] = values[-1] if len(values) == 1 else tuple(values)
    for param, column in REGEX_FILTERS.items():
        value = schemas.first(query, param)
        if value:
            regex[column] = value
    if any(schemas.first(query, p) for p in NEVER_MATCH if p in query):
        return 200, _servers_page(req, [], detail, None)
    if "locked" in query and schemas.to_bool(schemas.first(query, "locked")):
        return 200, _servers_page(req, [], detail, None)
    for param in ("project_id", "tenant_id"):
        if schemas.first(query, param):
            filters["project_id"] = schemas.first(query, param)
    flavor = schemas.first(query, "flavor")
    if flavor:
        try:
            filters["instance_type_id"] = req.api.get_flavor(req.context, flavor)["id"]
        except exception.FlavorNotFound:
            return 200, _servers_page(req, [], detail, None)
    deleted = schemas.first(query, "deleted")
    if deleted is not None and req.context.is_admin and schemas.to_bool(deleted):
        filters["deleted"] = True
    since = timestamp(schemas.first(query, "changes-since"), "changes-since")
    before = timestamp(schemas.first(query, "changes-before"), "changes-before")
    if since and before and before < since:
        raise exception.Invalid("The value of changes-since must be less than or equal to "
                                "changes-before.")
    if since:
        filters["changes_since"] = since
    sort = _sort(query)
    all_projects = _all_tenants(query)
    limit = limit_param(req, query)
    instances = req.api.list_servers(
        req.context, filters, limit=limit, marker=(schemas.first(query, "marker") or None),
        all_projects=all_projects, detail=detail, sort=sort, regex=regex,
        changes_before=before, predicate=_status_predicate(query, req))
    return 200, _servers_page(req, instances, detail, limit)


def _sort(query):
    keys = [k for k in query.get("sort_key", []) if k in SORT_COLUMNS]
    if not keys:
        return None
    dirs = query.get("sort_dir", [])
    for d in dirs:
        if d not in ("asc", "desc"):
            raise exception.Invalid(f"Invalid sort_dir {d!r}: use asc or desc")
    return [(k, dirs[i] if i < len(dirs) else "desc") for i, k in enumerate(keys)]


def _servers_page(req, instances, detail, limit):
    flavors = _flavors(req) if detail else {}
    host_status = _host_status(req) if detail else None
    servers = [views.server(req, i, flavors, brief=not detail,
                            host_status=None if host_status is None
                            else host_status.get(i["host"], "")) for i in instances]
    body = {"servers": servers}
    links = views.next_link(req, "servers/detail" if detail else "servers", servers, limit)
    if links:
        body["servers_links"] = links
    return body


def _host_status(req):
    """Nova's host_status (2.16, admins): UP, DOWN, MAINTENANCE (disabled) or UNKNOWN."""
    if not (req.api_version.matches("2.16") and req.context.is_admin):
        return None
    down = req.api.conf.service_down_time
    out = {}
    for svc in req.api.db.service_list(binary=states.SERVICE_COMPUTE):
        if svc["forced_down"] or not req.api.db.is_host_up(svc, down):
            out[svc["host"]] = "DOWN"
        elif svc["disabled"]:
            out[svc["host"]] = "MAINTENANCE"
        else:
            out[svc["host"]] = "UP"
    return out


def list_servers_detail(req):
    return list_servers(req, detail=True)


def show_server(req, server_id):
    instance = req.api.get_server(req.context, server_id)
    req.api.authorize(req.context, "os_compute_api:servers:show",
                      {"project_id": instance["project_id"]})
    host_status = _host_status(req)
    status = None if host_status is None else host_status.get(instance["host"], "")
    return 200, {"server": views.server(req, instance, _flavors(req), host_status=status)}


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
        raise exception.Invalid("Malformed request body: the body must be an object with "
                                'exactly one action, e.g. {"os-migrateLive": {...}}')
    name = next(iter(body))
    handler = ACTIONS.get(name)
    if handler is None:
        raise exception.Invalid(f"There is no such action: {name} (Godwit supports "
                                f"{', '.join(sorted(ACTIONS))})")
    return handler(req, server_id, body)


def migrate_live(req, server_id, body):
    schemas.validate(req, schemas.MIGRATE_LIVE, body)
    args = body["os-migrateLive"]
    block = args["block_migration"]
    block = "auto" if block == "auto" else schemas.to_bool(block)
    host = args.get("host")
    if req.api_version.matches("2.30", "2.67") and schemas.to_bool(args.get("force", False)) \
            and not host:
        raise exception.Invalid("Can't force to a non-provided destination")
    req.api.live_migrate(req.context, server_id, host, block)
    return 202, None


def live_migration_dry_run(req, server_id):
    """Godwit extension: every check of a live migration, against every candidate
    or the named host, with a predicted duration and downtime; writes nothing."""
    body = {} if req.json is None else req.json
    schemas.check(schemas.LIVE_MIGRATION_DRY_RUN, body)
    block = body.get("block_migration", "auto")
    block = "auto" if block == "auto" else schemas.to_bool(block)
    result = req.api.live_migrate_dry_run(req.context, server_id, body.get("host"), block)
    return 200, {"dry_run": result}


def migrate(req, server_id, body):
    schemas.validate(req, schemas.MIGRATE, body)
    host = None
    if req.api_version.matches("2.56") and body["migrate"] is not None:
        host = body["migrate"].get("host")
    req.api.migrate(req.context, server_id, host)
    return 202, None


def resize(req, server_id, body):
    schemas.validate(req, schemas.RESIZE, body)
    req.api.resize(req.context, server_id, body["resize"]["flavorRef"])
    return 202, None


def reboot(req, server_id, body):
    schemas.validate(req, schemas.REBOOT, body)
    req.api.reboot(req.context, server_id, body["reboot"]["type"].upper())
    return 202, None


def _any_value_action(name, method, status):
    def handler(req, server_id, body):
        schemas.validate(req, schemas.any_value_action(name), body)
        getattr(req.api, method)(req.context, server_id)
        return status, None
    return handler


ACTIONS = {
    "os-migrateLive": migrate_live,
    "migrate": migrate,
    "resize": resize,
    "confirmResize": _any_value_action("confirmResize", "confirm_resize", 204),
    "revertResize": _any_value_action("revertResize", "revert_resize", 202),
    "os-stop": _any_value_action("os-stop", "stop", 202),
    "os-start": _any_value_action("os-start", "start", 202),
    "reboot": reboot,
}


def _need(req, version, what):
    if not req.api_version.matches(version):
        raise exception.NotFound(f"{what} needs API version {version} or later (send "
                                 f"'OpenStack-API-Version: compute {version}').")


def list_server_migrations(req, server_id):
    _need(req, "2.23", "GET /servers/{id}/migrations")
    migrations = req.api.server_migrations(req.context, server_id)
    return 200, {"migrations": [views.server_migration(req, m) for m in migrations]}


def show_server_migration(req, server_id, migration_id):
    _need(req, "2.23", "GET /servers/{id}/migrations/{migration_id}")
    m = req.api.server_migration(req.context, server_id, migration_id)
    return 200, {"migration": views.server_migration(req, m)}


def show_migration_timeline(req, server_id, migration_id):
    """Godwit extension: what happened to one of the server's migrations, and when."""
    m, entries = req.api.migration_timeline(req.context, server_id, migration_id)
    return 200, {"migration": {"id": m["id"], "uuid": m["uuid"], "status": m["status"],
                               "migration_type": m["migration_type"],
                               "source_compute": m["source_compute"],
                               "dest_compute": m["dest_compute"],
                               "created_at": views.iso_micro(m["created_at"])},
                 "timeline": [views.timeline_entry(e) for e in entries]}


def abort_server_migration(req, server_id, migration_id):
    _need(req, "2.24", "Aborting a live migration (DELETE /servers/{id}/migrations/{mid})")
    req.api.abort_live_migration(req.context, server_id, migration_id,
                                 allow_early=req.api_version.matches("2.65"))
    return 202, None


# Godwit extension actions on a running live migration, at any microversion:
# action -> (the value's key, its unit, the largest value taken).
TUNING_ACTIONS = {"set-speed": ("mib_per_s", "the bandwidth cap in MiB/s",
                                schemas.MAX_MIGRATION_SPEED_MIB),
                  "set-downtime": ("ms", "the max downtime in ms",
                                   schemas.MAX_MIGRATION_DOWNTIME_MS)}


def tuning_value(action, arg):
    key, what, top = TUNING_ACTIONS[action]
    form = f'{{"{action}": {{"{key}": <an integer from 1 to {top}>}}}}, {what}'
    if not isinstance(arg, dict) or set(arg) != {key}:
        raise exception.Invalid(f"Malformed request body: {action} takes {form}.")
    value = arg[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise exception.Invalid(f"Invalid {action}: {key} must be an integer, not "
                                f"{json.dumps(value)[:40]}; send {form}.")
    if not 1 <= value <= top:
        raise exception.Invalid(f"Invalid {action}: {key} {value} is out of range; send "
                                f"{form}.")
    return value


def server_migration_action(req, server_id, migration_id):
    body = req.json
    if isinstance(body, dict) and len(body) == 1 and next(iter(body)) in TUNING_ACTIONS:
        action = next(iter(body))
        value = tuning_value(action, body[action])
        req.api.tune_live_migration(req.context, server_id, migration_id, action, value)
        return 202, None
    _need(req, "2.22", "force_complete")
    if not isinstance(body, dict) or len(body) != 1:
        raise exception.Invalid("Malformed request body: the body must be "
                                '{"force_complete": null}')
    if "force_complete" not in body:
        raise exception.Invalid(f"There is no such action: {next(iter(body))} (actions: "
                                "force_complete; Godwit's set-speed, set-downtime)")
    schemas.validate(req, schemas.FORCE_COMPLETE, body)
    req.api.force_complete(req.context, server_id, migration_id)
    return 202, None


def list_instance_actions(req, server_id):
    query = schemas.validate_query(req, schemas.ACTIONS_QUERY)
    actions = req.api.list_actions(req.context, server_id)
    limit = None
    if req.api_version.matches("2.58"):
        since = timestamp(schemas.first(query, "changes-since"), "changes-since")
        before = timestamp(schemas.first(query, "changes-before"), "changes-before")
        if since and before and before < since:
            raise exception.Invalid("The value of changes-since must be less than or "
                                    "equal to changes-before.")

        def changed(a):
            return a["updated_at"] or a["start_time"]
        if since:
            actions = [a for a in actions if changed(a) >= since]
        if before:
            actions = [a for a in actions if changed(a) <= before]
        limit = limit_param(req, query)
        actions = page(actions, lambda a: a["request_id"],
                       schemas.first(query, "marker") or None, limit,
                       "Marker {marker} could not be found.")
    body = {"instanceActions": [views.action(req, a) for a in actions]}
    links = views.next_link(req, f"servers/{server_id}/os-instance-actions",
                            body["instanceActions"], limit, marker_key="request_id")
    if links:
        body["links"] = links
    return 200, body


def show_instance_action(req, server_id, request_id):
    action, events, privileged, details = req.api.get_action(req.context, server_id,
                                                              request_id)
    view = views.action(req, action)
    if privileged or req.api_version.matches("2.51"):
        project = action["project_id"]
        view["events"] = [views.event(req, e, project, privileged, details) for e in events]
    return 200, {"instanceAction": view}
