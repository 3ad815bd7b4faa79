"""The durable side of a host drain: its row in ``host_drains``.

Mixed into :class:`godwit.db.api.Database`. A drain's row is its whole state
(docs/host-drain.md), as a migration's row is its move's:

* ``status``: ``running`` -> ``finished``, or ``running`` -> ``cancelling`` ->
  ``cancelled`` once a cancel was asked for (``cancel_requested_at``);
* ``report``: one entry per guest of the host (JSON list, in the drain's
  order) with its state and the ids of the moves the drain started for it;
  the moves themselves are migration rows, driven by the engine as any other;
* ``owner``, ``lease_until`` and ``epoch``: the conductor that drives it, on
  the database's clock, fenced as migrations are (godwit/db/moves.py): a
  conductor takes a drain whose lease ran out with one compare-and-swap that
  raises the epoch, and every later write of the previous owner is refused.

Creating a drain also disables the host's compute service, in the same
transaction as the check that no other drain runs there.
"""

import datetime
import json

from sqlalchemy import insert, or_, select, update

from godwit import exception, states
from godwit.db import models
from godwit.db.common import _INST, _SVC, _new_uuid
from godwit.timeutils import utcnow

_DRAIN = models.HostDrain.__table__

RUNNING, CANCELLING, FINISHED, CANCELLED = "running", "cancelling", "finished", "cancelled"
ACTIVE = (RUNNING, CANCELLING)
STATUSES = (RUNNING, CANCELLING, FINISHED, CANCELLED)
FALLBACKS = ("skip", "cold", "leave")
ON_CANCEL = ("abort", "finish")

# A guest's state in a drain's report (conductor/drain.py says what each means).
PENDING, MOVING, COLD_MOVING = "pending", "moving", "cold-moving"
MOVED, SKIPPED, LEFT, FAILED, GONE = "moved", "skipped", "left", "failed", "gone"
UNDER_WAY = (MOVING, COLD_MOVING)
GUEST_STATES = (PENDING, MOVING, COLD_MOVING, MOVED, SKIPPED, LEFT, FAILED, GONE)

# Who holds a drain is not a change of the drain (as for migrations).
_UNCHANGED = {"updated_at": _DRAIN.c.updated_at}


def decoded(row):
    """A drain row as a dict, its report a list."""
    if row is None:
        return None
    d = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    d["report"] = json.loads(d.get("report") or "[]")
    return d


def disabled_reason(drain_uuid):
    return f"drain {drain_uuid}"


def report_for(instances):
    """The report of a new drain: the host's guests, easiest first.

    Ordered by predicted difficulty: a live migration's length grows with the
    memory it must copy (and re-copy as the guest dirties it), then with the
    disks a block migration streams. Smallest first, so most guests leave the
    host soonest, and the few large ones (most likely to hit the per-guest
    timeout) neither hold the small ones back nor fill the slots first.
    """
    ordered = sorted(instances, key=lambda i: (i["memory_mb"],
                                               i["root_gb"] + i["ephemeral_gb"], i["id"]))
    return [{"instance_uuid": i["uuid"], "name": i["display_name"],
             "memory_mb": i["memory_mb"], "state": PENDING, "migrations": [],
             "migration_id": None, "kind": None, "destination": None, "reason": None,
             "asked_at": None} for i in ordered]


class DrainStore:
    """Durable drain state; see the module docstring."""

    def drain_create(self, host, values):
        """Record a drain of ``host`` and disable its compute service, or refuse.

        One transaction: the host's compute service row is written first (the
        disable), which locks it on every backend, so of two drains asked for
        the same host at once the second sees the first and is refused (409).
        The report lists the host's guests in :func:`report_for`'s order.
        """
        drain_uuid = _new_uuid()
        now = utcnow()
        with self.connection() as conn:
            svc = conn.execute(select(_SVC).where(
                _SVC.c.host == host, _SVC.c.binary == states.SERVICE_COMPUTE)).first()
            if svc is None:
                raise exception.NotFound(
                    f"Host {host} has no compute service; 'godwit service list' shows "
                    "the hosts that can be drained.")
            conn.execute(update(_SVC).where(_SVC.c.id == svc.id).values(
                disabled=True, disabled_reason=disabled_reason(drain_uuid), updated_at=now))
            other = conn.execute(select(_DRAIN.c.uuid, _DRAIN.c.status).where(
                _DRAIN.c.host == host, _DRAIN.c.status.in_(ACTIVE))).first()
            if other is not None:
                # Raising rolls the disable back: a refusal changes nothing.
                raise exception.Conflict(
                    f"Host {host} is already being drained (drain {other.uuid}, "
                    f"{other.status}); follow it with 'godwit host drain-status "
                    f"{other.uuid}' or cancel it with 'godwit host drain-cancel "
                    f"{other.uuid}'.")
            instances = [dict(r._mapping) for r in conn.execute(
                select(_INST).where(_INST.c.host == host, _INST.c.deleted_at.is_(None))
                .order_by(_INST.c.id))]
            conn.execute(insert(_DRAIN).values(
                dict(values, uuid=drain_uuid, host=host, status=RUNNING, epoch=0,
                     report=json.dumps(report_for(instances)), created_at=now)))
            return decoded(conn.execute(select(_DRAIN).where(
                _DRAIN.c.uuid == drain_uuid)).first())

    def drain_get(self, drain_uuid):
        with self.connection() as conn:
            row = conn.execute(select(_DRAIN).where(_DRAIN.c.uuid == drain_uuid)).first()
        if row is None:
            raise exception.NotFound(f"Drain {drain_uuid} could not be found; "
                                     "GET /os-host-drains lists the drains.")
        return decoded(row)

    def drain_list(self, host=None, statuses=None):
        """Drains, newest first."""
        q = select(_DRAIN).order_by(_DRAIN.c.id.desc())
        if host is not None:
            q = q.where(_DRAIN.c.host == host)
        if statuses:
            q = q.where(_DRAIN.c.status.in_(list(statuses)))
        with self.connection() as conn:
            return [decoded(r) for r in conn.execute(q)]

    def drain_request_cancel(self, drain_uuid):
        """Record a cancel: ``running -> cancelling``. A drain already
        cancelling is left as it is (a cancel asked twice is one cancel);
        one that ended is a 409."""
        now = utcnow()
        with self.connection() as conn:
            conn.execute(update(_DRAIN).where(
                _DRAIN.c.uuid == drain_uuid, _DRAIN.c.status == RUNNING).values(
                status=CANCELLING, cancel_requested_at=now, updated_at=now))
            row = conn.execute(select(_DRAIN).where(_DRAIN.c.uuid == drain_uuid)).first()
        if row is None:
            raise exception.NotFound(f"Drain {drain_uuid} could not be found; "
                                     "GET /os-host-drains lists the drains.")
        if row.status not in ACTIVE:
            raise exception.Conflict(f"Drain {drain_uuid} already ended ({row.status}); "
                                     "there is nothing to cancel.")
        return decoded(row)

    # ------------------------------------------------------------ holding
    def drain_take(self, drain_uuid, owner, ttl):
        """Become the owner of an active drain whose lease is free, ran out, or is
        ``owner``'s own from before a restart. Raises the epoch. The row, or None."""
        now = self.clock()
        with self.connection() as conn:
            res = conn.execute(update(_DRAIN).where(
                _DRAIN.c.uuid == drain_uuid, _DRAIN.c.status.in_(ACTIVE),
                or_(_DRAIN.c.owner.is_(None), _DRAIN.c.owner == owner,
                    _DRAIN.c.lease_until < now))
                .values(owner=owner, lease_until=now + datetime.timedelta(seconds=ttl),
                        epoch=_DRAIN.c.epoch + 1, **_UNCHANGED))
            if res.rowcount != 1:
                return None
            return decoded(conn.execute(select(_DRAIN).where(
                _DRAIN.c.uuid == drain_uuid)).first())

    def drain_renew(self, drain, ttl):
        """Extend the lease of ``drain`` (the row the caller holds); the row
        again, or None if it was taken over (or ended) meanwhile."""
        now = self.clock()
        with self.connection() as conn:
            res = conn.execute(update(_DRAIN).where(
                _DRAIN.c.id == drain["id"], _DRAIN.c.owner == drain["owner"],
                _DRAIN.c.epoch == drain["epoch"], _DRAIN.c.status.in_(ACTIVE))
                .values(lease_until=now + datetime.timedelta(seconds=ttl), **_UNCHANGED))
            if res.rowcount != 1:
                return None
            return decoded(conn.execute(select(_DRAIN).where(
                _DRAIN.c.id == drain["id"])).first())

    def drain_save(self, drain, report, status=None):
        """Write the report (and a new status) for the holder of the drain's
        epoch. A cancel recorded meanwhile is kept: ``running`` is only ever
        replaced by what the holder read, so ``cancelling`` wins. Returns the
        row; raises ConcurrentUpdate if it was taken over or its status changed."""
        values = {"report": json.dumps(report), "updated_at": utcnow()}
        if status is not None:
            values["status"] = status
            if status in (FINISHED, CANCELLED):
                values.update(finished_at=utcnow(), owner=None, lease_until=None)
        with self.connection() as conn:
            q = update(_DRAIN).where(_DRAIN.c.id == drain["id"],
                                     _DRAIN.c.epoch == drain["epoch"],
                                     _DRAIN.c.owner == drain["owner"])
            if status is not None:
                # A status change is from the status the holder decided on.
                q = q.where(_DRAIN.c.status == drain["status"])
            if conn.execute(q.values(**values)).rowcount != 1:
                raise exception.ConcurrentUpdate(
                    what=f"Drain {drain['uuid']}", expected=f"epoch {drain['epoch']} of "
                    f"{drain['owner']} in {drain['status']}", found="another writer")
            return decoded(conn.execute(select(_DRAIN).where(
                _DRAIN.c.id == drain["id"])).first())

    def drains_release_all(self, owner):
        """A conductor stops: hand its drains over at once."""
        with self.connection() as conn:
            return conn.execute(update(_DRAIN).where(_DRAIN.c.owner == owner)
                                .values(owner=None, lease_until=None, **_UNCHANGED)).rowcount

    def drain_host_guests(self, host):
        """The guests on ``host`` now (not deleted), oldest first, as
        :func:`report_for` takes them."""
        with self.connection() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(_INST).where(_INST.c.host == host, _INST.c.deleted_at.is_(None))
                .order_by(_INST.c.id))]

    def drains_active(self):
        with self.connection() as conn:
            return [decoded(r) for r in conn.execute(
                select(_DRAIN).where(_DRAIN.c.status.in_(ACTIVE)).order_by(_DRAIN.c.id))]

