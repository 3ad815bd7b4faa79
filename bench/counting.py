"""Count what one live migration costs: RPC calls and casts, database transactions.

RPC: oslo.messaging's client-side ``_BaseCallContext.call``/``.cast`` are
wrapped for the duration (``RPCClient.call``/``.cast`` delegate to them via
``prepare()``, so each message is counted once). Database: listeners on the
Database engine; a transaction that ran an INSERT/UPDATE/DELETE and committed
is a *write transaction*, any other commit a *read transaction* (Godwit opens
every read in ``session.begin()`` too, so it also ends in a COMMIT). For each
write transaction the outermost ``godwit/db/`` function on the stack is
recorded, so the report can say which Database methods write.
"""

import collections
import os
import sys

from oslo_messaging.rpc import client as om_client
from sqlalchemy import event

_DB_PKG = os.path.join("godwit", "db", "")
_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE")


def _db_api_caller():
    frame = sys._getframe(2)
    name = None
    while frame is not None:
        # The outermost Database method (in api.py or its mixins' modules),
        # not the outage-retry wrapper every public method is called through.
        code = frame.f_code
        if _DB_PKG in code.co_filename and code.co_name != "call":
            name = code.co_name
        frame = frame.f_back
    return name or "?"


class MigrationCounter:
    """Context manager; after exit the counts are in :meth:`result`."""

    def __init__(self, engine):
        self.engine = engine
        self.calls = collections.Counter()
        self.casts = collections.Counter()
        self.statements = collections.Counter()
        self.writes = collections.Counter()
        self.reads = collections.Counter()
        self.more_writes = collections.Counter()
        self.rollbacks = 0
        self._orig = None

    # --- RPC ------------------------------------------------------------------
    def __enter__(self):
        base = om_client._BaseCallContext
        self._orig = (base.call, base.cast)
        orig_call, orig_cast = self._orig
        counter = self

        def call(ctx, ctxt, method, **kwargs):
            counter.calls[f"{ctx.target.topic}.{method}"] += 1
            return orig_call(ctx, ctxt, method, **kwargs)

        def cast(ctx, ctxt, method, **kwargs):
            counter.casts[f"{ctx.target.topic}.{method}"] += 1
            return orig_cast(ctx, ctxt, method, **kwargs)

        base.call, base.cast = call, cast
        event.listen(self.engine, "before_cursor_execute", self._before_execute)
        event.listen(self.engine, "commit", self._commit)
        event.listen(self.engine, "rollback", self._rollback)
        return self

    def __exit__(self, *exc):
        base = om_client._BaseCallContext
        base.call, base.cast = self._orig
        event.remove(self.engine, "before_cursor_execute", self._before_execute)
        event.remove(self.engine, "commit", self._commit)
        event.remove(self.engine, "rollback", self._rollback)
        return False

    # --- database -----------------------------------------------------------------
    def _before_execute(self, conn, cursor, statement, parameters, context, executemany):
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
        self.statements[verb] += 1
        if verb in _WRITE_VERBS:
            conn.info["bench_wrote"] = conn.info.get("bench_wrote", 0) + 1

    def _commit(self, conn):
        caller = _db_api_caller()
        wrote = conn.info.pop("bench_wrote", 0)
        if wrote:
            self.writes[caller] += 1
            # Write statements after a transaction's first: the ledger's and
            # the timeline's rows, an instance's with its migration's.
            self.more_writes[caller] += wrote - 1
        else:
            self.reads[caller] += 1

    def _rollback(self, conn):
        conn.info.pop("bench_wrote", None)
        self.rollbacks += 1

    def result(self):
        return {
            "rpc_calls": sum(self.calls.values()),
            "rpc_casts": sum(self.casts.values()),
            "calls_by_method": dict(self.calls.most_common()),
            "casts_by_method": dict(self.casts.most_common()),
            "db_writes": sum(self.writes.values()),
            "db_reads": sum(self.reads.values()),
            "db_more_write_statements": sum(self.more_writes.values()),
            "db_more_write_statements_by_method": dict(self.more_writes.most_common()),
            "db_writes_by_method": dict(self.writes.most_common()),
            "db_reads_by_method": dict(self.reads.most_common()),
            "sql_statements": dict(self.statements.most_common()),
            "db_rollbacks": self.rollbacks,
        }
