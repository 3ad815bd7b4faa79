"""Instance actions and their events: one action per request on an instance,
one event per step of it (start, finish, result, host, traceback).

Mixed into :class:`godwit.db.api.Database`, which keeps the cache of action
ids (:meth:`InstanceActionStore.action_id_for_request`).
"""

import json

import sqlalchemy as sa
from sqlalchemy import select, update

from godwit import states
from godwit.db import models
from godwit.db.common import _ACTION, _EVENT, _first
from godwit.timeutils import utcnow

_INSERT_EVENT = sa.insert(_EVENT)
_ACTION_BY_REQUEST = select(_ACTION).where(_ACTION.c.instance_uuid == sa.bindparam("uuid"),
                                           _ACTION.c.request_id == sa.bindparam("request_id"))
_ACTION_ID_BY_REQUEST = select(_ACTION.c.id).where(
    _ACTION.c.instance_uuid == sa.bindparam("uuid"),
    _ACTION.c.request_id == sa.bindparam("request_id"))
_EVENT_COLUMNS = tuple(c.name for c in _EVENT.c)
# How many (instance, request) -> action id pairs a process remembers.
_ACTION_CACHE_SIZE = 4096


class InstanceActionStore:
    @staticmethod
    def _new_action(ctxt, instance_uuid, action):
        return models.InstanceAction(action=action, instance_uuid=instance_uuid,
                                     request_id=ctxt.request_id, user_id=ctxt.user_id,
                                     project_id=ctxt.project_id, start_time=utcnow())

    def action_start(self, ctxt, instance_uuid, action):
        with self.transaction() as s:
            row = self._new_action(ctxt, instance_uuid, action)
            s.add(row)
            s.flush()
            action = row.to_dict()
        self._remember_action(instance_uuid, ctxt.request_id, action["id"])
        return action

    def _remember_action(self, instance_uuid, request_id, action_id):
        with self._action_ids_lock:
            self._action_ids[instance_uuid, request_id] = action_id
            while len(self._action_ids) > _ACTION_CACHE_SIZE:
                self._action_ids.popitem(last=False)

    def action_id_for_request(self, instance_uuid, request_id):
        """The id of the instance action of ``request_id`` (None if there is
        none), remembered once known: every step event of a request needs it."""
        with self._action_ids_lock:
            action_id = self._action_ids.get((instance_uuid, request_id))
        if action_id is None:
            with self.connection() as conn:
                row = conn.execute(_ACTION_ID_BY_REQUEST,
                                   {"uuid": instance_uuid, "request_id": request_id}).first()
            if row is None:
                return None
            action_id = row[0]
            self._remember_action(instance_uuid, request_id, action_id)
        return action_id

    def action_finish(self, action_id, message=None):
        with self.transaction() as s:
            row = s.get(models.InstanceAction, action_id)
            if row is not None:
                row.finish_time = utcnow()
                if message:
                    row.message = message[:255]

    def event_record(self, action_id, event_name, host, start_time, finish_time=None,
                     result=None, traceback=None, details=None):
        """Write one event; ``finish_time``/``result`` None means it is still running."""
        row = dict.fromkeys(_EVENT_COLUMNS)
        row.update(action_id=action_id, event=event_name, host=host,
                   start_time=start_time or utcnow(),
                   finish_time=finish_time, result=result, traceback=traceback,
                   details=json.dumps(details) if details is not None else None)
        del row["id"]
        with self.connection() as conn:
            # Unset (None) columns are left out, as the ORM would, so that
            # their defaults apply.
            res = conn.execute(_INSERT_EVENT, {k: v for k, v in row.items() if v is not None})
            if result == states.EVENT_ERROR:
                conn.execute(update(_ACTION).where(_ACTION.c.id == action_id)
                             .values(message="Error"))
        return dict(row, id=res.inserted_primary_key[0])

    def action_list(self, instance_uuid):
        with self.transaction() as s:
            return [a.to_dict() for a in s.scalars(
                select(models.InstanceAction)
                .where(models.InstanceAction.instance_uuid == instance_uuid)
                .order_by(models.InstanceAction.id.desc()))]

    def action_get_by_request_id(self, instance_uuid, request_id):
        with self.connection() as conn:
            return _first(conn, _ACTION_BY_REQUEST,
                          {"uuid": instance_uuid, "request_id": request_id})

    def event_list(self, action_id):
        with self.transaction() as s:
            return [e.to_dict() for e in s.scalars(
                select(models.InstanceActionEvent)
                .where(models.InstanceActionEvent.action_id == action_id)
                .order_by(models.InstanceActionEvent.id))]
