"""/os-host-drains: server-side host drains (a Godwit extension, docs/api.md).

A drain is recorded here and driven by a conductor (conductor/drain.py):
POST records it (the host's compute service disabled, its guests listed in
the order they will be moved) and wakes a conductor; DELETE records a cancel
and wakes one. The answer 202 means it is recorded: a lost wake-up costs
at most one ``host_drain_interval``. Every refusal changes nothing.
"""

import json

from api import schemas
from godwit import exception, states
from godwit.db import drains

CREATE_RULE = "os_compute_api:os-host-drains:create"
SHOW_RULE = "os_compute_api:os-host-drains:show"
DELETE_RULE = "os_compute_api:os-host-drains:delete"

# A week: longer is a typo rather than a plan, and fits every integer column.
MAX_GUEST_TIMEOUT = 7 * 24 * 3600

CREATE = {
    "type": "object",
    "properties": {"host_drain": {
        "type": "object",
        "properties": {
            "host": schemas.FQDN,
            "fallback": {"type": "string", "enum": list(drains.FALLBACKS)},
            "on_cancel": {"type": "string", "enum": list(drains.ON_CANCEL)},
            "guest_timeout": {"type": "integer", "minimum": 1,
                              "maximum": MAX_GUEST_TIMEOUT}},
        "required": ["host"], "additionalProperties": False}},
    "required": ["host_drain"], "additionalProperties": False}

HINT = ('; send {"host_drain": {"host": "<compute host>", "fallback": "skip|cold|leave", '
        '"on_cancel": "abort|finish", "guest_timeout": <seconds, 1 to '
        f'{MAX_GUEST_TIMEOUT}>}}}} (all but host optional)')


def view(d):
    counts = {}
    for g in d["report"]:
        counts[g["state"]] = counts.get(g["state"], 0) + 1
    guests = [{k: g.get(k) for k in ("instance_uuid", "name", "memory_mb", "state", "kind",
                                     "migration_id", "migrations", "destination",
                                     "reason", "predicted_s", "prediction")}
              for g in d["report"]]
    for view_g, g in zip(guests, d["report"]):
        view_g["arrived"] = bool(g.get("arrived"))
    # How the guests were ordered: by the prediction, or by memory (no estimate
    # for some guest; or not decided yet: a conductor's first look orders them).
    bases = [g["ordered_by"] for g in d["report"] if not g.get("arrived")
             and g.get("ordered_by")]
    return {"id": d["uuid"], "host": d["host"], "status": d["status"],
            "fallback": d["fallback"], "on_cancel": d["on_cancel"],
            "guest_timeout": d["guest_timeout"], "conductor": d["owner"],
            "created_at": _iso(d["created_at"]), "updated_at": _iso(d["updated_at"]),
            "cancel_requested_at": _iso(d["cancel_requested_at"]),
            "finished_at": _iso(d["finished_at"]), "summary": counts,
            "ordered_by": bases[0] if bases else None, "guests": guests}


def _iso(when):
    return when.isoformat() if when is not None else None


def _wake(req, drain_uuid):
    try:
        req.api.conductor.drain_wake(req.context, drain_uuid)
    except Exception:  # noqa: BLE001 - recorded; every conductor's drain sweep finds it
        pass


def create_drain(req):
    req.api.authorize(req.context, CREATE_RULE)
    body = req.json
    try:
        schemas.check(CREATE, body)
    except exception.Invalid as e:
        raise exception.Invalid(str(e) + HINT) from None
    wanted = body["host_drain"]
    host = wanted["host"]
    services = req.api.db.service_list(host=host)
    if not services:
        raise exception.ComputeHostNotFound(host=host)
    if not any(s["binary"] == states.SERVICE_COMPUTE for s in services):
        raise exception.Invalid(f"Host {host} has no compute service (it runs "
                                f"{', '.join(sorted(s['binary'] for s in services))}); "
                                "only compute hosts have guests to drain.")
    d = req.api.db.drain_create(host, {
        "fallback": wanted.get("fallback", "skip"),
        "on_cancel": wanted.get("on_cancel", "abort"),
        "guest_timeout": int(wanted.get("guest_timeout",
                                        req.api.conf.host_drain_guest_timeout)),
        "context": json.dumps(req.context.to_saved_dict(), default=str)})
    _wake(req, d["uuid"])
    return 202, {"host_drain": view(d)}


def list_drains(req):
    req.api.authorize(req.context, SHOW_RULE)
    query = req.GET.dict_of_lists()
    host = schemas.first(query, "host")
    status = schemas.first(query, "status")
    if status is not None and status not in drains.STATUSES:
        raise exception.Invalid(f"Invalid status {status!r}: use one of "
                                f"{', '.join(drains.STATUSES)}")
    found = req.api.db.drain_list(host=host or None, statuses=[status] if status else None)
    return 200, {"host_drains": [view(d) for d in found]}


def show_drain(req, drain_id):
    req.api.authorize(req.context, SHOW_RULE)
    return 200, {"host_drain": view(req.api.db.drain_get(drain_id))}


def cancel_drain(req, drain_id):
    req.api.authorize(req.context, DELETE_RULE)
    d = req.api.db.drain_request_cancel(drain_id)
    _wake(req, d["uuid"])
    return 202, None
