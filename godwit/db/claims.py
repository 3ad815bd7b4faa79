"""Claims on a host's capacity, without races.

Mixed into :class:`godwit.db.api.Database`. What a host holds is derived
(decision 4): the instances whose ``host`` it is, adjusted by the unfinished
moves heading to it or (a cold move's source) able to come back to it; see
:func:`usage_on`. A claim is therefore the write that makes a guest count there
(a build's ``instances.host``, a move's ``dest_compute``); a move that ends or a
guest that is deleted stops counting at once, so a claim is released exactly
once, by the same write that ends what held it.

What was missing was the check: two requests could read the same free room
and both claim it. :meth:`ClaimStore.claim` checks the room and writes the
claim in one transaction, guarded by a generation on the compute node, as
placement guards resource providers: the transaction bumps the generation it
read with a compare-and-swap, so of two claims that read the same generation
only one commits; the other reads again and is refused if the room is gone.

On PostgreSQL and MariaDB the node row is also locked (``SELECT ... FOR
UPDATE``) for the claim's transaction, so claims on one host queue behind each
other instead of losing the swap and starting over: with a dozen moves towards
one host at once, a count of retries ran out (the chaos matrix saw "10 claims
in a row taken first"). SQLite has no row locks; its writers are serialised by
the database lock, and a claim whose snapshot went stale reads again. Either
way a claim gives up only after :data:`CLAIM_PATIENCE` seconds of losing.
"""

import random
import time

import sqlalchemy as sa
from sqlalchemy import func, or_, select, update

from godwit import exception, phases, states
from godwit.db import ledger
from godwit.db.common import _FLAVOR, _INST, _MIG, _NODE

# resource, its name in messages, its unit, the allocation ratio option
RESOURCES = (("memory_mb", "RAM", "MiB", "ram_allocation_ratio"),
             ("vcpus", "vCPUs", "", "cpu_allocation_ratio"),
             ("disk_gb", "disk", "GiB", "disk_allocation_ratio"))


# How long a claim keeps reading again after losing to other claims on the
# same host before it answers ConcurrentUpdate (409). Each loss means another
# claim committed, so only a host under a storm of claims gets near it.
CLAIM_PATIENCE = 30.0


class _Lost(Exception):
    """Another claim bumped the generation first: read again."""


# What a host holds, in one statement of two halves (built once; they take
# ``host``). The instances whose host it is count at their current flavor;
# each unfinished move heading to it or leaving it then adjusts that:
#
# * its destination holds the new flavor (the instance's own for a move that
#   keeps it) from the claim until the move ends. Once the instance has been
#   switched to the destination it already counts there, at the flavor its row
#   has, so the move adds only the difference: a resize switches the host at
#   ``copied`` but writes the new flavor only at ``finished``, and in between a
#   larger flavor would otherwise be under-counted and a claim could take the
#   difference.
# * a cold migration's or resize's source holds the old flavor until the move
#   ends, though the instance has left it, because a revert or a rollback
#   brings the guest back (Nova keeps the source's allocation on the migration
#   until confirm or revert for the same reason). With a resize to the same
#   host this makes old plus new, as the claim asked for. A live migration's
#   source holds nothing once switched over: the guest cannot return.
#
# A move counts while it is unfinished, and also while it is an 'error' that
# waits for a host (decision 17): it resumes when the host returns, with no
# claim of its own, so its room must not be taken meanwhile.
_NEW_FLAVOR = _FLAVOR.alias("new_flavor")
_OLD_FLAVOR = _FLAVOR.alias("old_flavor")
_HOST = sa.bindparam("host")
_COLD_TYPES = (states.COLD_MIGRATION, states.RESIZE)


def _held(flavor, column):
    return func.coalesce(flavor.c[column], _INST.c[column])


def _by_moves(current, new, old):
    """The moves' adjustment of one resource on the host (see above).

    A NULL (no destination yet, no host) makes a condition unknown, which a
    CASE takes as false: such a move adds nothing there.
    """
    to_host = _MIG.c.dest_compute == _HOST
    at_dest = sa.case((sa.and_(to_host, _INST.c.host == _HOST), new - current),
                      (to_host, new), else_=0)
    at_source = sa.case((sa.and_(_MIG.c.source_compute == _HOST,
                                 _MIG.c.migration_type.in_(_COLD_TYPES),
                                 or_(_MIG.c.dest_compute == _HOST,
                                     func.coalesce(_INST.c.host, "") != _HOST)), old),
                        else_=0)
    return func.coalesce(func.sum(at_dest + at_source), 0)


_USED_BY_INSTANCES = (
    select(func.coalesce(func.sum(_INST.c.memory_mb), 0),
           func.coalesce(func.sum(_INST.c.vcpus), 0),
           func.coalesce(func.sum(_INST.c.root_gb + _INST.c.ephemeral_gb), 0),
           func.count(_INST.c.id))
    .where(_INST.c.host == _HOST, _INST.c.deleted_at.is_(None)))
_USED_BY_MOVES = (
    select(*(_by_moves(current, new, old) for current, new, old in (
        (_INST.c.memory_mb, _held(_NEW_FLAVOR, "memory_mb"), _held(_OLD_FLAVOR, "memory_mb")),
        (_INST.c.vcpus, _held(_NEW_FLAVOR, "vcpus"), _held(_OLD_FLAVOR, "vcpus")),
        (_INST.c.root_gb + _INST.c.ephemeral_gb,
         _held(_NEW_FLAVOR, "root_gb") + _held(_NEW_FLAVOR, "ephemeral_gb"),
         _held(_OLD_FLAVOR, "root_gb") + _held(_OLD_FLAVOR, "ephemeral_gb")))))
    .select_from(_MIG)
    .join(_INST, _INST.c.uuid == _MIG.c.instance_uuid)
    .outerjoin(_NEW_FLAVOR, _NEW_FLAVOR.c.id == _MIG.c.new_instance_type_id)
    .outerjoin(_OLD_FLAVOR, _OLD_FLAVOR.c.id == _MIG.c.old_instance_type_id)
    .where(or_(_MIG.c.dest_compute == _HOST, _MIG.c.source_compute == _HOST),
           or_(_MIG.c.status.in_(sorted(phases.IN_PROGRESS)),
               # an 'error' that waits for a host resumes when it returns
               sa.and_(_MIG.c.status == states.ERROR_MIGRATION,
                       _MIG.c.awaiting_hosts.is_not(None))),
           # a deleted guest holds nothing, whatever became of its move
           _INST.c.deleted_at.is_(None)))


# Both in one statement, so one snapshot: a move that switches its instance to
# the host between two statements would be counted in neither (read as incoming
# before the switch was committed, and in the instances after it, it was seen
# as neither), and a claim racing it could take the room the move holds. The
# generation guards only against other claims; a switch does not bump it.
_ON_HOST = _USED_BY_INSTANCES.subquery("on_host")
_MOVES = _USED_BY_MOVES.subquery("moves")
_USAGE = select(_ON_HOST, _MOVES).select_from(_ON_HOST.join(_MOVES, sa.true()))


def usage_on(conn, host):
    """Resources held on ``host``: its instances, adjusted by the moves to and from it."""
    row = conn.execute(_USAGE, {"host": host}).one()
    on_host, moves = row[:4], row[4:]
    return {"memory_mb": int(on_host[0]) + int(moves[0]),
            "vcpus": int(on_host[1]) + int(moves[1]),
            "disk_gb": int(on_host[2]) + int(moves[2]),
            "running_vms": int(on_host[3])}


def free_of(node, used, ratios):
    """Room left on ``node`` with ``used`` held, by the allocation ratios."""
    totals = {"memory_mb": node["memory_mb"], "vcpus": node["vcpus"],
              "disk_gb": node["local_gb"]}
    return {res: int(totals[res] * getattr(ratios, option)) - used[res]
            for res, _name, _unit, option in RESOURCES}


def shortfall(node, free, need):
    """The first resource ``need`` does not fit in, as HostCapacityExceeded; None if it fits."""
    for res, name, unit, _option in RESOURCES:
        if need[res] > free[res]:
            return exception.HostCapacityExceeded(
                host=node["host"], resource=name, needed=f"{need[res]} {unit}".strip(),
                free=f"{max(free[res], 0)} {unit}".strip())
    return None


class ClaimStore:
    """Claims checked and written in one transaction; see the module docstring."""

    def claim(self, host, need, ratios, write, patience=None):
        """Check that ``host`` has room for ``need`` and call ``write(conn)`` to make
        the claim, in one transaction guarded by the node's generation.

        ``write`` must raise (ConcurrentUpdate...) if what it claims for has moved
        on; then nothing is written. Returns the node row.
        Raises ComputeHostNotFound, or HostCapacityExceeded naming the resource.
        """
        deadline = time.monotonic() + (CLAIM_PATIENCE if patience is None else patience)
        lost = 0
        while True:
            try:
                with self.connection() as conn:
                    node = conn.execute(select(_NODE).where(_NODE.c.host == host)
                                        .with_for_update()).first()
                    if node is None:
                        raise exception.ComputeHostNotFound(host=host)
                    node = dict(node._mapping)
                    lacking = shortfall(node, free_of(node, usage_on(conn, host), ratios),
                                        need)
                    if lacking is not None:
                        raise lacking
                    write(conn)
                    # The compare-and-swap: only one claim per generation commits.
                    bumped = conn.execute(update(_NODE).where(
                        _NODE.c.id == node["id"], _NODE.c.generation == node["generation"])
                        .values(generation=_NODE.c.generation + 1,
                                updated_at=_NODE.c.updated_at)).rowcount
                    if bumped != 1:
                        raise _Lost()
                    return node
            except _Lost:
                pass
            except sa.exc.OperationalError as e:
                # SQLite: a reader whose snapshot went stale cannot start writing
                # ("database is locked"): read again, as after a lost swap.
                if "locked" not in str(e):
                    raise
            lost += 1
            if time.monotonic() >= deadline:
                raise exception.ConcurrentUpdate(
                    what=f"Compute node {host}", expected="a free claim",
                    found=f"{lost} claims in a row taken first")
            # A short random pause, so that the losers do not meet again at once.
            time.sleep(random.uniform(0, min(0.05, 0.002 * lost)))

    def claim_move(self, migration, host, need, ratios, dest_node=None):
        """Claim ``host``'s room for an unfinished move: its dest_compute is the claim."""
        def write(conn):
            current = conn.execute(select(_MIG.c.dest_compute).where(
                _MIG.c.id == migration["id"])).scalar()
            res = conn.execute(update(_MIG).where(
                _MIG.c.id == migration["id"], _MIG.c.status == migration["status"])
                .values(dest_compute=host, dest_node=dest_node or host))
            if res.rowcount != 1:
                raise exception.ConcurrentUpdate(what=f"Migration {migration['id']}",
                                                 expected=migration["status"],
                                                 found="another status")
            entries = [(host, "claim", ledger.PRESENT)]
            if current and current != host:
                entries.append((current, "claim", ledger.RELEASED))
            ledger.record(conn, migration, entries)
        return self.claim(host, need, ratios, write)

    def claim_build(self, instance_uuid, host, need, ratios, values, expected):
        """Claim ``host``'s room for a new server: its instances.host is the claim."""
        def write(conn):
            self._instance_cas(conn, instance_uuid, dict(values, host=host, node=host),
                               expected)
        return self.claim(host, need, ratios, write)

    def host_usage(self, host):
        """Resources held on ``host`` (see :func:`usage_on`)."""
        with self.connection() as conn:
            return usage_on(conn, host)
