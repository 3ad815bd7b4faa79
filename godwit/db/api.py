"""Database access for the control plane.

One :class:`Database` per process and URL. Functions return plain dicts, the
same shape that crosses RPC, so callers never hold a session. Every state
change that can race is a compare-and-swap: an ``UPDATE ... WHERE`` on the
expected current value whose rowcount tells who won.

We use SQLAlchemy 2's engine and sessions directly, and oslo.db for what
the field has learnt about outages: its exception filters recognise a lost
connection and a deadlock on PostgreSQL, MySQL and SQLite, and every public
method here is retried on them (:func:`_retry_on_outage`), so a database that
restarts stops progress for a while instead of failing the moves under way.
"""

import collections
import contextlib
import datetime
import functools
import json
import threading
import time
import uuid as uuidlib

import sqlalchemy as sa
from oslo_db import api as oslo_db_api
from oslo_db.sqlalchemy import exc_filters
from sqlalchemy import event, func, or_, select, update
from sqlalchemy.orm import sessionmaker

from godwit import exception, states
from godwit.db import ledger, models
from godwit.db import timeline as timeline_mod
from godwit.db.claims import ClaimStore
from godwit.db.drains import DrainStore
from godwit.db.ledger import LedgerStore
from godwit.db.moves import MoveStore
from godwit.db.timeline import TimelineStore
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


def _matches(column, value):
    """``column`` is ``value``, or one of ``value`` (a tuple, list or set); None
    matches NULL."""
    if isinstance(value, (tuple, list, set, frozenset)):
        values = list(value)
        cond = column.in_([v for v in values if v is not None])
        return or_(cond, column.is_(None)) if None in values else cond
    return column.is_(None) if value is None else column == value


def release_database(url):
    """Forget the process-wide Database for ``url`` and close its connections
    (a test cloud that stops; the next get_database opens a new one)."""
    with _databases_lock:
        database = _databases.pop(url, None)
    if database is not None:
        database.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


# A pooled connection idle longer than this is pinged before use.
PING_IDLE_AFTER = 1.0


def _checkin(_dbapi_conn, record):
    if record is not None:
        record.info["godwit_checkin"] = time.monotonic()


def _checkout(dialect, dbapi_conn, record, _proxy):
    """Ping a connection that was idle, as pool_pre_ping would; a dropped one is
    replaced by the pool (DisconnectionError makes it reconnect and retry)."""
    since = record.info.get("godwit_checkin")
    if since is None or time.monotonic() - since < PING_IDLE_AFTER:
        return
    try:
        alive = dialect.do_ping(dbapi_conn)
    except dialect.loaded_dbapi.Error as e:
        if dialect.is_disconnect(e, dbapi_conn, None):
            raise sa.exc.DisconnectionError() from e
        raise
    if alive is False:
        raise sa.exc.DisconnectionError()


def _new_uuid():
    return str(uuidlib.uuid4())


# Hot statements, built once. Reads return core rows turned into dicts (the
# same keys as the models' to_dict(): every column is mapped under its own
# name), which costs a fraction of loading ORM objects.
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
_INSTANCE_BY_UUID = select(_INST).where(_INST.c.uuid == sa.bindparam("uuid"))
_LIVE_INSTANCE_BY_UUID = _INSTANCE_BY_UUID.where(_INST.c.deleted_at.is_(None))
_VIFS_OF = (select(_VIF).where(_VIF.c.instance_uuid == sa.bindparam("uuid"))
            .order_by(_VIF.c.id))
_BDMS_OF = (select(_BDM).where(_BDM.c.instance_uuid == sa.bindparam("uuid"))
            .order_by(_BDM.c.id))
_SERVICE_BY_HOST = select(_SVC).where(_SVC.c.host == sa.bindparam("host"),
                                      _SVC.c.binary == sa.bindparam("binary"))
_NODE_BY_HOST = select(_NODE).where(_NODE.c.host == sa.bindparam("host"))
_FLAVOR_BY_ID = select(_FLAVOR).where(_FLAVOR.c.id == sa.bindparam("id"))
_ACTION_BY_REQUEST = select(_ACTION).where(_ACTION.c.instance_uuid == sa.bindparam("uuid"),
                                           _ACTION.c.request_id == sa.bindparam("request_id"))
_ACTION_ID_BY_REQUEST = select(_ACTION.c.id).where(
    _ACTION.c.instance_uuid == sa.bindparam("uuid"),
    _ACTION.c.request_id == sa.bindparam("request_id"))
_EVENT_COLUMNS = tuple(c.name for c in _EVENT.c)
# How many (instance, request) -> action id pairs a process remembers.
_ACTION_CACHE_SIZE = 4096


def _row(row):
    return None if row is None else dict(row._mapping)


def _first(conn, stmt, params):
    return _row(conn.execute(stmt, params).first())


def _all(conn, stmt, params=None):
    return [dict(r._mapping) for r in conn.execute(stmt, params)]


class Database(MoveStore, ClaimStore, LedgerStore, TimelineStore, DrainStore):
    def __init__(self, url, echo=False):
        self.url = url
        kwargs = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            # Not pool_pre_ping, which costs a round trip on every checkout:
            # only a connection that sat idle may have been dropped (server
            # restart, idle timeouts), so only those are pinged (_checkout).
            # LIFO keeps the busy connections busy and lets the spare ones idle.
            kwargs.update(pool_size=10, max_overflow=20, pool_use_lifo=True)
        if url.startswith("mysql"):
            # MySQL/MariaDB default to REPEATABLE READ, where the re-read after a
            # lost compare-and-swap would show the transaction's old snapshot
            # instead of the winner's value.
            kwargs["isolation_level"] = "READ COMMITTED"
        self.engine = sa.create_engine(url, **kwargs)
        # oslo.db's translation of driver errors (DBConnectionError, DBDeadlock...).
        exc_filters.register_engine(self.engine)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            event.listen(self.engine, "checkin", _checkin)
            event.listen(self.engine, "checkout", functools.partial(_checkout,
                                                                    self.engine.dialect))
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # The options the phases' deadlines are read from (godwit.phases);
        # the conductor and the API set their configuration here.
        self.deadlines = None
        # (instance_uuid, request_id) -> instance action id. Actions are
        # never deleted or re-keyed, so an entry cannot go stale.
        self._action_ids = collections.OrderedDict()
        self._action_ids_lock = threading.Lock()
        self._reads = threading.local()
        # Called after every committed phase change (MoveStore.phase_changed);
        # the process's notifier sets it (godwit.notifications).
        self.on_phase_change = None

    @contextlib.contextmanager
    def transaction(self):
        """An ORM session in one transaction."""
        with self._session() as session, session.begin():
            yield session

    def connection(self):
        """A core connection in one transaction (cheaper than a session).

        Inside :meth:`reads` on the same thread, that block's transaction.
        """
        shared = getattr(self._reads, "conn", None)
        if shared is not None:
            return contextlib.nullcontext(shared)
        return self.engine.begin()

    @contextlib.contextmanager
    def reads(self):
        """Run a group of reads in one transaction instead of one each.

        For a series of checks that only read (the pre-checks of a move):
        every read method on this thread that uses :meth:`connection` joins
        it. The isolation level is unchanged (READ COMMITTED, or SQLite's
        serialised writes), so each statement sees what it would have seen in
        its own transaction. Do not write inside it.
        """
        if getattr(self._reads, "conn", None) is not None:
            yield
            return
        with self.engine.begin() as conn:
            self._reads.conn = conn
            try:
                yield
            finally:
                self._reads.conn = None

    # ------------------------------------------------------------------ services
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
        with self.connection() as conn:
            return _first(conn, _NODE_BY_HOST, {"host": host})

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
        with self.connection() as conn:
            flavor = _first(conn, _FLAVOR_BY_ID, {"id": flavor_pk})
        if flavor is None:
            raise exception.FlavorNotFound(flavor_id=flavor_pk)
        return flavor

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
        res = conn.execute(q.values(**values))
        current = _first(conn, _INSTANCE_BY_UUID, {"uuid": instance_uuid})
        if res.rowcount != 1:
            if current is None:
                raise exception.InstanceNotFound(instance_id=instance_uuid)
            found = {c: current[c] for c in (expected or {})}
            raise exception.ConcurrentUpdate(what=f"Instance {instance_uuid}",
                                             expected=expected, found=found)
        return current

    # --------------------------------------------------------------- migrations
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
        action_id = conn.execute(sa.insert(_ACTION).values(**action_values)
                                 ).inserted_primary_key[0]
        mig = dict(migration_values)
        mig.setdefault("uuid", _new_uuid())
        mig.setdefault("status", states.ACCEPTED)
        mig.setdefault("created_at", utcnow())
        mig_id = conn.execute(sa.insert(_MIG).values(**mig)).inserted_primary_key[0]
        timeline_mod.record(conn, mig_id, [timeline_mod.phase_entry(None, mig["status"],
                                                                    "create")])
        return (instance, _first(conn, select(_ACTION).where(_ACTION.c.id == action_id), {}),
                _first(conn, _MIGRATION_BY_ID, {"id": mig_id}))

    def migration_get(self, migration_id):
        with self.connection() as conn:
            return self._migration_get(conn, migration_id)

    @staticmethod
    def _migration_get(conn, migration_id):
        mig = _first(conn, _MIGRATION_BY_ID, {"id": migration_id})
        if mig is None:
            raise exception.MigrationNotFound(migration_id=migration_id)
        return mig

    def migration_context(self, migration_id, with_nodes_and_flavors=None):
        """The migration, its instance, network_info and block_device_info in one
        transaction; for cold migrations and resizes (or when asked) also both
        compute nodes and both flavors."""
        with self.connection() as conn:
            return self._migration_context(conn, migration_id, with_nodes_and_flavors)

    @classmethod
    def _migration_context(cls, conn, migration_id, with_nodes_and_flavors=None):
        migration = cls._migration_get(conn, migration_id)
        uuid = migration["instance_uuid"]
        context = {"migration": migration, "instance": cls._instance_get(conn, uuid),
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
                         instance_progress=None):
        """Update non-status fields (progress, hosts), optionally guarded by status.

        With ``instance_progress`` the instance's progress is set in the same
        transaction while its task_state is still MIGRATING (silently not, if
        it is no longer).
        """
        if "status" in values:
            raise ValueError("status changes go through migration_advance")
        with self.connection() as conn:
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

    # ------------------------------------------------- block devices, interfaces
    def bdm_list(self, instance_uuid):
        with self.connection() as conn:
            return _all(conn, _BDMS_OF, {"uuid": instance_uuid})

    def bdm_create(self, values):
        values = dict(values)
        values.setdefault("uuid", _new_uuid())
        with self.transaction() as s:
            bdm = models.BlockDeviceMapping(**values)
            s.add(bdm)
            s.flush()
            return bdm.to_dict()

    def vif_find(self, vif_id):
        """The VIF whose uuid is ``vif_id`` or starts with it (a tap's name keeps
        11 characters of it); None if there is none or it is not unique."""
        with self.connection() as conn:
            rows = _all(conn, select(_VIF).where(_VIF.c.uuid.like(f"{vif_id}%")).limit(2))
        return rows[0] if len(rows) == 1 else None

    def vif_list(self, instance_uuid):
        with self.connection() as conn:
            return _all(conn, _VIFS_OF, {"uuid": instance_uuid})

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
            res = conn.execute(sa.insert(_EVENT).values(
                **{k: v for k, v in row.items() if v is not None}))
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


# A database outage: each call is retried with a growing pause (0.5 s up to
# 5 s) for about a minute and a half, then fails; the conductor's sweep and
# the agents' own retries take it from there.
OUTAGE_RETRIES = 20
_NOT_RETRIED = frozenset({"transaction", "connection", "reads"})


def _retry_on_outage(cls):
    """Wrap every public method of ``cls`` in oslo.db's retry on a lost
    connection or a deadlock. Inside :meth:`Database.reads` a call is not
    retried on its own: the shared transaction is gone with its connection."""
    retry = oslo_db_api.wrap_db_retry(max_retries=OUTAGE_RETRIES, retry_interval=0.5,
                                      inc_retry_interval=True, max_retry_interval=5,
                                      retry_on_disconnect=True, retry_on_deadlock=True)
    for name in dir(cls):
        fn = getattr(cls, name)
        if name.startswith("_") or name in _NOT_RETRIED or not callable(fn) \
                or isinstance(cls.__dict__.get(name), staticmethod):
            continue
        if not hasattr(fn, "__code__"):
            continue

        def wrap(fn=fn, retrying=retry(fn)):
            @functools.wraps(fn)
            def call(self, *args, **kwargs):
                if getattr(self._reads, "conn", None) is not None:
                    return fn(self, *args, **kwargs)
                return retrying(self, *args, **kwargs)
            return call
        setattr(cls, name, wrap())
    return cls


Database = _retry_on_outage(Database)


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
