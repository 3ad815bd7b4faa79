"""Version discovery, flavors, os-migrations, os-services, os-hypervisors."""

import uuid

from api import microversion, schemas, views
from api.query import limit_param, page, timestamp
from godwit import exception, states

# Nova's clients name services by Nova's binaries; Godwit's are godwit-*.
NOVA_BINARIES = {"nova-compute": states.SERVICE_COMPUTE,
                 "nova-conductor": states.SERVICE_CONDUCTOR}


def godwit_binary(binary):
    return NOVA_BINARIES.get(binary, binary)


def _version_doc(req):
    return {"id": "v2.1", "status": "CURRENT", "version": microversion.MAX_VERSION,
            "min_version": microversion.MIN_VERSION, "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{req.application_url}/v2.1/"},
                      {"rel": "describedby", "type": "text/html",
                       "href": "https://docs.openstack.org/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.compute+json;version=2.1"}]}


def versions(req):
    return 200, {"versions": [_version_doc(req)]}


def version(req):
    return 200, {"version": _version_doc(req)}


# ------------------------------------------------------------------------- flavors
def list_flavors(req, detail=False):
    query = schemas.validate_query(req, schemas.FLAVORS_QUERY)
    flavors = req.api.list_flavors(req.context)
    is_public = schemas.first(query, "is_public")
    if is_public is not None and is_public.lower() != "none":
        if not schemas.to_bool(is_public) and not req.context.is_admin:
            flavors = [f for f in flavors if f["is_public"]]
        else:
            flavors = [f for f in flavors if bool(f["is_public"]) ==
                       schemas.to_bool(is_public)]
    elif not req.context.is_admin:
        flavors = [f for f in flavors if f["is_public"]]
    for param, column in (("minRam", "memory_mb"), ("minDisk", "root_gb")):
        value = schemas.first(query, param)
        if value is not None:
            wanted = schemas.parse_int(value, f"The {param} filter")
            flavors = [f for f in flavors if f[column] >= wanted]
    sort_key = schemas.first(query, "sort_key", "flavorid")
    column = {"flavorid": "flavorid", "id": "id", "name": "name", "memory_mb": "memory_mb",
              "root_gb": "root_gb", "vcpus": "vcpus", "swap": "swap",
              "ephemeral_gb": "ephemeral_gb", "is_public": "is_public",
              "disabled": "disabled", "description": "description"}.get(sort_key, "flavorid")
    reverse = schemas.first(query, "sort_dir", "asc") == "desc"
    flavors.sort(key=lambda f: (f[column] is None, f[column] if f[column] is not None else 0),
                 reverse=reverse)
    limit = limit_param(req, query)
    flavors = page(flavors, lambda f: f["flavorid"], schemas.first(query, "marker") or None,
                   limit)
    if detail:
        out = [views.flavor(req, f) for f in flavors]
    else:
        out = [views.flavor_brief(req, f) for f in flavors]
    body = {"flavors": out}
    links = views.next_link(req, "flavors/detail" if detail else "flavors", out, limit)
    if links:
        body["flavors_links"] = links
    return 200, body


def list_flavors_detail(req):
    return list_flavors(req, detail=True)


def show_flavor(req, flavor_id):
    return 200, {"flavor": views.flavor(req, req.api.get_flavor(req.context, flavor_id))}


# ---------------------------------------------------------------------- migrations
def list_migrations(req):
    query = schemas.validate_query(req, schemas.MIGRATIONS_QUERY)
    filters = {}
    for param in ("host", "status", "instance_uuid", "source_compute", "migration_type"):
        value = schemas.first(query, param)
        if value:
            filters[param] = value
    hidden = schemas.first(query, "hidden")
    if hidden is not None:
        filters["hidden"] = schemas.to_bool(hidden)
    limit = marker = None
    if req.api_version.matches("2.59"):
        limit, marker = limit_param(req, query), (schemas.first(query, "marker") or None)
        filters["changes_since"] = timestamp(schemas.first(query, "changes-since"),
                                              "changes-since")
    if req.api_version.matches("2.66"):
        filters["changes_before"] = timestamp(schemas.first(query, "changes-before"),
                                               "changes-before")
        if filters["changes_since"] and filters["changes_before"] and \
                filters["changes_before"] < filters["changes_since"]:
            raise exception.Invalid("The value of changes-since must be less than or equal "
                                    "to changes-before.")
    if req.api_version.matches("2.80"):
        for param in ("user_id", "project_id"):
            value = schemas.first(query, param)
            if value:
                filters[param] = value
    if marker is not None:
        try:
            req.api.db.migration_get_by_uuid(marker)
        except exception.MigrationNotFound:
            raise exception.Invalid(f"Marker {marker} could not be found.") from None
    migrations = req.api.list_migrations(req.context, filters, limit=limit, marker=marker)
    out = [views.migration(req, m) for m in migrations if not m.get("hidden")]
    body = {"migrations": out}
    if req.api_version.matches("2.59"):
        links = views.next_link(req, "os-migrations", out, limit, marker_key="uuid")
        if links:
            body["migrations_links"] = links
    return 200, body


# ------------------------------------------------------------------------ services
def list_services(req):
    query = schemas.validate_query(req, schemas.SERVICES_QUERY)
    binary = schemas.first(query, "binary")
    services = req.api.list_services(req.context, host=schemas.first(query, "host"),
                                     binary=godwit_binary(binary) if binary else None)
    down = req.api.conf.service_down_time
    return 200, {"services": [views.service(req, s, req.api.db.is_host_up(s, down))
                              for s in services]}


def update_service(req, service_id):
    """PUT /os-services/{id}: before 2.53 {id} names an action (enable, disable,
    disable-log-reason, force-down from 2.11) and the body names host and
    binary; from 2.53 {id} is the service's uuid and the body its new state."""
    schemas.validate(req, schemas.SERVICE_UPDATE, req.json)
    if req.api_version.matches("2.53"):
        return _update_service_v253(req, service_id)
    actions = {"enable": _enable, "disable": _disable,
               "disable-log-reason": _disable_log_reason}
    if req.api_version.matches("2.11"):
        actions["force-down"] = _force_down
    action = actions.get(service_id)
    if action is None:
        raise exception.NotFound(f"Unknown action {service_id!r}: use one of "
                                 f"{', '.join(sorted(actions))}, or PUT /os-services/{{uuid}} "
                                 "with API version 2.53 or later.")
    req.api.authorize(req.context, "os_compute_api:os-services:update")
    return 200, {"service": action(req, req.json)}


def _only_compute(binary):
    if godwit_binary(binary) != states.SERVICE_COMPUTE:
        raise exception.Invalid(f"Updating a {binary} service is not supported. Only "
                                f"{states.SERVICE_COMPUTE} (nova-compute) services can be "
                                "updated.")


def _update_legacy(req, body, values):
    _only_compute(body["binary"])
    matches = req.api.list_services(req.context, host=body["host"],
                                    binary=godwit_binary(body["binary"]))
    if not matches:
        raise exception.ServiceNotFound(
            service_id=f"{body['binary']} on host {body['host']} ('openstack compute service "
                       "list' shows the services)")
    req.api.update_service(req.context, matches[0]["id"], values)


def _enable(req, body):
    _update_legacy(req, body, {"disabled": False, "disabled_reason": None})
    return {"host": body["host"], "binary": body["binary"], "status": "enabled"}


def _disable(req, body, reason=None):
    _update_legacy(req, body, {"disabled": True, "disabled_reason": reason})
    view = {"host": body["host"], "binary": body["binary"], "status": "disabled"}
    if reason:
        view["disabled_reason"] = reason
    return view


def _disable_log_reason(req, body):
    if "disabled_reason" not in body:
        raise exception.Invalid("Missing disabled reason field")
    return _disable(req, body, body["disabled_reason"])


def _force_down(req, body):
    if "forced_down" not in body:
        raise exception.Invalid("Missing forced_down field")
    forced = schemas.to_bool(body["forced_down"])
    _update_legacy(req, body, {"forced_down": forced})
    return {"host": body["host"], "binary": body["binary"], "forced_down": forced}


def _update_service_v253(req, service_id):
    try:
        uuid.UUID(service_id)
    except ValueError:
        raise exception.Invalid(f"Invalid uuid {service_id}") from None
    svc = req.api.get_service(req.context, service_id)
    _only_compute(svc["binary"])
    body = req.json or {}
    values = {}
    if body.get("status") == "enabled":
        if body.get("disabled_reason"):
            raise exception.Invalid("Specifying 'disabled_reason' with status 'enabled' is "
                                    "invalid.")
        values.update(disabled=False, disabled_reason=None)
    elif body.get("status") == "disabled":
        values.update(disabled=True, disabled_reason=body.get("disabled_reason"))
    if "forced_down" in body:
        values["forced_down"] = schemas.to_bool(body["forced_down"])
    if not values:
        raise exception.Invalid("No updates were requested. Fields 'status' or "
                                "'forced_down' should be specified.")
    svc = req.api.update_service(req.context, svc["id"], values)
    up = req.api.db.is_host_up(svc, req.api.conf.service_down_time)
    return 200, {"service": views.service(req, svc, up)}


# --------------------------------------------------------------------- hypervisors
def list_hypervisors(req, detail=False):
    query = schemas.validate_query(req, schemas.HYPERVISORS_QUERY)
    rule = "os_compute_api:os-hypervisors:" + ("list-detail" if detail else "list")
    down = req.api.conf.service_down_time
    nodes = req.api.list_hypervisors(req.context, rule)
    pattern = schemas.first(query, "hypervisor_hostname_pattern") \
        if req.api_version.matches("2.53") else None
    if pattern:
        nodes = [n for n in nodes if pattern in n[0]["hypervisor_hostname"]]
        if not nodes:
            raise exception.NotFound(f"No hypervisor matching '{pattern}' could be found.")
    limit = marker = None
    if req.api_version.matches("2.33"):
        limit, marker = limit_param(req, query), (schemas.first(query, "marker") or None)
        key = "uuid" if req.api_version.matches("2.53") else "id"
        nodes = page(nodes, lambda n: str(n[0][key]), marker, limit)
    with_servers = req.api_version.matches("2.53") and \
        schemas.to_bool(schemas.first(query, "with_servers", False))
    out = []
    for node, svc, usage in nodes:
        up = svc is not None and req.api.db.is_host_up(svc, down)
        view = views.hypervisor(req, node, svc, usage, up, detail)
        if with_servers:
            servers = req.api.servers_on_host(req.context, node["host"])
            if servers:
                view["servers"] = [{"name": f"instance-{s['id']:08x}", "uuid": s["uuid"]}
                                   for s in servers]
        out.append(view)
    body = {"hypervisors": out}
    links = views.next_link(req, "os-hypervisors/detail" if detail else "os-hypervisors",
                            out, limit)
    if links:
        body["hypervisors_links"] = links
    return 200, body


def list_hypervisors_detail(req):
    return list_hypervisors(req, detail=True)


def show_hypervisor(req, hypervisor_id):
    down = req.api.conf.service_down_time
    if req.api_version.matches("2.53"):
        try:
            uuid.UUID(hypervisor_id)
        except ValueError:
            raise exception.Invalid(f"Invalid uuid {hypervisor_id}") from None
    else:
        schemas.parse_int(hypervisor_id, "A hypervisor id before API version 2.53")
    key = "uuid" if req.api_version.matches("2.53") else "id"
    for node, svc, usage in req.api.list_hypervisors(req.context,
                                                     "os_compute_api:os-hypervisors:show"):
        if str(node[key]) == hypervisor_id:
            up = svc is not None and req.api.db.is_host_up(svc, down)
            return 200, {"hypervisor": views.hypervisor(req, node, svc, usage, up, True)}
    raise exception.NotFound(f"Hypervisor with ID '{hypervisor_id}' could not be found; "
                             "'openstack hypervisor list' shows them.")
