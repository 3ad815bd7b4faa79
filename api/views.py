"""Turning rows into Nova-shaped JSON, per microversion."""

import hashlib
from urllib.parse import urlencode

from godwit import phases, states

# (vm_state, task_state) -> Nova's server status; task None means any task.
_STATUS = {
    states.BUILDING: "BUILD", states.ACTIVE: "ACTIVE", states.STOPPED: "SHUTOFF",
    states.PAUSED: "PAUSED", states.RESIZED: "VERIFY_RESIZE", states.ERROR: "ERROR",
    states.DELETED: "DELETED",
}
_TASK_STATUS = {
    states.MIGRATING: "MIGRATING", states.RESIZE_PREP: "RESIZE",
    states.RESIZE_MIGRATING: "RESIZE", states.RESIZE_MIGRATED: "RESIZE",
    states.RESIZE_FINISH: "RESIZE", states.RESIZE_REVERTING: "REVERT_RESIZE",
}
STATUS_TO_VM_STATE = {v: k for k, v in _STATUS.items()}


def host_id(host, project_id):
    """Nova's hostId: an opaque per-project name of the host (sha224 of project + host)."""
    if not host:
        return ""
    return hashlib.sha224(((project_id or "") + host).encode("utf-8")).hexdigest()


def next_link(req, path, items, limit, marker_key="id"):
    """Nova's collection "next" link when a page came back full."""
    if not limit or len(items) < limit or not items:
        return None
    params = [(k, v) for k, v in req.GET.items() if k != "marker"]
    params.append(("marker", items[-1][marker_key]))
    return [{"rel": "next",
             "href": f"{req.application_url}/v2.1/{path}?{urlencode(params)}"}]


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def iso_micro(dt):
    return dt.isoformat() if dt else None


def server_status(instance):
    if instance["vm_state"] in (states.ACTIVE, states.RESIZED, states.STOPPED):
        task = _TASK_STATUS.get(instance["task_state"])
        if task:
            return task
    return _STATUS.get(instance["vm_state"], "UNKNOWN")


def flavor_view(req, flavor, instance=None):
    if req.api_version.matches("2.47"):
        return {"original_name": flavor["name"], "ram": flavor["memory_mb"],
                "vcpus": flavor["vcpus"], "disk": flavor["root_gb"],
                "ephemeral": flavor["ephemeral_gb"], "swap": flavor["swap"],
                "extra_specs": {}}
    return {"id": flavor["flavorid"], "links": []}


def server(req, instance, flavors, brief=False, host_status=None):
    view = {"id": instance["uuid"], "name": instance["display_name"],
            "links": [{"rel": "self", "href": f"{req.application_url}/v2.1/servers/"
                                              f"{instance['uuid']}"}]}
    if brief:
        return view
    flavor = flavors.get(instance["instance_type_id"])
    view.update({
        "status": server_status(instance),
        "tenant_id": instance["project_id"], "user_id": instance["user_id"],
        "created": iso(instance["created_at"]),
        "updated": iso(instance["updated_at"] or instance["created_at"]),
        "progress": instance["progress"] or 0,
        "flavor": flavor_view(req, flavor) if flavor else {},
        "image": {"id": instance["image_ref"], "links": []} if instance["image_ref"] else "",
        "addresses": {}, "metadata": {}, "hostId": "", "key_name": None,
        "accessIPv4": "", "accessIPv6": "", "config_drive": "",
        "OS-DCF:diskConfig": "MANUAL", "locked": False,
        "OS-EXT-AZ:availability_zone": instance["availability_zone"] or "nova",
        "OS-EXT-STS:vm_state": instance["vm_state"],
        "OS-EXT-STS:task_state": instance["task_state"],
        "OS-EXT-STS:power_state": instance["power_state"],
        "OS-SRV-USG:launched_at": iso_micro(instance["launched_at"]),
        "OS-SRV-USG:terminated_at": iso_micro(instance["terminated_at"]),
        "os-extended-volumes:volumes_attached": [],
    })
    view["hostId"] = host_id(instance["host"], instance["project_id"])
    if req.context.is_admin:
        view.update({"OS-EXT-SRV-ATTR:host": instance["host"],
                     "OS-EXT-SRV-ATTR:hypervisor_hostname": instance["node"],
                     "OS-EXT-SRV-ATTR:instance_name": f"instance-{instance['id']:08x}"})
        if req.api_version.matches("2.3"):
            view.update({"OS-EXT-SRV-ATTR:reservation_id": f"r-{instance['id']:08x}",
                         "OS-EXT-SRV-ATTR:launch_index": 0,
                         "OS-EXT-SRV-ATTR:hostname": instance["display_name"],
                         "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:ramdisk_id": "",
                         "OS-EXT-SRV-ATTR:root_device_name": None,
                         "OS-EXT-SRV-ATTR:user_data": None})
    if instance["vm_state"] == states.ERROR and instance.get("fault_message"):
        view["fault"] = {"code": 500, "message": instance["fault_message"],
                         "created": iso(instance["updated_at"])}
    if req.api_version.matches("2.9"):
        view["locked"] = False
    if req.api_version.matches("2.16") and host_status is not None:
        view["host_status"] = host_status
    if req.api_version.matches("2.19"):
        view["description"] = None
    if req.api_version.matches("2.26"):
        view["tags"] = []
    if req.api_version.matches("2.63"):
        view["trusted_image_certificates"] = None
    if req.api_version.matches("2.71"):
        view["server_groups"] = []
    if req.api_version.matches("2.73"):
        view["locked_reason"] = None
    return view


def migration(req, m):
    view = {"id": m["id"], "instance_uuid": m["instance_uuid"],
            "source_compute": m["source_compute"], "dest_compute": m["dest_compute"],
            "source_node": m["source_node"], "dest_node": m["dest_node"],
            "dest_host": m["dest_host"], "status": m["status"],
            "old_instance_type_id": m["old_instance_type_id"],
            "new_instance_type_id": m["new_instance_type_id"],
            "created_at": iso_micro(m["created_at"]),
            "updated_at": iso_micro(m["updated_at"])}
    if req.api_version.matches("2.23"):
        view["migration_type"] = m["migration_type"]
        if m["migration_type"] == states.LIVE_MIGRATION and \
                m["status"] in phases.LIVE_UNDER_WAY:
            path = f"servers/{m['instance_uuid']}/migrations/{m['id']}"
            view["links"] = [{"rel": "self", "href": f"{req.application_url}/v2.1/{path}"},
                             {"rel": "bookmark", "href": f"{req.application_url}/{path}"}]
    if req.api_version.matches("2.59"):
        view["uuid"] = m["uuid"]
    if req.api_version.matches("2.80"):
        view["user_id"] = m["user_id"]
        view["project_id"] = m["project_id"]
    if m.get("error_message"):
        # Godwit addition: why a migration failed, so no one needs the logs.
        view["error_message"] = m["error_message"]
    return view


def server_migration(req, m):
    view = {"id": m["id"], "server_uuid": m["instance_uuid"],
            "source_compute": m["source_compute"], "dest_compute": m["dest_compute"],
            "source_node": m["source_node"], "dest_node": m["dest_node"],
            "dest_host": m["dest_host"], "status": m["status"],
            "memory_total_bytes": m["memory_total"],
            "memory_processed_bytes": m["memory_processed"],
            "memory_remaining_bytes": m["memory_remaining"],
            "disk_total_bytes": m["disk_total"], "disk_processed_bytes": m["disk_processed"],
            "disk_remaining_bytes": m["disk_remaining"],
            "created_at": iso_micro(m["created_at"]), "updated_at": iso_micro(m["updated_at"])}
    if req.api_version.matches("2.59"):
        view["uuid"] = m["uuid"]
    if req.api_version.matches("2.80"):
        view["user_id"] = m["user_id"]
        view["project_id"] = m["project_id"]
    return view


def timeline_entry(e):
    return {"at": iso_micro(e["at"]), "kind": e["kind"], "name": e["name"],
            "host": e["host"], "duration_ms": e["duration_ms"], "detail": e["detail"]}


def _flavor_links(req, f):
    return [{"rel": "self", "href": f"{req.application_url}/v2.1/flavors/{f['flavorid']}"},
            {"rel": "bookmark", "href": f"{req.application_url}/flavors/{f['flavorid']}"}]


def flavor_brief(req, f):
    view = {"id": f["flavorid"], "name": f["name"], "links": _flavor_links(req, f)}
    if req.api_version.matches("2.55"):
        view["description"] = f["description"]
    return view


def flavor(req, f):
    swap = f["swap"] or (0 if req.api_version.matches("2.75") else "")
    view = {"id": f["flavorid"], "name": f["name"], "ram": f["memory_mb"],
            "vcpus": f["vcpus"], "disk": f["root_gb"], "swap": swap,
            "OS-FLV-EXT-DATA:ephemeral": f["ephemeral_gb"], "OS-FLV-DISABLED:disabled":
                f["disabled"], "os-flavor-access:is_public": f["is_public"],
            "rxtx_factor": 1.0, "links": _flavor_links(req, f)}
    if req.api_version.matches("2.55"):
        view["description"] = f["description"]
    if req.api_version.matches("2.61"):
        view["extra_specs"] = {}
    return view


def service(req, s, is_up):
    view = {"id": s["uuid"] if req.api_version.matches("2.53") else s["id"],
            "binary": s["binary"], "host": s["host"],
            "zone": "nova" if s["binary"] == states.SERVICE_COMPUTE else "internal",
            "status": "disabled" if s["disabled"] else "enabled",
            "state": "up" if is_up else "down",
            "updated_at": iso_micro(s["last_seen_up"]),
            "disabled_reason": s["disabled_reason"]}
    if req.api_version.matches("2.11"):
        view["forced_down"] = s["forced_down"]
    return view


def hypervisor(req, node, svc, usage, is_up, detail):
    view = {"id": node["uuid"] if req.api_version.matches("2.53") else node["id"],
            "hypervisor_hostname": node["hypervisor_hostname"],
            "state": "up" if is_up else "down",
            "status": "disabled" if svc and svc["disabled"] else "enabled"}
    if detail:
        view.update({"hypervisor_type": node["hypervisor_type"],
                     "hypervisor_version": node["hypervisor_version"],
                     "host_ip": node["host_ip"],
                     "service": {"host": node["host"],
                                 "id": (svc["uuid"] if req.api_version.matches("2.53")
                                        else svc["id"]) if svc else None,
                                 "disabled_reason": svc["disabled_reason"] if svc else None}})
        if not req.api_version.matches("2.88"):
            view.update({"vcpus": node["vcpus"], "memory_mb": node["memory_mb"],
                         "local_gb": node["local_gb"], "vcpus_used": usage["vcpus"],
                         "memory_mb_used": usage["memory_mb"],
                         "local_gb_used": usage["disk_gb"],
                         "free_ram_mb": node["memory_mb"] - usage["memory_mb"],
                         "free_disk_gb": node["local_gb"] - usage["disk_gb"],
                         "running_vms": usage["running_vms"], "cpu_info": node["cpu_info"],
                         "current_workload": 0, "disk_available_least": None})
    return view


def action(req, a):
    view = {"action": a["action"], "instance_uuid": a["instance_uuid"],
            "request_id": a["request_id"], "user_id": a["user_id"],
            "project_id": a["project_id"], "start_time": iso_micro(a["start_time"]),
            "message": a["message"]}
    if req.api_version.matches("2.58"):
        view["updated_at"] = iso_micro(a["updated_at"] or a["start_time"])
    return view


def event(req, e, project_id, privileged, details):
    """One event; traceback (and from 2.62 host) only for those allowed to see them."""
    view = {"event": e["event"], "start_time": iso_micro(e["start_time"]),
            "finish_time": iso_micro(e["finish_time"]), "result": e["result"]}
    if privileged:
        view["traceback"] = e["traceback"]
        if req.api_version.matches("2.62"):
            view["host"] = e["host"]
    if req.api_version.matches("2.62"):
        view["hostId"] = host_id(e["host"], project_id)
    if req.api_version.matches("2.84") and details:
        view["details"] = e.get("details")
    return view
