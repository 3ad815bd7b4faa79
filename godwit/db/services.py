"""Services: the rows of the control plane's processes, their heartbeats, and
whether each is up.

Mixed into :class:`godwit.db.api.Database`. A service is up while its
heartbeat is recent (:func:`is_service_up`), read with the conductors' view of
the message broker (decision 18).
"""

import datetime
import time

import sqlalchemy as sa
from sqlalchemy import select, update

from godwit import exception, states
from godwit.db import models
from godwit.db.common import _SVC, _first, _new_uuid
from godwit.timeutils import utcnow

_SERVICE_BY_HOST = select(_SVC).where(_SVC.c.host == sa.bindparam("host"),
                                      _SVC.c.binary == sa.bindparam("binary"))


class ServiceStore:
    def service_register(self, host, binary, topic, version, rpc_version=None):
        """Create the service row, or refresh it if this host ran before.
        ``rpc_version``: the RPC version it serves (None: not told, an older agent)."""
        now = utcnow()
        with self.transaction() as s:
            svc = s.scalars(select(models.Service).where(
                models.Service.host == host, models.Service.binary == binary)).first()
            if svc is None:
                svc = models.Service(uuid=_new_uuid(), host=host, binary=binary, topic=topic,
                                     version=version, rpc_version=rpc_version,
                                     last_seen_up=now, report_count=0)
                s.add(svc)
            else:
                svc.last_seen_up = now
                svc.version = version
                svc.rpc_version = rpc_version
            s.flush()
            return svc.to_dict()

    def broker_checked(self, host, ok):
        """A conductor's look at the broker: ``ok`` if its message came through,
        None while its message is under way (the look is current, its answer
        not in yet: what was known stays)."""
        now = utcnow()
        svc = _SVC
        values = {"broker_checked_at": now}
        if ok is not None:
            values["broker_ok_since"] = (sa.func.coalesce(svc.c.broker_ok_since, now)
                                         if ok else None)
        with self.connection() as conn:
            conn.execute(update(svc).where(
                svc.c.host == host, svc.c.binary == states.SERVICE_CONDUCTOR).values(**values))

    def broker_state(self):
        """(checked_at, ok_since) of the most recent look any conductor took."""
        now = time.monotonic()
        cached = getattr(self, "_broker_cache", None)
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        with self.connection() as conn:
            row = conn.execute(select(_SVC.c.broker_checked_at, _SVC.c.broker_ok_since)
                               .where(_SVC.c.binary == states.SERVICE_CONDUCTOR,
                                      _SVC.c.broker_checked_at.is_not(None))
                               .order_by(_SVC.c.broker_checked_at.desc()).limit(1)).first()
        state = tuple(row) if row is not None else None
        self._broker_cache = (now, state)
        return state

    def is_host_up(self, service, down_time, now=None):
        """:func:`is_service_up` with the conductors' view of the broker."""
        return is_service_up(service, down_time, now, self.broker_state())

    def service_heartbeat(self, host, binary):
        with self.transaction() as s:
            res = s.execute(update(models.Service)
                            .where(models.Service.host == host, models.Service.binary == binary)
                            .values(last_seen_up=utcnow(),
                                    report_count=models.Service.report_count + 1))
            return res.rowcount == 1

    @staticmethod
    def _service_by_id(s, service_id):
        """Services are addressed by integer id (API < 2.53) or uuid (2.53+)."""
        if str(service_id).isdigit():
            return s.get(models.Service, int(service_id))
        return s.scalars(select(models.Service).where(
            models.Service.uuid == str(service_id))).first()

    def service_get(self, service_id):
        with self.transaction() as s:
            svc = self._service_by_id(s, service_id)
            if svc is None:
                raise exception.ServiceNotFound(service_id=service_id)
            return svc.to_dict()

    def service_get_by_host(self, host, binary=states.SERVICE_COMPUTE):
        with self.connection() as conn:
            return _first(conn, _SERVICE_BY_HOST, {"host": host, "binary": binary})

    def service_list(self, binary=None, host=None):
        with self.transaction() as s:
            q = select(models.Service).order_by(models.Service.id)
            if binary:
                q = q.where(models.Service.binary == binary)
            if host:
                q = q.where(models.Service.host == host)
            return [r.to_dict() for r in s.scalars(q)]

    def service_update(self, service_id, values):
        with self.transaction() as s:
            svc = self._service_by_id(s, service_id)
            if svc is None:
                raise exception.ServiceNotFound(service_id=service_id)
            for k, v in values.items():
                setattr(svc, k, v)
            s.flush()
            return svc.to_dict()


def is_service_up(service, down_time, now=None, broker=None):
    """A service is up if it is not forced down and its heartbeat is recent.

    ``broker``: (checked_at, ok_since) of the conductors' latest look at the
    message broker (:meth:`Database.broker_state`). Heartbeats ride the broker,
    so a silent agent is declared down only while the broker is known to have
    worked for ``down_time``: during a broker outage, and for ``down_time``
    after it, silence proves nothing. With no recent look (no conductor
    running), the heartbeat's age alone decides.
    """
    if service.get("forced_down"):
        return False
    last = service.get("last_seen_up") or service.get("updated_at") or service.get("created_at")
    if last is None:
        return False
    now = now or utcnow()
    limit = datetime.timedelta(seconds=down_time)
    if now - last <= limit:
        return True
    if broker is None or broker[0] is None or now - broker[0] > limit:
        return False
    ok_since = broker[1]
    return ok_since is None or now - ok_since <= limit


def heartbeat_age(service, now=None):
    last = service.get("last_seen_up") or service.get("created_at")
    if last is None:
        return "never"
    secs = int(((now or utcnow()) - last).total_seconds())
    return f"{secs}s"
