"""Instances: create, read, list, and update by compare-and-swap.

Mixed into :class:`godwit.db.api.Database`. :meth:`InstanceStore.instance_update`
with ``expected`` is how every request claims an instance: an ``UPDATE ...
WHERE`` on the columns it expects, whose rowcount tells who won.
"""

import sqlalchemy as sa
from sqlalchemy import func, select, update

from godwit import exception
from godwit.db import models
from godwit.db.common import (
    _BDMS_OF,
    _INST,
    _VIFS_OF,
    _all,
    _first,
    _matches,
    _new_uuid,
    updated_row,
)
from godwit.timeutils import utcnow

_INSTANCE_BY_UUID = select(_INST).where(_INST.c.uuid == sa.bindparam("uuid"))
_LIVE_INSTANCE_BY_UUID = _INSTANCE_BY_UUID.where(_INST.c.deleted_at.is_(None))


class InstanceStore:
    def instance_create(self, values):
        values = dict(values)
        values.setdefault("uuid", _new_uuid())
        with self.transaction() as s:
            inst = models.Instance(**values)
            s.add(inst)
            s.flush()
            return inst.to_dict()

    def instance_get(self, instance_uuid, read_deleted=False):
        with self.connection() as conn:
            return self._instance_get(conn, instance_uuid, read_deleted)

    @staticmethod
    def _instance_get(conn, instance_uuid, read_deleted=False):
        inst = _first(conn, _INSTANCE_BY_UUID if read_deleted else _LIVE_INSTANCE_BY_UUID,
                      {"uuid": instance_uuid})
        if inst is None:
            raise exception.InstanceNotFound(instance_id=instance_uuid)
        return inst

    def instance_get_with_devices(self, instance_uuid):
        """The instance, its network_info (VIFs) and block_device_info (BDMs), in
        one transaction."""
        with self.connection() as conn:
            return {"instance": self._instance_get(conn, instance_uuid),
                    "network_info": _all(conn, _VIFS_OF, {"uuid": instance_uuid}),
                    "block_device_info": _all(conn, _BDMS_OF, {"uuid": instance_uuid})}

    def instance_list(self, filters=None, limit=None, marker=None):
        filters = filters or {}
        with self.connection() as s:
            q = select(_INST).order_by(models.Instance.id)
            if not filters.get("deleted"):
                q = q.where(models.Instance.deleted_at.is_(None))
            for key in ("host", "vm_state", "task_state", "project_id", "user_id", "node"):
                if filters.get(key) is not None:
                    q = q.where(getattr(models.Instance, key) == filters[key])
            if filters.get("name"):
                q = q.where(models.Instance.display_name.contains(filters["name"]))
            if marker:
                mrow = s.execute(select(_INST.c.id).where(_INST.c.uuid == marker)).first()
                if mrow is None:
                    raise exception.InstanceNotFound(instance_id=marker)
                q = q.where(models.Instance.id > mrow.id)
            if limit:
                q = q.limit(limit)
            return _all(s, q)

    def instance_query(self, filters, sort=None, changes_since=None, changes_before=None,
                       deleted=None, limit=None):
        """Instances matching ``filters`` (column -> value, or a tuple of values,
        None matching NULL), for the REST API's server lists.

        Not deleted ones unless ``deleted`` is True (then only deleted ones) or
        a changes-since/before window is given (then both, as Nova does);
        ordered by ``sort`` [(column, "asc"|"desc")], newest first by default,
        the id breaking ties in the first key's direction."""
        changed = func.coalesce(_INST.c.updated_at, _INST.c.created_at)
        q = select(_INST)
        if changes_since is not None:
            q = q.where(changed >= changes_since)
        if changes_before is not None:
            q = q.where(changed <= changes_before)
        if deleted is True:
            q = q.where(_INST.c.deleted_at.is_not(None))
        elif changes_since is None and changes_before is None:
            q = q.where(_INST.c.deleted_at.is_(None))
        for column, value in filters.items():
            q = q.where(_matches(_INST.c[column], value))
        sort = sort or [("created_at", "desc")]
        order = [_INST.c[key].desc() if direction == "desc" else _INST.c[key].asc()
                 for key, direction in sort]
        order.append(_INST.c.id.desc() if sort[0][1] == "desc" else _INST.c.id.asc())
        q = q.order_by(*order)
        if limit is not None:
            q = q.limit(limit)
        with self.connection() as conn:
            return _all(conn, q)

    def instance_exists(self, instance_uuid):
        """Whether an instance with this uuid was ever recorded (deleted or not)."""
        with self.connection() as conn:
            return conn.execute(select(_INST.c.id).where(
                _INST.c.uuid == instance_uuid)).first() is not None

    def instance_update(self, instance_uuid, values, expected=None):
        """Update an instance; with ``expected`` only if those columns still match.

        ``expected`` maps column -> value, or column -> tuple of acceptable
        values. Raises ConcurrentUpdate when another writer got there first.
        """
        with self.connection() as conn:
            return self._instance_cas(conn, instance_uuid, values, expected)

    @staticmethod
    def _instance_cas(conn, instance_uuid, values, expected):
        q = update(_INST).where(_INST.c.uuid == instance_uuid, _INST.c.deleted_at.is_(None))
        for col, val in (expected or {}).items():
            q = q.where(_matches(_INST.c[col], val))
        values = dict(values, updated_at=utcnow())
        current = updated_row(conn, q.values(**values), _INST, _INSTANCE_BY_UUID,
                              {"uuid": instance_uuid})
        if current is None:
            current = _first(conn, _INSTANCE_BY_UUID, {"uuid": instance_uuid})
            if current is None:
                raise exception.InstanceNotFound(instance_id=instance_uuid)
            found = {c: current[c] for c in (expected or {})}
            raise exception.ConcurrentUpdate(what=f"Instance {instance_uuid}",
                                             expected=expected, found=found)
        return current
