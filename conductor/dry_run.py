"""A live migration's dry run: every check against every candidate host (or the
named one), and a prediction of each accepted move; nothing is written.

The checks are the real ones, in the real order (conductor/live_migrate.py):
the instance's state and its source, then per destination the database checks
(service up and enabled, room, hypervisor) or the scheduler's, then the
destination's and the source's own pre-checks over RPC (which leave nothing
behind: the shared-storage probe is removed, and with no instance action for
the request no event is recorded). Unlike a real move it tries every candidate
instead of stopping at the first that accepts, and claims nothing.

The prediction (conductor/prediction.py) uses the guest's memory, its local
disks for a block migration, the allowed downtime's maximum
(``[libvirt] live_migration_downtime``) and what the source's driver reports:
the bandwidth and the guest's dirty rate (compute RPC 2.1).
"""

import oslo_messaging as messaging
from oslo_log import log as logging

from compute import rpcapi as compute_rpcapi
from conductor import live_migrate, prediction
from godwit import exception

LOG = logging.getLogger(__name__)


def _estimate(conductor, ctxt, source, instance_uuid, info):
    """The source driver's bandwidth and dirty rate, or None, and why not."""
    rpc = conductor.compute_rpc
    if not rpc.can_estimate():
        return None, (f"the conductor sends {rpc.cap.describe()}; estimates need compute "
                      f"RPC {compute_rpcapi.ADDED_IN['estimate_live_migration']}")
    try:
        estimate = rpc.estimate_live_migration(ctxt, source, instance_uuid, info)
    except messaging.MessagingTimeout:
        return None, f"{source} did not answer"
    except (messaging.RemoteError, exception.GodwitException) as e:
        return None, f"{source} could not estimate: {exception.message_of(e)}"
    if estimate is None:
        return None, f"the driver on {source} cannot estimate"
    return estimate, None


def run(conductor, ctxt, instance_uuid, requested_host=None, block_migration="auto"):
    conf = conductor.conf
    found = live_migrate.opening_checks(conductor, instance_uuid, requested_host)
    info, source, need, candidates = found.info, found.source, found.need, found.candidates
    instance = info["instance"]
    refusals = dict(found.refusals)
    if found.refused_host is not None:
        refusals[requested_host] = exception.message_of(found.refused_host)

    estimate, no_estimate = _estimate(conductor, ctxt, source, instance_uuid, info)
    hosts = [{"host": h, "accepted": False, "reason": r, "storage": None, "prediction": None}
             for h, r in sorted(refusals.items())]
    for dest in candidates:
        try:
            migrate_data = conductor.compute_rpc.check_can_live_migrate_destination(
                ctxt, dest, instance_uuid, source, block_migration, instance_info=info)
        except (messaging.MessagingTimeout, messaging.RemoteError,
                exception.GodwitException) as e:
            reason, _ = live_migrate.precheck_refusal(dest, e)
            hosts.append({"host": dest, "accepted": False, "reason": reason,
                          "storage": None, "prediction": None})
            continue
        block = bool(migrate_data.get("block_migration"))
        predicted = None
        if estimate is not None:
            # What the driver says would be sent, where it can tell (memory the
            # guest touched, data in its disks); else the flavor's sizes.
            predicted = prediction.predict(
                estimate.get("memory_mb", instance["memory_mb"]),
                estimate.get("bandwidth_mb_s"), estimate.get("dirty_rate_mb_s"),
                conf.libvirt.live_migration_downtime,
                disk_mb=estimate.get("disk_mb", need["disk_gb"] * 1024) if block else 0)
        hosts.append({"host": dest, "accepted": True, "reason": None,
                      "storage": "block" if block else "shared", "prediction": predicted})
    LOG.info("Dry run of a live migration of %s from %s: %d accepted, %d refused",
             instance_uuid, source, sum(h["accepted"] for h in hosts),
             sum(not h["accepted"] for h in hosts))
    return {"server": instance_uuid, "source": source, "memory_mb": instance["memory_mb"],
            "max_downtime_ms": conf.libvirt.live_migration_downtime,
            "estimate": estimate, "no_estimate_because": no_estimate,
            "hosts": sorted(hosts, key=lambda h: (not h["accepted"], h["host"]))}
