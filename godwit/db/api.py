"""Database access for the control plane.

One :class:`Database` per process and URL. Functions return plain dicts, the
same shape that crosses RPC, so callers never hold a session. Every state
change that can race is a compare-and-swap: an ``UPDATE ... WHERE`` on the
expected current value whose rowcount tells who won.

We use SQLAlchemy 2 directly rather than oslo.db: the whole data layer is this
one module, and SQLAlchemy's own engine and session handling cover what we
need (pool, SQLite pragmas, retries are the caller's CAS loop).
"""

import contextlib
import datetime
import json
import threading
import uuid as uuidlib

import sqlalchemy as sa
from sqlalchemy import event, func, or_, select, update
from sqlalchemy.orm import sessionmaker

from godwit import exception, state_machine, states
from godwit.db import models
from godwit.timeutils import utcnow

DEFAULT_FLAVORS = [
    # flavorid, name, memory_mb, vcpus, root_gb
    ("1", "m1.tiny", 512, 1, 1),
    ("2", "m1.small", 2048, 1, 20),
    ("3", "m1.medium", 4096, 2, 40),
    ("4", "m1.large", 8192, 4, 80),
]

_databases = {}
_databases_lock = threading.Lock()


def get_database(url, echo=False):
    """The process-wide Database for ``url``: one engine and pool per URL."""
    with _databases_lock:
        if url not in _databases:
            _databases[url] = Database(url, echo=echo)
        return _databases[url]


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _new_uuid():
    return str(uuidlib.uuid4())


class Database:
    def __init__(self, url, echo=False):
        self.url = url
        kwargs = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        if url.startswith("mysql"):
            # MySQL/MariaDB default to REPEATABLE READ, where the re-read after a
            # lost compare-and-swap would show the transaction's old snapshot
            # instead of the winner's value.
            kwargs["isolation_level"] = "READ COMMITTED"
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def transaction(self):
        with self._session() as session, session.begin():
            yield session

    # ------------------------------------------------------------------ services
    def service_register(self, host, binary, topic, version):
        """Create the service row, or refresh it if this host ran before."""
        now = utcnow()
        with self.transaction() as s:
            svc = s.scalars(select(models.Service).where(
                models.Service.host == host, models.Service.binary == binary)).first()
            if svc is None:
                svc = models.Service(uuid=_new_uuid(), host=host, binary=binary, topic=topic,
                                     version=version,
                                     last_seen_up=now, report_count=0)
                s.add(svc)
            else:
                svc.last_seen_up = now
                svc.version = version
            s.flush()
            return svc.to_dict()

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
        with self.transaction() as s:
            svc = s.scalars(select(models.Service).where(
                models.Service.host == host, models.Service.binary == binary)).first()
            return svc.to_dict() if svc else None

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

    # ------------------------------------------------------------ compute nodes
    def compute_node_upsert(self, host, values):
        with self.transaction() as s:
            node = s.scalars(select(models.ComputeNode).where(
                models.ComputeNode.host == host)).first()
            if node is None:
                node = models.ComputeNode(uuid=_new_uuid(), host=host, **values)
                s.add(node)
            else:
                for k, v in values.items():
                    setattr(node, k, v)
            s.flush()
            return node.to_dict()

    def compute_node_get_by_host(self, host):
        with self.transaction() as s:
            node = s.scalars(select(models.ComputeNode).where(
                models.ComputeNode.host == host)).first()
            return node.to_dict() if node else None

    def compute_node_get(self, node_id):
        with self.transaction() as s:
            node = s.get(models.ComputeNode, node_id)
            if node is None:
                raise exception.ComputeHostNotFound(host=node_id)
            return node.to_dict()

    def compute_node_list(self):
        with self.transaction() as s:
            return [n.to_dict() for n in s.scalars(
                select(models.ComputeNode).order_by(models.ComputeNode.id))]

    def host_usage(self, host):
        """Resources held on ``host``: its instances plus moves heading there.

        Usage is derived, not stored as claims: an instance counts where its
        ``host`` is, and an in-progress migration also counts on its
        destination. When a migration reaches a final status its hold
        disappears with it, so no claim can be leaked.
        """
        with self.transaction() as s:
            inst = models.Instance
            on_host = s.execute(
                select(func.coalesce(func.sum(inst.memory_mb), 0),
                       func.coalesce(func.sum(inst.vcpus), 0),
                       func.coalesce(func.sum(inst.root_gb + inst.ephemeral_gb), 0),
                       func.count(inst.id))
                .where(inst.host == host, inst.deleted_at.is_(None))).one()
            mig = models.Migration
            flavor = models.Flavor
            incoming = s.execute(
                select(func.coalesce(func.sum(func.coalesce(flavor.memory_mb, inst.memory_mb)), 0),
                       func.coalesce(func.sum(func.coalesce(flavor.vcpus, inst.vcpus)), 0),
                       func.coalesce(func.sum(func.coalesce(flavor.root_gb, inst.root_gb)
                                              + func.coalesce(flavor.ephemeral_gb,
                                                              inst.ephemeral_gb)), 0))
                .select_from(mig)
                .join(inst, inst.uuid == mig.instance_uuid)
                .outerjoin(flavor, flavor.id == mig.new_instance_type_id)
                .where(mig.dest_compute == host,
                       mig.status.in_(states.MIGRATION_IN_PROGRESS),
                       or_(inst.host.is_(None), inst.host != host))).one()
            return {"memory_mb": int(on_host[0]) + int(incoming[0]),
                    "vcpus": int(on_host[1]) + int(incoming[1]),
                    "disk_gb": int(on_host[2]) + int(incoming[2]),
                    "running_vms": int(on_host[3])}

    # ------------------------------------------------------------------ flavors
    def flavor_create(self, values):
        with self.transaction() as s:
            exists = s.scalars(select(models.Flavor).where(or_(
                models.Flavor.name == values["name"],
                models.Flavor.flavorid == values["flavorid"]))).first()
            if exists:
                raise exception.FlavorExists(name=values["name"])
            flavor = models.Flavor(**values)
            s.add(flavor)
            s.flush()
            return flavor.to_dict()

    def flavor_get_by_flavorid(self, flavorid):
        with self.transaction() as s:
            flavor = s.scalars(select(models.Flavor).where(
                models.Flavor.flavorid == str(flavorid))).first()
            if flavor is None:
                raise exception.FlavorNotFound(flavor_id=flavorid)
            return flavor.to_dict()

    def flavor_get(self, flavor_pk):
        with self.transaction() as s:
            flavor = s.get(models.Flavor, flavor_pk)
            if flavor is None:
                raise exception.FlavorNotFound(flavor_id=flavor_pk)
            return flavor.to_dict()

    def flavor_list(self):
        with self.transaction() as s:
            return [f.to_dict() for f in s.scalars(
                select(models.Flavor).order_by(models.Flavor.memory_mb, models.Flavor.id))]

    def ensure_default_flavors(self):
        with self.transaction() as s:
            if s.scalars(select(models.Flavor).limit(1)).first() is not None:
                return
            for flavorid, name, mem, vcpus, root in DEFAULT_FLAVORS:
                s.add(models.Flavor(flavorid=flavorid, name=name, memory_mb=mem,
                                    vcpus=vcpus, root_gb=root))

    # ---------------------------------------------------------------- instances
    def instance_create(self, values):
        values = dict(values)
        values.setdefault("uuid", _new_uuid())
        with self.transaction() as s:
            inst = models.Instance(**values)
            s.add(inst)
            s.flush()
            return inst.to_dict()

    def instance_get(self, instance_uuid, read_deleted=False):
        with self.transaction() as s:
            q = select(models.Instance).where(models.Instance.uuid == instance_uuid)
            if not read_deleted:
                q = q.where(models.Instance.deleted_at.is_(None))
            inst = s.scalars(q).first()
            if inst is None:
                raise exception.InstanceNotFound(instance_id=instance_uuid)
            return inst.to_dict()

    def instance_list(self, filters=None, limit=None, marker=None):
        filters = filters or {}
        with self.transaction() as s:
            q = select(models.Instance).order_by(models.Instance.id)
            if not filters.get("deleted"):
                q = q.where(models.Instance.deleted_at.is_(None))
            for key in ("host", "vm_state", "task_state", "project_id", "user_id", "node"):
                if filters.get(key) is not None:
                    q = q.where(getattr(models.Instance, key) == filters[key])
            if filters.get("name"):
                q = q.where(models.Instance.display_name.contains(filters["name"]))
            if marker:
                mrow = s.scalars(select(models.Instance).where(
                    models.Instance.uuid == marker)).first()
                if mrow is None:
                    raise exception.InstanceNotFound(instance_id=marker)
                q = q.where(models.Instance.id > mrow.id)
            if limit:
                q = q.limit(limit)
            return [i.to_dict() for i in s.scalars(q)]

    def instance_update(self, instance_uuid, values, expected=None):
        """Update an instance; with ``expected`` only if those columns still match.

        ``expected`` maps column -> value, or column -> tuple of acceptable
        values. Raises ConcurrentUpdate when another writer got there first.
        """
        with self.transaction() as s:
            return self._instance_cas(s, instance_uuid, values, expected)

    @staticmethod
    def _instance_cas(s, instance_uuid, values, expected):
        q = update(models.Instance).where(models.Instance.uuid == instance_uuid,
                                          models.Instance.deleted_at.is_(None))
        for col, val in (expected or {}).items():
            column = getattr(models.Instance, col)
            if isinstance(val, (tuple, list, set, frozenset)):
                vals = list(val)
                cond = column.in_([v for v in vals if v is not None])
                if None in vals:
                    cond = or_(cond, column.is_(None))
                q = q.where(cond)
            elif val is None:
                q = q.where(column.is_(None))
            else:
                q = q.where(column == val)
        values = dict(values, updated_at=utcnow())
        res = s.execute(q.values(**values).execution_options(synchronize_session=False))
        current = s.scalars(select(models.Instance).where(
            models.Instance.uuid == instance_uuid)).first()
        if res.rowcount != 1:
            if current is None:
                raise exception.InstanceNotFound(instance_id=instance_uuid)
            found = {c: getattr(current, c) for c in (expected or {})}
            raise exception.ConcurrentUpdate(what=f"Instance {instance_uuid}",
                                             expected=expected, found=found)
        s.refresh(current)
        return current.to_dict()

    # --------------------------------------------------------------- migrations
    def migration_create(self, values):
        values = dict(values)
        values.setdefault("uuid", _new_uuid())
        values.setdefault("status", states.ACCEPTED)
        with self.transaction() as s:
            mig = models.Migration(**values)
            s.add(mig)
            s.flush()
            return mig.to_dict()

    def migration_get(self, migration_id):
        with self.transaction() as s:
            mig = s.get(models.Migration, migration_id)
            if mig is None:
                raise exception.MigrationNotFound(migration_id=migration_id)
            return mig.to_dict()

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
        with self.transaction() as s:
            q = select(m)
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
                mrow = s.scalars(select(m).where(m.uuid == marker)).first()
                if mrow is None:
                    raise exception.MigrationNotFound(migration_id=marker)
                q = q.where(m.id < mrow.id if sort_desc else m.id > mrow.id)
            q = q.order_by(m.id.desc() if sort_desc else m.id)
            if limit:
                q = q.limit(limit)
            return [r.to_dict() for r in s.scalars(q)]

    def migration_transition(self, migration_id, old, new, values=None,
                             instance_values=None, instance_expected=None):
        """Move a migration ``old -> new`` by compare-and-swap.

        With ``instance_values`` the migration's instance is updated in the
        same transaction (guarded by ``instance_expected``), so a status and
        the instance fields it implies (host after the switch-over,
        task_state at the end) are never seen apart.

        Returns the updated row. Raises InvalidMigrationTransition for an edge
        the state machine lacks, ConcurrentUpdate if the row is no longer in
        ``old``. A caller re-running a step checks
        :func:`godwit.state_machine.is_reached` on the row instead.
        """
        with self.transaction() as s:
            mig = s.get(models.Migration, migration_id)
            if mig is None:
                raise exception.MigrationNotFound(migration_id=migration_id)
            state_machine.check(mig.migration_type, old, new)
            vals = dict(values or {}, status=new, updated_at=utcnow())
            res = s.execute(update(models.Migration)
                            .where(models.Migration.id == migration_id,
                                   models.Migration.status == old)
                            .values(**vals)
                            .execution_options(synchronize_session=False))
            if res.rowcount != 1:
                s.refresh(mig)
                raise exception.ConcurrentUpdate(what=f"Migration {migration_id}",
                                                 expected=old, found=mig.status)
            if instance_values:
                self._instance_cas(s, mig.instance_uuid, instance_values, instance_expected)
            s.refresh(mig)
            return mig.to_dict()

    def migration_update(self, migration_id, values, expected_status=None):
        """Update non-status fields (progress, hosts), optionally guarded by status."""
        if "status" in values:
            raise ValueError("status changes go through migration_transition")
        with self.transaction() as s:
            q = update(models.Migration).where(models.Migration.id == migration_id)
            if expected_status is not None:
                q = q.where(models.Migration.status == expected_status)
            res = s.execute(q.values(**dict(values, updated_at=utcnow()))
                            .execution_options(synchronize_session=False))
            if res.rowcount != 1:
                mig = s.get(models.Migration, migration_id)
                if mig is None:
                    raise exception.MigrationNotFound(migration_id=migration_id)
                raise exception.ConcurrentUpdate(what=f"Migration {migration_id}",
                                                 expected=expected_status, found=mig.status)
            return s.get(models.Migration, migration_id).to_dict()

    # ------------------------------------------------- block devices, interfaces
    def bdm_list(self, instance_uuid):
        with self.transaction() as s:
            return [b.to_dict() for b in s.scalars(
                select(models.BlockDeviceMapping)
                .where(models.BlockDeviceMapping.instance_uuid == instance_uuid)
                .order_by(models.BlockDeviceMapping.id))]

    def bdm_create(self, values):
        values = dict(values)
        values.setdefault("uuid", _new_uuid())
        with self.transaction() as s:
            bdm = models.BlockDeviceMapping(**values)
            s.add(bdm)
            s.flush()
            return bdm.to_dict()

    def vif_list(self, instance_uuid):
        with self.transaction() as s:
            return [v.to_dict() for v in s.scalars(
                select(models.VirtualInterface)
                .where(models.VirtualInterface.instance_uuid == instance_uuid)
                .order_by(models.VirtualInterface.id))]

    def vif_create(self, values):
        values = dict(values)
        values.setdefault("uuid", _new_uuid())
        if isinstance(values.get("details"), dict):
            values["details"] = json.dumps(values["details"])
        with self.transaction() as s:
            vif = models.VirtualInterface(**values)
            s.add(vif)
            s.flush()
            return vif.to_dict()

    # ------------------------------------------------------------------ actions
    def action_start(self, ctxt, instance_uuid, action):
        with self.transaction() as s:
            row = models.InstanceAction(action=action, instance_uuid=instance_uuid,
                                        request_id=ctxt.request_id, user_id=ctxt.user_id,
                                        project_id=ctxt.project_id, start_time=utcnow())
            s.add(row)
            s.flush()
            return row.to_dict()

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
        with self.transaction() as s:
            row = models.InstanceActionEvent(
                action_id=action_id, event=event_name, host=host, start_time=start_time,
                finish_time=finish_time, result=result, traceback=traceback,
                details=json.dumps(details) if details is not None else None)
            s.add(row)
            s.flush()
            if result == states.EVENT_ERROR:
                action = s.get(models.InstanceAction, action_id)
                if action is not None:
                    action.message = "Error"
            return row.to_dict()

    def action_list(self, instance_uuid):
        with self.transaction() as s:
            return [a.to_dict() for a in s.scalars(
                select(models.InstanceAction)
                .where(models.InstanceAction.instance_uuid == instance_uuid)
                .order_by(models.InstanceAction.id.desc()))]

    def action_get_by_request_id(self, instance_uuid, request_id):
        with self.transaction() as s:
            row = s.scalars(select(models.InstanceAction).where(
                models.InstanceAction.instance_uuid == instance_uuid,
                models.InstanceAction.request_id == request_id)).first()
            return row.to_dict() if row else None

    def event_list(self, action_id):
        with self.transaction() as s:
            return [e.to_dict() for e in s.scalars(
                select(models.InstanceActionEvent)
                .where(models.InstanceActionEvent.action_id == action_id)
                .order_by(models.InstanceActionEvent.id))]


def is_service_up(service, down_time, now=None):
    """A service is up if it is not forced down and heartbeat is recent."""
    if service.get("forced_down"):
        return False
    last = service.get("last_seen_up") or service.get("updated_at") or service.get("created_at")
    if last is None:
        return False
    now = now or utcnow()
    return (now - last) <= datetime.timedelta(seconds=down_time)


def heartbeat_age(service, now=None):
    last = service.get("last_seen_up") or service.get("created_at")
    if last is None:
        return "never"
    secs = int(((now or utcnow()) - last).total_seconds())
    return f"{secs}s"
