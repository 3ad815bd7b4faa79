"""The reconciler: what hosts have that nothing should have any more.

Each host says what of Godwit's it holds (``host_inventory``: domains,
instance directories, VIFs, volume connections, filter rules); the database
says whose each thing is and where that guest lives. A thing is an orphan
when its instance was deleted, or lives on another host and no unfinished
move of it involves this one. Never an orphan: anything of an instance whose
host this is, anything a move under way (or an error awaiting this host)
still needs, an instance directory seen through storage this host shares with
the instance's host. A domain that runs is reported and never removed (the
host refuses too), and a thing whose instance the database does not know is
reported for an operator, not removed: it may not be Godwit's.

The ledger (:mod:`godwit.db.ledger`) says which move made a thing: each
orphan names the moves whose unreleased entries cover it (``moves``), so an
operator sees which broken move left what. Whenever a host's inventory is
read, the ledger is brought in line with it (:func:`settle_ledger`): an entry
of a move that is over, for a thing the host no longer has, is released; and
what the reconciler removes is released with it.

Runs: ``godwit-manage reconcile [--host H] [--fix]``; every
``reconcile_interval`` seconds in one conductor (removing only with
``reconcile_fix``); and when an agent starts, before it takes work: its
report carries its inventory and it removes its orphans first
(:meth:`conductor.manager.ConductorManager.service_report`).
"""

import json

from oslo_log import log as logging

from godwit import context as godwit_context
from godwit import exception, phases, states
from godwit.db import ledger, moves

LOG = logging.getLogger(__name__)

KINDS = ("domains", "dirs", "vifs", "volumes", "filters")


def _unfinished_moves(db, instance_uuid, host):
    """Moves of the instance that still need ``host``."""
    out = []
    for m in db.migration_list({"instance_uuid": instance_uuid}):
        involved = host in (m["source_compute"], m["dest_compute"])
        if not involved:
            continue
        if m["status"] in phases.IN_PROGRESS or host in moves.awaiting(m):
            out.append(m)
    return out


def classify(db, host, inventory):
    """Every orphan in ``inventory`` (host_inventory's answer): a list of dicts with
    kind, instance_uuid, name, why, removable, and what removing it takes."""
    node = db.compute_node_get_by_host(host) or {}
    orphans, instances, vifs_by_id = [], {}, {}

    def instance(uuid):
        if uuid not in instances:
            try:
                instances[uuid] = db.instance_get(uuid, read_deleted=True)
            except exception.InstanceNotFound:
                instances[uuid] = None
        return instances[uuid]

    inventory = dict(inventory)
    vifs = []
    for vif in inventory.get("vifs", []):
        row = db.vif_find(vif["vif_id"])
        if row is not None:
            vifs_by_id[vif["vif_id"]] = row
            if vif.get("instance_uuid") is None:   # a tap knows only its VIF's id
                vif = dict(vif, instance_uuid=row["instance_uuid"])
        vifs.append(vif)
    inventory["vifs"] = vifs
    made_by = {}
    for entry in db.ledger_open_on(host):
        made_by.setdefault((entry["instance_uuid"], entry["kind"]), []).append(entry)
    for kind in KINDS:
        for item in inventory.get(kind, []):
            uuid = item.get("instance_uuid")
            name = item.get("device") or item.get("path") or item.get("volume_id") or uuid
            inst = instance(uuid) if uuid else None
            why = _orphan_reason(db, host, node, kind, item, inst)
            if why is None:
                continue
            orphan = {"host": host, "kind": kind, "instance_uuid": uuid, "name": name,
                      "why": why, "removable": inst is not None}
            if kind == "domains" and item.get("active"):
                orphan.update(removable=False, why=why + "; it runs: left alone, stop it "
                                                       "by hand if it is not wanted")
            entries = made_by.get((uuid, ledger.kind_of(kind, item)), [])
            orphan.update(moves=sorted({e["migration_id"] for e in entries}),
                          ledger_ids=[e["id"] for e in entries])
            orphan.update(_removal(db, kind, item, uuid, vifs_by_id))
            if kind == "vifs" and orphan.get("vif") is None:
                orphan["removable"] = False
            orphans.append(orphan)
    return orphans


def settle_ledger(db, host, inventory):
    """Release the ledger entries on ``host`` of moves that are over (and do not
    await this host) for things its ``inventory`` no longer has. Returns how many."""
    held = {(item.get("instance_uuid"), ledger.kind_of(kind, item))
            for kind in KINDS for item in inventory.get(kind, [])}
    for vif in inventory.get("vifs", []):
        if vif.get("instance_uuid") is None:   # a tap knows only its VIF's id
            row = db.vif_find(vif["vif_id"])
            if row is not None:
                held.add((row["instance_uuid"], "vifs"))
    gone = [e["id"] for e in db.ledger_open_on(host)
            if e["kind"] != "claim"
            and e["migration_status"] in phases.FINAL
            and host not in moves.awaiting({"awaiting_hosts": e["migration_awaiting"]})
            and (e["instance_uuid"], e["kind"]) not in held]
    db.ledger_release(gone)
    return len(gone)


def _orphan_reason(db, host, node, kind, item, inst):
    if inst is None:
        if not item.get("instance_uuid"):
            return "no instance of Godwit's is known to own it"
        return f"instance {item['instance_uuid']} is not in the database"
    if inst.get("deleted_at") is not None:
        return f"its instance was deleted ({inst['deleted_at']:%Y-%m-%d %H:%M:%S})"
    if inst.get("host") == host:
        return None
    if _unfinished_moves(db, inst["uuid"], host):
        return None
    if kind == "dirs" and item.get("kind") == "instance" and inst.get("host"):
        other = db.compute_node_get_by_host(inst["host"]) or {}
        if other.get("instances_path") and other["instances_path"] == node.get(
                "instances_path"):
            return None   # the instance's own directory, seen through shared storage
    return f"its instance lives on {inst.get('host') or 'no host'}"


def _removal(db, kind, item, uuid, vifs_by_id):
    """What the host needs to remove the thing (the rows the drivers take)."""
    if kind == "dirs":
        return {"dir_kind": item.get("kind")}
    if kind == "vifs":
        return {"vif": vifs_by_id.get(item["vif_id"])}
    if kind == "volumes" and uuid:
        bdm = next((b for b in db.bdm_list(uuid) if b["volume_id"] == item["volume_id"]),
                   {"volume_id": item["volume_id"], "destination_type": "volume"})
        return {"bdm": bdm}
    if kind == "filters" and uuid:
        return {"network_info": db.vif_list(uuid)}
    return {}


def reconcile(db, compute_rpc, host, fix=False, ctxt=None):
    """Find ``host``'s orphans, and remove the removable ones with ``fix``.

    Returns the orphans, each with ``removed`` (True, False with ``reason``, or
    None when not asked to remove).
    """
    ctxt = ctxt or godwit_context.get_admin_context()
    inventory = compute_rpc.host_inventory(ctxt, host)
    orphans = classify(db, host, inventory)
    settle_ledger(db, host, inventory)
    for o in orphans:
        o["removed"] = None
    if fix:
        removable = [o for o in orphans if o["removable"]]
        if removable:
            done = {(r["kind"], r["instance_uuid"], r["name"]): r
                    for r in compute_rpc.remove_orphans(ctxt, host, _wire(removable))}
            for o in removable:
                r = done.get((o["kind"], o["instance_uuid"], o["name"]), {})
                o["removed"] = bool(r.get("removed"))
                o["reason"] = r.get("reason")
            db.ledger_release([i for o in removable if o["removed"] for i in o["ledger_ids"]])
    for o in orphans:
        LOG.log(20 if o["removed"] else 30, "Orphan on %s: %s %s of %s (%s)%s%s", host,
                o["kind"], o["name"], o["instance_uuid"], o["why"],
                f", left by migration {', '.join(map(str, o['moves']))}" if o["moves"] else "",
                " - removed" if o["removed"] else
                f" - not removed: {o.get('reason')}" if o["removed"] is False else "")
    return orphans


def _wire(orphans):
    """The orphans as the host's remove_orphans takes them (plain JSON)."""
    return [json.loads(json.dumps(o, default=str)) for o in orphans]


def reconcile_all(conductor, fix):
    """Every host that is up (the periodic task)."""
    found = []
    for svc in conductor.db.service_list(binary=states.SERVICE_COMPUTE):
        if svc["disabled"] or not conductor.db.is_host_up(svc,
                                                          conductor.conf.service_down_time):
            continue
        try:
            found += reconcile(conductor.db, conductor.compute_rpc, svc["host"], fix)
        except Exception:
            LOG.exception("Reconciling %s failed; it is tried again next time", svc["host"])
    return found
