"""The ledger: what each move made on each host (table ``move_resources``).

Usage stays derived (decision 4), so once a move was over nothing said what
its hosts might still hold. Now every phase change writes, in its own
transaction, what the phase table (``holds`` in :mod:`godwit.phases`) says the
move holds from then on: the phase before a host step marks what the step is
about to make ``planned`` (it may exist: the step may have run or half run),
the phase after it ``present``. A move that ends marks all it held
``released``: undone, or handed on to the guest (a destination's directory,
domain, VIFs become the guest's own when the move completes). A move that
ends in ``error`` releases only its claim (it stops counting against the
destination) and keeps the rest as it was, which is what an operator needs:
what the broken move may have left, and where. The claim itself is recorded
by the claim's own transaction (:meth:`godwit.db.claims.ClaimStore.claim_move`).

The kinds: ``claim`` (room on the destination), ``instance_dir``,
``resize_dir`` (a cold move's set-aside source files), ``domain``, ``vifs``,
``volumes``, ``filter``.

So after any crash, and for a host that was away, the ledger says which move
left what where; the reconciler (:mod:`conductor.reconciler`) names it with
each orphan and marks what it removes released.
"""

import functools

from sqlalchemy import bindparam, func, select, update

from godwit import phases, states
from godwit.db import models
from godwit.timeutils import utcnow

PLANNED, PRESENT, RELEASED = "planned", "present", "released"
KINDS = ("claim", "instance_dir", "resize_dir", "domain", "vifs", "volumes", "filter")


def kind_of(inventory_kind, item):
    """The ledger kind of a thing in a host's inventory (conductor/reconciler.py)."""
    if inventory_kind == "dirs":
        return "resize_dir" if item.get("kind") == "resize" else "instance_dir"
    return {"domains": "domain", "vifs": "vifs", "volumes": "volumes",
            "filters": "filter"}[inventory_kind]


_RES = models.MoveResource.__table__

# Statements built once (as in godwit/db/common.py): the ledger is written
# without reading it first, with one upsert of the rows wanted (each its own
# (migration, host, kind) row, unique), or one UPDATE releasing them.
_RELEASE_ALL = update(_RES).where(
    _RES.c.migration_id == bindparam("mid"), _RES.c.state != RELEASED).values(
    state=RELEASED, updated_at=bindparam("now"))
_RELEASE_CLAIM = _RELEASE_ALL.where(_RES.c.kind == "claim")
_RELEASE_OTHER_CLAIMS = _RELEASE_CLAIM.where(_RES.c.host != bindparam("dest"))
_ROW = {c: bindparam(c) for c in ("migration_id", "instance_uuid", "host", "kind", "state",
                                  "created_at")}


@functools.cache
def _upsert(dialect):
    """INSERT of one row (run as an executemany: psycopg2's and PyMySQL's are
    one multi-row statement) that, where the (migration, host, kind) row
    exists, sets its state instead, touching updated_at only when it changes."""
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as dialect_insert
        ins = dialect_insert(_RES).values(_ROW)
        # MySQL assigns left to right: updated_at is decided on the old state.
        return ins.on_duplicate_key_update([
            ("updated_at", func.if_(_RES.c.state != ins.inserted.state,
                                    ins.inserted.created_at, _RES.c.updated_at)),
            ("state", ins.inserted.state)])
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        raise ValueError(f"no ledger upsert for database {dialect!r}; Godwit runs on "
                         "SQLite, PostgreSQL, MySQL and MariaDB")
    ins = dialect_insert(_RES).values(_ROW)
    return ins.on_conflict_do_update(
        index_elements=[_RES.c.migration_id, _RES.c.host, _RES.c.kind],
        set_={"state": ins.excluded.state, "updated_at": ins.excluded.created_at},
        where=_RES.c.state != ins.excluded.state)


def record(conn, migration, entries):
    """Write ``entries`` [(host, kind, state)] for ``migration`` in ``conn``'s
    transaction: a row per (migration, host, kind), its state replaced."""
    _upsert_rows(conn, migration, {(host, kind): state for host, kind, state in entries
                                   if host}, utcnow())


def _upsert_rows(conn, migration, wanted, now):
    if wanted:
        conn.execute(_upsert(conn.dialect.name), [
            {"migration_id": migration["id"], "instance_uuid": migration["instance_uuid"],
             "host": host, "kind": kind, "state": state, "created_at": now}
            for (host, kind), state in wanted.items()])


def on_phase(conn, migration, dest_changed=False):
    """Record what ``migration`` (the row just written) holds in its new phase,
    without reading the ledger first.

    ``dest_changed``: the phase change also wrote the destination (or resumed
    the move), so claims held on any other host are released as well; a claim
    that moves otherwise (:meth:`godwit.db.claims.ClaimStore.claim_move`)
    releases the old one itself."""
    phase = phases.phase(migration["migration_type"], migration["status"])
    now = utcnow()
    # An 'error' that waits for a host resumes when the host returns: it keeps
    # its claim (claims.usage_on counts it) and everything else, as an error does.
    unresolved = (migration["status"] == states.ERROR_MIGRATION
                  and bool(migration.get("awaiting_hosts")))
    if phase.final and not unresolved:
        error = migration["status"] == states.ERROR_MIGRATION
        # An error keeps what the broken move may have left, for an operator;
        # only its claim stops counting against the destination.
        conn.execute(_RELEASE_CLAIM if error else _RELEASE_ALL,
                     {"mid": migration["id"], "now": now})
        return
    hosts = {"source": migration["source_compute"], "dest": migration["dest_compute"]}
    wanted = {(hosts[role], kind): state for role, kind, state in phase.holds
              if hosts[role]}
    dest = migration["dest_compute"]
    if dest:
        # An unfinished move (or an unresolved error) counts against its
        # destination (claims.usage_on; a cold move's source keeps counting its
        # guest too, without a claim entry: nothing was claimed there), and only
        # that one.
        wanted[(dest, "claim")] = PRESENT
        if dest_changed:
            conn.execute(_RELEASE_OTHER_CLAIMS, {"mid": migration["id"], "dest": dest,
                                                 "now": now})
    _upsert_rows(conn, migration, wanted, now)


class LedgerStore:
    def ledger(self, migration_id=None, host=None, instance_uuid=None, states=None):
        q = select(_RES).order_by(_RES.c.id)
        if migration_id is not None:
            q = q.where(_RES.c.migration_id == migration_id)
        if host is not None:
            q = q.where(_RES.c.host == host)
        if instance_uuid is not None:
            q = q.where(_RES.c.instance_uuid == instance_uuid)
        if states is not None:
            q = q.where(_RES.c.state.in_(list(states)))
        with self.connection() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def ledger_record(self, migration, entries):
        with self.connection() as conn:
            record(conn, migration, entries)

    def ledger_open_on(self, host):
        """Unreleased entries on ``host``, each with its move's status and
        awaiting_hosts (``migration_status``, ``migration_awaiting``)."""
        mig = models.Migration.__table__
        q = (select(_RES, mig.c.status.label("migration_status"),
                    mig.c.awaiting_hosts.label("migration_awaiting"))
             .join(mig, mig.c.id == _RES.c.migration_id)
             .where(_RES.c.host == host, _RES.c.state != RELEASED).order_by(_RES.c.id))
        with self.connection() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def ledger_release(self, entry_ids):
        """Mark the entries ``entry_ids`` released (what they name is gone)."""
        if not entry_ids:
            return
        with self.connection() as conn:
            conn.execute(update(_RES).where(_RES.c.id.in_(list(entry_ids)))
                         .values(state=RELEASED, updated_at=utcnow()))
