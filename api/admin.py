"""Version discovery, flavors, os-migrations, os-services, os-hypervisors."""

import datetime

from api import microversion, schemas, views
from api.servers import _limit
from godwit import exception
from godwit.db import api as db_api


def _version_doc(req):
    return {"id": "v2.1", "status": "CURRENT", "version": microversion.MAX_VERSION,
            "min_version": microversion.MIN_VERSION, "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{req.application_url}/v2.1/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.compute+json;version=2.1"}]}


def versions(req):
    return 200, {"versions": [_version_doc(req)]}


def version(req):
    return 200, {"version": _version_doc(req)}


def list_flavors(req, detail=False):
    flavors = req.api.list_flavors(req.context)
    if detail:
        return 200, {"flavors": [views.flavor(req, f) for f in flavors]}
    return 200, {"flavors": [{"id": f["flavorid"], "name": f["name"], "links": []}
                             for f in flavors]}


def list_flavors_detail(req):
    return list_flavors(req, detail=True)


def show_flavor(req, flavor_id):
    return 200, {"flavor": views.flavor(req, req.api.get_flavor(req.context, flavor_id))}


def _timestamp(req, name):
    value = req.params.get(name)
    if value is None:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).replace(
            tzinfo=None)
    except ValueError:
        raise exception.Invalid(reason=f"{name} must be an ISO 8601 time such as "
                                       f"2026-01-31T12:00:00Z, not {value!r}") from None


def list_migrations(req):
    filters = {}
    for param in ("host", "status", "instance_uuid", "source_compute", "migration_type"):
        if req.params.get(param):
            filters[param] = req.params[param]
    if req.params.get("hidden") is not None:
        filters["hidden"] = schemas.to_bool(req.params["hidden"])
    limit = marker = None
    if req.api_version.matches("2.59"):
        limit, marker = _limit(req), req.params.get("marker")
        filters["changes_since"] = _timestamp(req, "changes-since")
    if req.api_version.matches("2.66"):
        filters["changes_before"] = _timestamp(req, "changes-before")
    if req.api_version.matches("2.80"):
        for param in ("user_id", "project_id"):
            if req.params.get(param):
                filters[param] = req.params[param]
    migrations = req.api.list_migrations(req.context, filters, limit=limit, marker=marker)
    return 200, {"migrations": [views.migration(req, m) for m in migrations]}


def list_services(req):
    services = req.api.list_services(req.context, host=req.params.get("host"),
                                     binary=req.params.get("binary"))
    down = req.api.conf.service_down_time
    return 200, {"services": [views.service(req, s, db_api.is_service_up(s, down))
                              for s in services]}


def update_service(req, service_id):
    if not req.api_version.matches("2.53"):
        raise exception.NotFound("PUT /os-services/{id} needs API version 2.53 or later.")
    schemas.validate(req, schemas.SERVICE_UPDATE, req.json)
    body = req.json
    values = {}
    if body.get("status") == "disabled":
        values.update(disabled=True, disabled_reason=body.get("disabled_reason"))
    elif body.get("status") == "enabled":
        if body.get("disabled_reason"):
            raise exception.Invalid(reason="disabled_reason only goes with status disabled")
        values.update(disabled=False, disabled_reason=None)
    if "forced_down" in body:
        values["forced_down"] = schemas.to_bool(body["forced_down"])
    if not values:
        raise exception.Invalid(reason="give status and/or forced_down")
    svc = req.api.update_service(req.context, service_id, values)
    up = db_api.is_service_up(svc, req.api.conf.service_down_time)
    return 200, {"service": views.service(req, svc, up)}


def _legacy_service_update(req, disabled, with_reason=False):
    body = req.json or {}
    host, binary = body.get("host"), body.get("binary")
    if not host or not binary:
        raise exception.Invalid(reason="give host and binary, e.g. "
                                       '{"host": "compute1", "binary": "nova-compute"}')
    binary = binary.replace("nova-", "godwit-")
    matches = req.api.list_services(req.context, host=host, binary=binary)
    if not matches:
        raise exception.ServiceNotFound(service_id=f"{binary} on {host}")
    reason = body.get("disabled_reason") if with_reason else None
    req.api.update_service(req.context, matches[0]["id"],
                           {"disabled": disabled, "disabled_reason": reason})
    view = {"host": host, "binary": body["binary"],
            "status": "disabled" if disabled else "enabled"}
    if with_reason:
        view["disabled_reason"] = reason
    return 200, {"service": view}


def disable_service(req):
    return _legacy_service_update(req, True)


def disable_service_log_reason(req):
    return _legacy_service_update(req, True, with_reason=True)


def enable_service(req):
    return _legacy_service_update(req, False)


def list_hypervisors(req, detail=False):
    down = req.api.conf.service_down_time
    out = []
    for node, svc, usage in req.api.list_hypervisors(req.context):
        up = svc is not None and db_api.is_service_up(svc, down)
        out.append(views.hypervisor(req, node, svc, usage, up, detail))
    return 200, {"hypervisors": out}


def list_hypervisors_detail(req):
    return list_hypervisors(req, detail=True)
