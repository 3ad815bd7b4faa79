"""What the :class:`godwit.db.api.Database` mixins share.

The core tables, the hot statements more than one mixin runs (built once), and
the helpers that turn core rows into dicts. Reads return core rows turned into
dicts (the same keys as the models' ``to_dict()``: every column is mapped
under its own name), which costs a fraction of loading ORM objects.

The names keep their leading underscore: they are private to ``godwit.db``.
"""

import uuid as uuidlib

import sqlalchemy as sa
from sqlalchemy import or_, select

from godwit.db import models

_MIG = models.Migration.__table__
_INST = models.Instance.__table__
_VIF = models.VirtualInterface.__table__
_BDM = models.BlockDeviceMapping.__table__
_SVC = models.Service.__table__
_NODE = models.ComputeNode.__table__
_FLAVOR = models.Flavor.__table__
_ACTION = models.InstanceAction.__table__
_EVENT = models.InstanceActionEvent.__table__

_MIGRATION_BY_ID = select(_MIG).where(_MIG.c.id == sa.bindparam("id"))
_VIFS_OF = (select(_VIF).where(_VIF.c.instance_uuid == sa.bindparam("uuid"))
            .order_by(_VIF.c.id))
_BDMS_OF = (select(_BDM).where(_BDM.c.instance_uuid == sa.bindparam("uuid"))
            .order_by(_BDM.c.id))
_NODE_BY_HOST = select(_NODE).where(_NODE.c.host == sa.bindparam("host"))
_FLAVOR_BY_ID = select(_FLAVOR).where(_FLAVOR.c.id == sa.bindparam("id"))


def _new_uuid():
    return str(uuidlib.uuid4())


def _matches(column, value):
    """``column`` is ``value``, or one of ``value`` (a tuple, list or set); None
    matches NULL."""
    if isinstance(value, (tuple, list, set, frozenset)):
        values = list(value)
        cond = column.in_([v for v in values if v is not None])
        return or_(cond, column.is_(None)) if None in values else cond
    return column.is_(None) if value is None else column == value


def _row(row):
    return None if row is None else dict(row._mapping)


def _first(conn, stmt, params):
    return _row(conn.execute(stmt, params).first())


def _all(conn, stmt, params=None):
    return [dict(r._mapping) for r in conn.execute(stmt, params)]


def updated_row(conn, stmt, table, reread, params, set_values=None):
    """Run the UPDATE ``stmt`` meant for one row of ``table``; the row as it is
    now, or None if no row matched. One round trip where the backend has
    UPDATE ... RETURNING (PostgreSQL, SQLite); MariaDB, which has RETURNING
    only for INSERT and DELETE, reads it back with
    ``reread`` (a SELECT taking ``params``).

    ``set_values``: a statement built once (its WHERE in bind parameters) is
    run with these as its parameters; the columns among them are what it sets.
    """
    if conn.dialect.update_returning:
        row = conn.execute(stmt.returning(*table.c), set_values).first()
        return None if row is None else dict(row._mapping)
    if conn.execute(stmt, set_values).rowcount != 1:
        return None
    return _first(conn, reread, params)


def inserted_row(conn, stmt, table, reread):
    """Run the single-row INSERT ``stmt`` into ``table``; the row as written
    (defaults included). One round trip with INSERT ... RETURNING where the
    backend has it (PostgreSQL, SQLite, MariaDB 10.5+); otherwise ``reread`` (a
    SELECT taking ``id``) reads it back."""
    if conn.dialect.insert_returning:
        return dict(conn.execute(stmt.returning(*table.c)).first()._mapping)
    new_id = conn.execute(stmt).inserted_primary_key[0]
    return _first(conn, reread, {"id": new_id})
