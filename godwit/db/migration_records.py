"""Migration records: create a move's row (with the claim of its instance),
read it with what a flow needs, list and update it.

Mixed into :class:`godwit.db.api.Database`. The durable workflow on the same
rows (phase, lease, epoch, step data, intents) is :mod:`godwit.db.moves`;
the database schema's own migrations are :mod:`godwit.db.migration`.
"""

import sqlalchemy as sa
from sqlalchemy import func, or_, select, update

from godwit import exception, states
from godwit.db import ledger, models
from godwit.db import timeline as timeline_mod
from godwit.db.common import (
    _ACTION,
    _BDMS_OF,
    _FLAVOR_BY_ID,
    _MIG,
    _MIGRATION_BY_ID,
    _NODE_BY_HOST,
    _VIFS_OF,
    _all,
    _first,
    _new_uuid,
    inserted_row,
)
from godwit.timeutils import utcnow

_ACTION_BY_ID = select(_ACTION).where(_ACTION.c.id == sa.bindparam("id"))


class MigrationStore:
    @staticmethod
    def _new_migration(values):
        values = dict(values)
        values.setdefault("uuid", _new_uuid())
        values.setdefault("status", states.ACCEPTED)
        return models.Migration(**values)

    def migration_create(self, values):
        with self.transaction() as s:
            mig = self._new_migration(values)
            s.add(mig)
            s.flush()
            return mig.to_dict()

    def instance_claim_move(self, ctxt, instance_uuid, values, expected, action,
                            migration_values, room=None):
        """Claim the instance for a move and record it, in one transaction.

        The claim is :meth:`instance_update` with ``expected`` (a
        compare-and-swap: ConcurrentUpdate if another request got there
        first); then the instance action ``action`` is started
        (:meth:`action_start`) and the migration row created
        (:meth:`migration_create`). All three happen or none.

        With ``room`` (need, ratios) the destination named in
        ``migration_values`` is claimed too, in the same transaction
        (:meth:`godwit.db.claims.ClaimStore.claim`): HostCapacityExceeded if it
        has no room any more, and then nothing is written.
        Returns (instance, action, migration).
        """
        out = {}

        def write(conn):
            out["result"] = self._claim_move_in(conn, ctxt, instance_uuid, values, expected,
                                                action, migration_values)
            if room is not None:
                ledger.record(conn, out["result"][2],
                              [(migration_values["dest_compute"], "claim", ledger.PRESENT)])
        if room is not None:
            need, ratios = room
            self.claim(migration_values["dest_compute"], need, ratios, write)
        else:
            with self.connection() as conn:
                write(conn)
        result = out["result"]
        self._remember_action(instance_uuid, ctxt.request_id, result[1]["id"])
        self.phase_changed(None, result[2], "create")
        return result

    def _claim_move_in(self, conn, ctxt, instance_uuid, values, expected, action,
                       migration_values):
        instance = self._instance_cas(conn, instance_uuid, values, expected)
        action_values = {"action": action, "instance_uuid": instance_uuid,
                         "request_id": ctxt.request_id, "user_id": ctxt.user_id,
                         "project_id": ctxt.project_id, "start_time": utcnow()}
        action_row = inserted_row(conn, sa.insert(_ACTION).values(**action_values),
                                  _ACTION, _ACTION_BY_ID)
        mig = dict(migration_values)
        mig.setdefault("uuid", _new_uuid())
        mig.setdefault("status", states.ACCEPTED)
        mig.setdefault("created_at", utcnow())
        mig_row = inserted_row(conn, sa.insert(_MIG).values(**mig), _MIG, _MIGRATION_BY_ID)
        timeline_mod.record(conn, mig_row["id"], [timeline_mod.phase_entry(
            None, mig["status"], "create")])
        return instance, action_row, mig_row

    def migration_get(self, migration_id):
        with self.connection() as conn:
            return self._migration_get(conn, migration_id)

    @staticmethod
    def _migration_get(conn, migration_id):
        mig = _first(conn, _MIGRATION_BY_ID, {"id": migration_id})
        if mig is None:
            raise exception.MigrationNotFound(migration_id=migration_id)
        return mig

    def migration_context(self, migration_id, with_nodes_and_flavors=None,
                          read_deleted=False):
        """The migration, its instance, network_info and block_device_info in one
        transaction; for cold migrations and resizes (or when asked) also both
        compute nodes and both flavors. ``read_deleted``: a deleted instance too
        (InstanceNotFound otherwise)."""
        with self.connection() as conn:
            return self._migration_context(conn, migration_id, with_nodes_and_flavors,
                                           read_deleted)

    @classmethod
    def _migration_context(cls, conn, migration_id, with_nodes_and_flavors=None,
                           read_deleted=False):
        migration = cls._migration_get(conn, migration_id)
        uuid = migration["instance_uuid"]
        context = {"migration": migration,
                   "instance": cls._instance_get(conn, uuid, read_deleted=read_deleted),
                   "network_info": _all(conn, _VIFS_OF, {"uuid": uuid}),
                   "block_device_info": _all(conn, _BDMS_OF, {"uuid": uuid})}
        if with_nodes_and_flavors is None:
            with_nodes_and_flavors = migration["migration_type"] != states.LIVE_MIGRATION
        if with_nodes_and_flavors:
            context.update(
                source_node=_first(conn, _NODE_BY_HOST,
                                   {"host": migration["source_compute"]}),
                dest_node=_first(conn, _NODE_BY_HOST, {"host": migration["dest_compute"]}))
            for key, column in (("old_flavor", "old_instance_type_id"),
                                ("new_flavor", "new_instance_type_id")):
                context[key] = _first(conn, _FLAVOR_BY_ID, {"id": migration[column]})
                if context[key] is None:
                    raise exception.FlavorNotFound(flavor_id=migration[column])
        return context

    def migration_get_by_uuid(self, migration_uuid):
        with self.transaction() as s:
            mig = s.scalars(select(models.Migration).where(
                models.Migration.uuid == migration_uuid)).first()
            if mig is None:
                raise exception.MigrationNotFound(migration_id=migration_uuid)
            return mig.to_dict()

    def migration_list(self, filters=None, limit=None, marker=None, sort_desc=True):
        filters = filters or {}
        m = models.Migration
        with self.connection() as s:
            q = select(_MIG)
            for key in ("instance_uuid", "migration_type", "source_compute", "dest_compute",
                        "user_id", "project_id"):
                value = filters.get(key)
                if isinstance(value, (list, tuple, set, frozenset)):
                    q = q.where(getattr(m, key).in_(list(value)))
                elif value is not None:
                    q = q.where(getattr(m, key) == value)
            if filters.get("status") is not None:
                st = filters["status"]
                q = q.where(m.status.in_(st) if isinstance(st, (list, tuple, set, frozenset))
                            else m.status == st)
            if filters.get("host") is not None:
                q = q.where(or_(m.source_compute == filters["host"],
                                m.dest_compute == filters["host"]))
            if filters.get("hidden") is not None:
                q = q.where(m.hidden == filters["hidden"])
            if filters.get("changes_since") is not None:
                q = q.where(func.coalesce(m.updated_at, m.created_at) >= filters["changes_since"])
            if filters.get("changes_before") is not None:
                q = q.where(func.coalesce(m.updated_at, m.created_at) <= filters["changes_before"])
            if marker is not None:
                mrow = s.execute(select(_MIG.c.id).where(_MIG.c.uuid == marker)).first()
                if mrow is None:
                    raise exception.MigrationNotFound(migration_id=marker)
                q = q.where(m.id < mrow.id if sort_desc else m.id > mrow.id)
            q = q.order_by(m.id.desc() if sort_desc else m.id)
            if limit:
                q = q.limit(limit)
            return _all(s, q)

    def migration_update(self, migration_id, values, expected_status=None,
                         instance_progress=None, deadline_if_moved=None):
        """Update non-status fields (progress, hosts), optionally guarded by status.

        With ``instance_progress`` the instance's progress is set in the same
        transaction while its task_state is still MIGRATING (silently not, if
        it is no longer). With ``deadline_if_moved`` (a progress report) the
        deadline moves there only if the job's bytes processed differ from
        those recorded: a report that only says a job is stalled does not put
        off the guard against a frozen job.
        """
        if "status" in values:
            raise ValueError("status changes go through migration_advance")
        with self.connection() as conn:
            if deadline_if_moved is not None:
                moved = [_MIG.c[col].is_distinct_from(values[col])
                         for col in ("memory_processed", "disk_processed") if col in values]
                q = update(_MIG).where(_MIG.c.id == migration_id)
                if expected_status is not None:
                    q = q.where(_MIG.c.status == expected_status)
                if moved:
                    q = q.where(or_(*moved))
                conn.execute(q.values(deadline_at=deadline_if_moved))
            q = update(_MIG).where(_MIG.c.id == migration_id)
            if expected_status is not None:
                q = q.where(_MIG.c.status == expected_status)
            res = conn.execute(q.values(**dict(values, updated_at=utcnow())))
            mig = _first(conn, _MIGRATION_BY_ID, {"id": migration_id})
            if res.rowcount != 1:
                if mig is None:
                    raise exception.MigrationNotFound(migration_id=migration_id)
                raise exception.ConcurrentUpdate(what=f"Migration {migration_id}",
                                                 expected=expected_status, found=mig["status"])
            if instance_progress is not None:
                try:
                    self._instance_cas(conn, mig["instance_uuid"],
                                       {"progress": instance_progress},
                                       {"task_state": states.MIGRATING})
                except exception.ConcurrentUpdate:
                    pass
            return mig
