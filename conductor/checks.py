"""Pre-checks for moving an instance, each refusal a clear error.

These read only the database (the API-facing conductor owns it) and run
before anything is written, so a refused request changes nothing. Checks
that need the hosts themselves (CPU, shared storage, hypervisor reachability)
run afterwards over RPC in :mod:`conductor.live_migrate`.
"""

import json

from godwit import exception, states
from godwit.db import api as db_api
from godwit.db import claims


def check_instance_can_live_migrate(instance):
    """The instance is ACTIVE or PAUSED, running, and not busy with another task."""
    if instance["vm_state"] not in (states.ACTIVE, states.PAUSED):
        raise exception.InstanceInvalidState(
            action="os-migrateLive", instance_id=instance["uuid"], attr="vm_state",
            state=instance["vm_state"],
            hint="Only ACTIVE or PAUSED servers can be live-migrated.")
    if instance["task_state"] is not None:
        raise exception.InstanceBusy(instance_id=instance["uuid"],
                                     task_state=instance["task_state"])
    if instance["power_state"] not in (states.RUNNING, states.PAUSED_POWER):
        raise exception.InstanceInvalidState(
            action="os-migrateLive", instance_id=instance["uuid"], attr="power_state",
            state=instance["power_state"], hint="The guest must be running or paused.")
    if not instance.get("host"):
        raise exception.InstanceInvalidState(
            action="os-migrateLive", instance_id=instance["uuid"], attr="host", state="none",
            hint="The server was never placed on a host.")


_READ = object()


def check_service_up(db, conf, host, service=_READ):
    """``host``'s compute service, if it is up; ``service``: its row, already
    read (None: it has none)."""
    svc = db.service_get_by_host(host) if service is _READ else service
    if svc is None:
        raise exception.DestinationHostUnknown(host=host)
    if not db.is_host_up(svc, conf.service_down_time):
        raise exception.ComputeServiceUnavailable(host=host, age=db_api.heartbeat_age(svc))
    return svc


def _cpu(node):
    try:
        return json.loads(node.get("cpu_info") or "{}")
    except ValueError:
        return {}


def free_resources(db, conf, node):
    return claims.free_of(node, db.host_usage(node["host"]), conf)


def check_capacity(db, conf, node, need):
    """``need`` holds memory_mb, vcpus, disk_gb. A read: the claim that follows
    checks again in its own transaction (godwit.db.claims)."""
    lacking = claims.shortfall(node, free_resources(db, conf, node), need)
    if lacking is not None:
        raise no_room(lacking)


def no_room(lacking):
    """A move's words for a destination without room (HostCapacityExceeded)."""
    k = lacking.kwargs
    return exception.MigrationPreCheckError(
        reason=f"destination {k['host']} lacks {k['resource']}: {k['needed']} needed, "
               f"{k['free']} free")


def check_destination(db, conf, instance, source_node, dest, room=True, rows=None):
    """Every database-level check of a requested destination, in order;
    without ``room`` when the claim that follows checks it (in its own
    transaction, with the same words). ``rows``: the destination's service and
    node, already read (db.compute_hosts)."""
    if dest == instance["host"]:
        raise exception.DestinationIsSource(host=dest)
    service, node = rows if rows is not None else (_READ, _READ)
    svc = check_service_up(db, conf, dest, service=service)
    if svc["disabled"]:
        reason = f" ({svc['disabled_reason']})" if svc.get("disabled_reason") else ""
        raise exception.ComputeServiceDisabled(host=dest, reason=reason)
    if node is _READ:
        node = db.compute_node_get_by_host(dest)
    if node is None:
        raise exception.DestinationHostUnknown(host=dest)
    if room:
        check_capacity(db, conf, node, {
            "memory_mb": instance["memory_mb"], "vcpus": instance["vcpus"],
            "disk_gb": instance["root_gb"] + instance["ephemeral_gb"]})
    check_hypervisor_compatible(source_node, node)
    return node


def check_hypervisor_compatible(source_node, dest_node):
    src, dst = source_node, dest_node
    if src["hypervisor_type"] != dst["hypervisor_type"]:
        raise exception.MigrationPreCheckError(
            reason=f"destination {dst['host']} runs hypervisor {dst['hypervisor_type']}, "
                   f"the source runs {src['hypervisor_type']}; both must be the same")
    if dst["hypervisor_version"] < src["hypervisor_version"]:
        raise exception.MigrationPreCheckError(
            reason=f"destination {dst['host']} runs hypervisor version "
                   f"{dst['hypervisor_version']}, older than the source's "
                   f"{src['hypervisor_version']}; a guest cannot move to an older hypervisor")
    s_cpu, d_cpu = _cpu(src), _cpu(dst)
    if s_cpu.get("arch") != d_cpu.get("arch") or s_cpu.get("model") != d_cpu.get("model"):
        raise exception.MigrationPreCheckError(
            reason=f"CPU of destination {dst['host']} ({d_cpu.get('arch')} "
                   f"{d_cpu.get('model')}) is not compatible with the source's "
                   f"({s_cpu.get('arch')} {s_cpu.get('model')})")
    if (src.get("security_driver") or "none") != (dst.get("security_driver") or "none"):
        raise exception.MigrationPreCheckError(
            reason=f"destination {dst['host']} uses security driver "
                   f"{dst.get('security_driver')!r} and the source "
                   f"{src.get('security_driver')!r}; the guest's security label would not "
                   "be understood there (libvirt's 'Unable to find security driver for "
                   "label'). Configure the same security_driver on both hosts")
