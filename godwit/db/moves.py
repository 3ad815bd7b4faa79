"""The durable side of a move: phase, owner, lease, epoch, step data, intents.

Mixed into :class:`godwit.db.api.Database`. A migration row is the whole
state of its move (docs/crash-safety.md):

* ``status`` is its phase (:mod:`godwit.phases`); :meth:`migration_advance`
  moves it along a named event by compare-and-swap, and only for the holder
  of the current ``epoch``;
* ``owner`` and ``lease_until`` say which conductor drives it and until when,
  on the database's clock (:meth:`clock`), so conductors on several machines
  agree; a conductor takes an expired or unowned move with one
  compare-and-swap that also raises ``epoch`` (fencing: the old owner's writes
  and host steps then fail);
* ``step_data`` holds what one step hands the next;
* ``abort_requested_at`` and ``force_complete_requested_at`` are the user's
  intents, written by the API and carried out by the owner.

Why our own lease and phase table rather than TaskFlow's jobboard:
docs/decisions.md (decision 14).
"""

import datetime
import functools
import json

import sqlalchemy as sa
from oslo_log import log as logging
from sqlalchemy import func, or_, select, update

from godwit import exception, phases, states
from godwit.db import ledger as ledger_mod
from godwit.db import timeline as timeline_mod
from godwit.db.common import _MIG, _MIGRATION_BY_ID, _NODE, _first, updated_row
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)

# Who holds a move is not a change of the move: lease writes keep updated_at
# (which the API's changes-since filters and resize_confirm_window read).
_UNCHANGED = {"updated_at": _MIG.c.updated_at}

# migration_take_slot's default: the source node's own limit.
SOURCE_LIMIT = object()

# Live migrations holding one of their source's slots.
SLOT_HOLDERS = (states.PREPARING, states.RUNNING_MIGRATION, states.POST_MIGRATING,
                states.ROLLING_BACK)

# migration_take_slot's statements, built once.
_LOCK_NODE = update(_NODE).where(_NODE.c.host == sa.bindparam("source")).values(
    host=_NODE.c.host, updated_at=_NODE.c.updated_at)
_LOCK_NODE_RETURNING_LIMIT = _LOCK_NODE.returning(_NODE.c.max_live_migrations)
_NODE_LIMIT = select(_NODE.c.max_live_migrations).where(_NODE.c.host == sa.bindparam("source"))
_SLOTS_USED = select(func.count()).select_from(_MIG).where(
    _MIG.c.source_compute == sa.bindparam("source"),
    _MIG.c.migration_type == states.LIVE_MIGRATION, _MIG.c.status.in_(SLOT_HOLDERS))


_MIG_COLUMNS = frozenset(_MIG.c.keys())


def _check_columns(values):
    """What an advance sets: columns of migrations and plain values (the
    statement is built once and run with them as parameters, where a wrong
    name would be dropped and an SQL expression sent as text)."""
    unknown = set(values) - _MIG_COLUMNS
    if unknown:
        raise ValueError(f"not columns of migrations: {', '.join(sorted(unknown))}")
    for column, value in values.items():
        if isinstance(value, sa.sql.ClauseElement):
            raise ValueError(f"migrations.{column}: an advance sets values, not SQL "
                             "expressions")


@functools.cache
def _advance_statement(fenced, resuming, unless_aborted):
    """The compare-and-swap of an advance, built once per kind: its WHERE takes
    ``w_id``, ``w_status`` (and ``w_epoch``); the other parameters it is run with
    are the columns it sets (SQLAlchemy's compiled cache then serves it)."""
    q = update(_MIG).where(_MIG.c.id == sa.bindparam("w_id"),
                           _MIG.c.status == sa.bindparam("w_status"))
    if fenced:
        q = q.where(_MIG.c.epoch == sa.bindparam("w_epoch"))
    if resuming:
        q = q.where(_MIG.c.awaiting_hosts.is_not(None))
    if unless_aborted:
        q = q.where(_MIG.c.abort_requested_at.is_(None))
    return q


def step_data(migration):
    """The migration's step data as a dict (empty if none)."""
    raw = migration.get("step_data")
    if not raw:
        return {}
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def tuning_pending(migration):
    """The user's tuning recorded on ``migration`` and not applied yet, or None."""
    data = step_data(migration)
    wanted = data.get("user_tuning")
    if not wanted or wanted.get("seq", 0) <= data.get("user_tuning_applied", 0):
        return None
    return wanted


def awaiting(migration):
    raw = migration.get("awaiting_hosts")
    return json.loads(raw) if raw else []


class MoveStore:
    """Durable move state; see the module docstring."""

    # --------------------------------------------------------------- clock
    def clock(self):
        """Now on the database's clock (UTC, naive): one clock for every conductor."""
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            return utcnow()   # one file, one machine: the local clock is the database's
        stmt = {"postgresql": "SELECT timezone('UTC', clock_timestamp())",
                "mysql": "SELECT UTC_TIMESTAMP(6)", "mariadb": "SELECT UTC_TIMESTAMP(6)"}
        with self.engine.connect() as conn:
            now = conn.execute(sa.text(stmt[dialect])).scalar()
        return now.replace(tzinfo=None)

    # --------------------------------------------------------------- phases
    def migration_advance(self, migration, event, values=None, instance_values=None,
                          instance_expected=None, data=None, fenced=True,
                          unless_aborted=False, timeline=None):
        """Move ``migration`` (the row the caller holds) along ``event``.

        The target comes from the phase table. One compare-and-swap: the row
        must still be in the caller's status and, when ``fenced``, carry the
        caller's epoch (a user's intent, such as confirm, is not fenced). In
        the same transaction ``values`` are written to the migration, ``data``
        (a dict) replaces its step data, and ``instance_values`` go to its
        instance, guarded by ``instance_expected``: a phase and what it
        implies for the instance are never seen apart.

        With ``unless_aborted`` the write also requires that no abort was
        asked for meanwhile (AbortRequested otherwise), so a step that ends
        as the user aborts does not carry the move forward. What the move holds
        in the new phase goes to the ledger in the same transaction
        (godwit/db/ledger.py), and the phase to the timeline with
        ``timeline``, entries recorded since the last write
        (godwit/db/timeline.py).

        Returns the new row. Raises InvalidMigrationTransition for an event
        the phase lacks, MigrationFenced when another conductor holds a newer
        epoch, ConcurrentUpdate when the row left the caller's status.
        """
        with self.connection() as conn:
            row = self._advance_in(conn, migration, event, values, instance_values,
                                   instance_expected, data, fenced, unless_aborted,
                                   timeline)
        self.phase_changed(migration, row, event)
        return row

    def phase_changed(self, before, after, event):
        """Tell ``on_phase_change`` (if set: the process's notifier) of a committed
        phase change; ``before`` is None for a move just recorded. Whatever the
        listener does, the change stands."""
        listener = getattr(self, "on_phase_change", None)
        if listener is None:
            return
        try:
            listener(before, after, event)
        except Exception:  # noqa: BLE001 - a lost notification must not fail the move
            LOG.exception("The phase-change listener failed for migration %s",
                          after["id"])

    def _advance_in(self, conn, migration, event, values=None, instance_values=None,
                    instance_expected=None, data=None, fenced=True, unless_aborted=False,
                    timeline=None):
        mtype, old = migration["migration_type"], migration["status"]
        new = phases.target(mtype, old, event)
        if new is None:
            raise exception.InvalidMigrationTransition(migration_type=mtype, old=old,
                                                       new=f"(event {event})")
        values = dict(values or {})
        if data is not None:
            values["step_data"] = json.dumps(data)
        values.update(status=new, updated_at=utcnow(),
                      deadline_at=self._deadline(phases.phase(mtype, new).deadline))
        if new in phases.FINAL:
            # A move that ended has no owner (an unresolved error is taken
            # again, by force, when its hosts return).
            values.update(owner=None, lease_until=None)
            if event != phases.UNRESOLVED:
                values.setdefault("awaiting_hosts", None)
        _check_columns(values)
        q = _advance_statement(fenced, event.startswith(phases.RESUME), unless_aborted)
        values.update(w_id=migration["id"], w_status=old)
        if fenced:
            values["w_epoch"] = migration["epoch"]
        row = updated_row(conn, q, _MIG, _MIGRATION_BY_ID, {"id": migration["id"]},
                          set_values=values)
        if row is None:
            self._explain_miss(conn, migration, fenced, unless_aborted)
        if instance_values:
            self._instance_cas(conn, row["instance_uuid"], instance_values,
                               instance_expected)
        ledger_mod.on_phase(conn, row, dest_changed="dest_compute" in values
                            or event.startswith(phases.RESUME))
        timeline_mod.record(conn, row["id"], list(timeline or ()) + [
            timeline_mod.phase_entry(old, new, event, values.get("error_message"))])
        return row

    def _deadline(self, option):
        conf = getattr(self, "deadlines", None)
        if option is None or conf is None:
            return None
        return utcnow() + datetime.timedelta(seconds=getattr(conf, option))

    @staticmethod
    def _explain_miss(conn, migration, fenced, unless_aborted=False):
        row = _first(conn, _MIGRATION_BY_ID, {"id": migration["id"]})
        if row is None:
            raise exception.MigrationNotFound(migration_id=migration["id"])
        if fenced and row["epoch"] != migration["epoch"]:
            raise exception.MigrationFenced(migration_id=migration["id"],
                                            epoch=migration["epoch"], found=row["epoch"])
        if unless_aborted and row["abort_requested_at"] is not None \
                and row["status"] == migration["status"]:
            raise exception.AbortRequested(migration_id=migration["id"])
        if row["status"] == migration["status"] == states.ERROR_MIGRATION:
            raise exception.ConcurrentUpdate(what=f"Migration {migration['id']}",
                                             expected="an error awaiting hosts",
                                             found="an error awaiting none")
        raise exception.ConcurrentUpdate(what=f"Migration {migration['id']}",
                                         expected=migration["status"], found=row["status"])

    def migration_save_data(self, migration, data, values=None, timeline=None):
        """Replace the step data (and write ``values``) without a phase change,
        for the holder of the migration's epoch while it is still in its status;
        ``timeline`` entries are appended in the same transaction."""
        values = dict(values or {}, step_data=json.dumps(data), updated_at=utcnow())
        with self.connection() as conn:
            res = conn.execute(update(_MIG).where(
                _MIG.c.id == migration["id"], _MIG.c.status == migration["status"],
                _MIG.c.epoch == migration["epoch"]).values(**values))
            if res.rowcount != 1:
                self._explain_miss(conn, migration, True)
            timeline_mod.record(conn, migration["id"], timeline)
            return _first(conn, _MIGRATION_BY_ID, {"id": migration["id"]})

    # --------------------------------------------------------------- leases
    def migration_take(self, migration_id, owner, ttl, force=False):
        """Become the owner of an unfinished move whose lease is free or ours.

        One compare-and-swap on the database's clock: the row is taken if it
        has no owner, its lease has run out, or ``force`` (a reopened error).
        The epoch rises, so the previous owner (even if only paused) is fenced
        off. A conductor taking back its own move (it restarted under the same
        name) raises the epoch too: its old process may still be writing.
        Returns the row, or None if another conductor holds it.
        """
        now = self.clock()
        until = now + datetime.timedelta(seconds=ttl)
        q = update(_MIG).where(_MIG.c.id == migration_id)
        if not force:
            q = q.where(or_(_MIG.c.owner.is_(None), _MIG.c.owner == owner,
                            _MIG.c.lease_until < now))
        with self.connection() as conn:
            res = conn.execute(q.values(owner=owner, lease_until=until,
                                        epoch=_MIG.c.epoch + 1, **_UNCHANGED))
            if res.rowcount != 1:
                return None
            return _first(conn, _MIGRATION_BY_ID, {"id": migration_id})

    def migration_renew_leases(self, owner, ttl):
        """Extend every lease ``owner`` holds; returns the ids it still owns."""
        now = self.clock()
        with self.connection() as conn:
            conn.execute(update(_MIG).where(_MIG.c.owner == owner,
                                            _MIG.c.lease_until >= now)
                         .values(lease_until=now + datetime.timedelta(seconds=ttl),
                                 **_UNCHANGED))
            return [r[0] for r in conn.execute(select(_MIG.c.id).where(
                _MIG.c.owner == owner, _MIG.c.lease_until >= now))]

    def migration_release(self, migration, owner):
        """Give a move up (a clean stop, or a final phase): no owner, no lease."""
        with self.connection() as conn:
            conn.execute(update(_MIG).where(_MIG.c.id == migration["id"],
                                            _MIG.c.owner == owner,
                                            _MIG.c.epoch == migration["epoch"])
                         .values(owner=None, lease_until=None, **_UNCHANGED))

    def migrations_release_all(self, owner):
        with self.connection() as conn:
            return conn.execute(update(_MIG).where(_MIG.c.owner == owner)
                                .values(owner=None, lease_until=None, **_UNCHANGED)).rowcount

    def migrations_to_take(self, owner, limit=100):
        """Unfinished moves nobody holds: no owner, no lease, or a lease that ran
        out (``owner``'s own included: a restarted conductor takes them back)."""
        now = self.clock()
        with self.connection() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(_MIG).where(_MIG.c.status.in_(sorted(phases.IN_PROGRESS)),
                                   or_(_MIG.c.owner.is_(None), _MIG.c.lease_until < now,
                                       _MIG.c.lease_until.is_(None)))
                .order_by(_MIG.c.id).limit(limit))]

    def migrations_owned(self, owner):
        with self.connection() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(_MIG).where(_MIG.c.owner == owner,
                                   _MIG.c.status.in_(sorted(phases.IN_PROGRESS)))
                .order_by(_MIG.c.id))]

    def migrations_awaiting(self, host=None):
        """Unresolved errors (their hosts could not be asked), optionally those
        waiting for ``host``."""
        with self.connection() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                select(_MIG).where(_MIG.c.status == states.ERROR_MIGRATION,
                                   _MIG.c.awaiting_hosts.is_not(None)))]
        return [r for r in rows if host is None or host in awaiting(r)]

    def migrations_of_host(self, host):
        """Unfinished moves in which ``host`` is the source or the destination."""
        with self.connection() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(_MIG).where(_MIG.c.status.in_(sorted(phases.IN_PROGRESS)),
                                   or_(_MIG.c.source_compute == host,
                                       _MIG.c.dest_compute == host))
                .order_by(_MIG.c.id))]

    # --------------------------------------------------------------- intents
    def migration_request(self, migration_id, intent, statuses):
        """Record the user's ``intent`` (``abort`` or ``force_complete``) on a
        migration still in one of ``statuses``. Returns the row, or raises
        ConcurrentUpdate if the migration left those statuses meanwhile."""
        column = {"abort": _MIG.c.abort_requested_at,
                  "force_complete": _MIG.c.force_complete_requested_at}[intent]
        with self.connection() as conn:
            res = conn.execute(update(_MIG).where(
                _MIG.c.id == migration_id, _MIG.c.status.in_(sorted(statuses)))
                .values({column: func.coalesce(column, utcnow()), "updated_at": utcnow()}))
            row = _first(conn, _MIGRATION_BY_ID, {"id": migration_id})
            if res.rowcount == 1:
                timeline_mod.record(conn, migration_id, [timeline_mod.entry(
                    "intent", intent, status=row["status"])])
            if res.rowcount != 1:
                if row is None:
                    raise exception.MigrationNotFound(migration_id=migration_id)
                raise exception.ConcurrentUpdate(what=f"Migration {migration_id}",
                                                 expected=" or ".join(sorted(statuses)),
                                                 found=row["status"])
            return row

    def migration_request_tuning(self, migration_id, intent, changes, statuses, attempts=5):
        """Record the user's tuning of a live migration still in one of
        ``statuses``: ``changes`` (``bandwidth_mib``, ``max_downtime_ms``) are
        merged into the step data's ``user_tuning``, whose ``seq`` rises by one;
        the owner applies it on the source and records the seq it applied as
        ``user_tuning_applied`` (see :func:`tuning_pending`). The intent entry
        (``intent``, e.g. set-speed) goes to the timeline in the same
        transaction. Returns the row; ConcurrentUpdate if the migration left
        ``statuses``."""
        def request(row, data):
            wanted = dict(data.get("user_tuning") or {}, **changes)
            wanted["seq"] = int(wanted.get("seq") or 0) + 1
            data["user_tuning"] = wanted
            return True, [timeline_mod.entry("intent", intent, status=row["status"],
                                             **changes)]
        return self._rewrite_data(migration_id, statuses, request, attempts, touch=True)

    # --------------------------------------------------------------- slots
    def migration_take_slot(self, migration, limit=SOURCE_LIMIT):
        """``queued -> preparing`` if the source has fewer than ``limit`` live
        migrations past 'queued' (None: no limit; by default the source node's
        ``max_live_migrations``, read in the same transaction). The count and
        the move are one transaction; the source's compute node row is locked
        first, so two conductors cannot both take the last slot. Returns the
        row, or None when no slot is free."""
        with self.connection() as conn:
            row = self._take_slot_in(conn, migration, limit)
        if row is not None:
            self.phase_changed(migration, row, "slot")
        return row

    def migration_queue(self, migration, limit=SOURCE_LIMIT, **advance):
        """``accepted -> queued`` (event "checked", with migration_advance's
        ``advance`` arguments) and, in the same transaction, on to ``preparing``
        when the source has a slot free (as :meth:`migration_take_slot`) and no
        abort was asked for: a move that need not wait is queued and started in
        one transaction, not two with a hand-over between them. Returns the
        row as it now is, 'queued' or 'preparing'."""
        with self.connection() as conn:
            queued = self._advance_in(conn, migration, "checked", **advance)
            started = None if queued["abort_requested_at"] else \
                self._take_slot_in(conn, queued, limit)
        self.phase_changed(migration, queued, "checked")
        if started is None:
            return queued
        self.phase_changed(queued, started, "slot")
        return started

    def _take_slot_in(self, conn, migration, limit):
        if limit is not None:
            # A no-op write locks the source's node row on every backend
            # (SQLite's driver starts its transaction only at a write, so
            # a SELECT would not): a second taker waits until we commit. Where
            # the backend has UPDATE ... RETURNING, the same statement reads the
            # node's limit.
            source = {"source": migration["source_compute"]}
            if limit is SOURCE_LIMIT and conn.dialect.update_returning:
                limit = conn.execute(_LOCK_NODE_RETURNING_LIMIT, source).scalar()
            else:
                conn.execute(_LOCK_NODE, source)
                if limit is SOURCE_LIMIT:
                    limit = conn.execute(_NODE_LIMIT, source).scalar()
            # Read after the lock: a taker that waited sees the slot just taken.
            if limit is not None and conn.execute(_SLOTS_USED, source).scalar() >= limit:
                return None
        return self._advance_in(conn, migration, "slot")

    def migrations_queued_on(self, source):
        with self.connection() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(_MIG).where(_MIG.c.source_compute == source,
                                   _MIG.c.status == states.QUEUED).order_by(_MIG.c.id))]

    # --------------------------------------------------------------- step data
    def migration_merge_data(self, migration_id, status, patch, attempts=5, timeline=None):
        """Merge ``patch`` into the step data of a migration still in ``status``,
        whoever owns it: for facts a host reports (a job's tuning). Only a change
        is written, and recorded with ``timeline`` (a repeated report writes
        nothing)."""
        def merge(row, data):
            if all(data.get(k) == v for k, v in patch.items()):
                return False, None
            data.update(patch)
            return True, timeline
        return self._rewrite_data(migration_id, {status}, merge, attempts)

    def _rewrite_data(self, migration_id, statuses, rewrite, attempts=5, touch=False):
        """A compare-and-swap on a migration's step data, whoever owns it, while
        it is in one of ``statuses``; retried if the data changed meanwhile.
        ``rewrite(row, data)`` changes ``data`` in place and returns (whether
        to write it, the timeline entries to record with it). ``touch``: the
        write also sets updated_at. Returns the row with its new data;
        ConcurrentUpdate if the migration left ``statuses``."""
        expected = " or ".join(sorted(statuses))
        for _ in range(attempts):
            with self.connection() as conn:
                row = _first(conn, _MIGRATION_BY_ID, {"id": migration_id})
                if row is None:
                    raise exception.MigrationNotFound(migration_id=migration_id)
                if row["status"] not in statuses:
                    raise exception.ConcurrentUpdate(what=f"Migration {migration_id}",
                                                     expected=expected, found=row["status"])
                data = step_data(row)
                write, entries = rewrite(row, data)
                if not write:
                    return row
                old = row["step_data"]
                values = {"step_data": json.dumps(data)}
                if touch:
                    values["updated_at"] = utcnow()
                q = update(_MIG).where(_MIG.c.id == migration_id,
                                       _MIG.c.status == row["status"],
                                       _MIG.c.step_data.is_(None) if old is None
                                       else _MIG.c.step_data == old)
                if conn.execute(q.values(**values)).rowcount == 1:
                    timeline_mod.record(conn, migration_id, entries)
                    return dict(row, step_data=values["step_data"])
        raise exception.ConcurrentUpdate(what=f"Migration {migration_id}", expected=expected,
                                         found="step data changing under us")

    def migrations_with_cleanup(self, host=None):
        """Migrations with clean-up left for ``host`` (or for any host): it was down
        when its turn came."""
        q = select(_MIG).where(_MIG.c.cleanup_hosts.is_not(None))
        if host is not None:
            q = q.where(_MIG.c.cleanup_hosts.contains(json.dumps(host)))
        with self.connection() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        return [r for r in rows if host is None or
                host in json.loads(r["cleanup_hosts"] or "[]")]
