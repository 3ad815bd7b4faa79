"""Database access for the control plane: the engine, its connections and
transactions, the retry on outages, and :class:`Database` composed of one
mixin per resource.

One :class:`Database` per process and URL. Functions return plain dicts, the
same shape that crosses RPC, so callers never hold a session. Every state
change that can race is a compare-and-swap: an ``UPDATE ... WHERE`` on the
expected current value whose rowcount tells who won.

We use SQLAlchemy 2's engine and sessions directly, and oslo.db for what
the field has learnt about outages: its exception filters recognise a lost
connection and a deadlock on PostgreSQL, MySQL and SQLite, and every public
method here is retried on them (:func:`_retry_on_outage`), so a database that
restarts stops progress for a while instead of failing the moves under way.

The resources, one mixin module each (docs/decisions.md, decision 29):
:mod:`~godwit.db.services`, :mod:`~godwit.db.compute_nodes`,
:mod:`~godwit.db.flavors`, :mod:`~godwit.db.instances`,
:mod:`~godwit.db.migration_records`, :mod:`~godwit.db.devices`,
:mod:`~godwit.db.instance_actions`, and the moves' durable side:
:mod:`~godwit.db.moves`, :mod:`~godwit.db.claims`, :mod:`~godwit.db.ledger`,
:mod:`~godwit.db.timeline`, :mod:`~godwit.db.drains`. What they share is in
:mod:`godwit.db.common`.
"""

import collections
import contextlib
import functools
import inspect
import threading
import time

import sqlalchemy as sa
from oslo_db import api as oslo_db_api
from oslo_db.sqlalchemy import exc_filters
from sqlalchemy import event
from sqlalchemy.orm import sessionmaker

from godwit.db.claims import ClaimStore
from godwit.db.compute_nodes import ComputeNodeStore
from godwit.db.devices import DeviceStore
from godwit.db.drains import DrainStore
from godwit.db.flavors import FlavorStore
from godwit.db.instance_actions import InstanceActionStore
from godwit.db.instances import InstanceStore
from godwit.db.ledger import LedgerStore
from godwit.db.migration_records import MigrationStore
from godwit.db.moves import MoveStore
from godwit.db.services import ServiceStore, heartbeat_age, is_service_up
from godwit.db.timeline import TimelineStore

# Callers read a service's state here (godwit.db.api.is_service_up).
__all__ = ["Database", "get_database", "heartbeat_age", "is_service_up", "release_database"]

_databases = {}
_databases_lock = threading.Lock()


def get_database(url, echo=False):
    """The process-wide Database for ``url``: one engine and pool per URL."""
    with _databases_lock:
        if url not in _databases:
            _databases[url] = Database(url, echo=echo)
        return _databases[url]


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


class Database(ServiceStore, ComputeNodeStore, FlavorStore, InstanceStore, MigrationStore,
               DeviceStore, InstanceActionStore, MoveStore, ClaimStore, LedgerStore,
               TimelineStore, DrainStore):
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
                or isinstance(inspect.getattr_static(cls, name), staticmethod):
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
