"""A host's journal of the move steps it ran, kept on its own disk.

Every host step of a move is keyed by (migration id, step name) and carries
the epoch of the conductor that asked for it (docs/crash-safety.md):

* a step that finished returns its first outcome when asked again (a
  message redelivered, a conductor that lost the answer, a new owner going
  over the move again) and does nothing twice; one that failed raises its
  first error again (the conductor decides once what a failure means);
* a step still running in this process is joined, not started a second time;
* a step that was started by an earlier process of this agent (it died in
  the middle) runs again: host steps are idempotent, so the re-run finishes
  what the first run left;
* a step that carries an older epoch than one already seen for its migration
  is refused (StaleEpoch): another conductor has taken the move over, and the
  old one must not act on it any more.

Steps of one migration run one at a time on a host, so a rollback cannot
overtake the preparation it undoes.

The journal is a SQLite file under the agent's state path: compute agents
hold no credentials for the control plane's database, and this file only
has to survive the agent, not the host.
"""

import concurrent.futures
import json
import os
import sqlite3
import threading
import time

from oslo_log import log as logging

from godwit import exception

LOG = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
    migration_id TEXT NOT NULL,   -- a migration's id, or 'power:<instance>'
    step TEXT NOT NULL,
    epoch INTEGER,
    state TEXT NOT NULL,          -- started | done | failed
    result TEXT,                  -- JSON of a done step's return value
    error TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    replays INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (migration_id, step)
);
CREATE TABLE IF NOT EXISTS fences (
    migration_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL
);
"""


StepInProgress = exception.StepInProgress


class Journal:
    def __init__(self, path, host):
        self.path = path
        self.host = host
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._inflight = {}            # (migration, step) -> Future
        self.writes = 0                # write statements (each its own commit), for the bench
        self._migration_locks = {}     # migration -> Lock (one step at a time)

    def idle(self):
        """No step runs here now (a moment for work that can wait: step events)."""
        return not self._inflight

    def close(self):
        with self._lock:
            self._db.close()

    def _write(self, sql, args):
        # isolation_level=None: each statement is its own transaction (commit).
        self.writes += 1
        self._db.execute(sql, args)

    # --- fencing -----------------------------------------------------------
    def fence(self, migration_id, step, epoch):
        """Refuse ``epoch`` if a newer one was seen for the migration; remember it."""
        migration_id = str(migration_id)
        if epoch is None:
            return
        with self._lock:
            self._fence(migration_id, step, epoch)

    def _fence(self, migration_id, step, epoch):
        if epoch is None:
            return
        row = self._db.execute("SELECT epoch FROM fences WHERE migration_id = ?",
                               (migration_id,)).fetchone()
        if row is not None and row[0] > epoch:
            raise exception.StaleEpoch(step=step, migration_id=migration_id, host=self.host,
                                       epoch=epoch, current=row[0])
        if row is None or row[0] < epoch:
            self._write("INSERT OR REPLACE INTO fences (migration_id, epoch) VALUES (?, ?)",
                             (migration_id, epoch))

    # --- steps -------------------------------------------------------------
    def run(self, migration_id, step, epoch, fn, wait=None, after=None):
        """Run ``fn()`` as step ``step`` of the migration, once; see the module
        docstring. ``wait``: seconds to wait for the same step running in
        another thread before answering StepInProgress (None: as long as it runs).
        ``after(step)`` runs once the work is done and before it is recorded
        (fault injection: "did it, died before recording it").
        """
        migration_id = str(migration_id)
        key = (migration_id, step)
        with self._lock:
            self._fence(migration_id, step, epoch)
            row = self._get(migration_id, step)
            if row is not None and row["state"] in ("done", "failed"):
                self._write("UPDATE steps SET replays = replays + 1 WHERE migration_id = ? "
                                 "AND step = ?", key)
                if row["state"] == "failed":
                    raise _error(row["error"])
                return json.loads(row["result"]) if row["result"] else None
            future = self._inflight.get(key)
            if future is None:
                future = self._inflight[key] = concurrent.futures.Future()
                owner = True
                self._write(
                    "INSERT INTO steps (migration_id, step, epoch, state, runs, started_at) "
                    "VALUES (?, ?, ?, 'started', 1, ?) ON CONFLICT (migration_id, step) DO "
                    "UPDATE SET state = 'started', epoch = excluded.epoch, runs = runs + 1, "
                    "started_at = excluded.started_at, error = NULL",
                    (migration_id, step, epoch, time.time()))
                lock = self._migration_locks.setdefault(migration_id, threading.Lock())
            else:
                owner = False
        if not owner:
            try:
                return future.result(timeout=wait)
            except concurrent.futures.TimeoutError:
                raise StepInProgress(step=step, migration_id=migration_id,
                                     host=self.host) from None
        try:
            with lock:
                result = fn()
                if after is not None:
                    after(step)
        except BaseException as e:
            self._finish(key, "failed", error=json.dumps(
                {"class": type(e).__name__, "message": exception.message_of(e)[:2000]}))
            future.set_exception(e)
            raise
        else:
            self._finish(key, "done", result=result)
            future.set_result(result)
            return result
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def _finish(self, key, state, result=None, error=None):
        with self._lock:
            self._write(
                "UPDATE steps SET state = ?, result = ?, error = ?, finished_at = ? "
                "WHERE migration_id = ? AND step = ?",
                (state, json.dumps(result) if result is not None else None, error,
                 time.time(), *key))

    def record(self, migration_id, step, epoch, result):
        """Write a step's outcome that happened outside :meth:`run` (a migration
        job that ended under the monitor)."""
        migration_id = str(migration_id)
        with self._lock:
            self._write(
                "INSERT INTO steps (migration_id, step, epoch, state, result, runs, "
                "finished_at) VALUES (?, ?, ?, 'done', ?, 1, ?) ON CONFLICT (migration_id, "
                "step) DO UPDATE SET state = 'done', result = excluded.result, "
                "finished_at = excluded.finished_at",
                (migration_id, step, epoch, json.dumps(result), time.time()))

    def begin(self, migration_id, step, epoch):
        """Mark a step started that :meth:`record` will end (see record)."""
        migration_id = str(migration_id)
        with self._lock:
            self._fence(migration_id, step, epoch)
            self._write(
                "INSERT INTO steps (migration_id, step, epoch, state, runs, started_at) "
                "VALUES (?, ?, ?, 'started', 1, ?) ON CONFLICT (migration_id, step) DO "
                "UPDATE SET state = 'started', runs = runs + 1, started_at = "
                "excluded.started_at", (migration_id, step, epoch, time.time()))

    def _get(self, migration_id, step):
        cur = self._db.execute("SELECT * FROM steps WHERE migration_id = ? AND step = ?",
                               (migration_id, step))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row))

    def get(self, migration_id, step):
        migration_id = str(migration_id)
        with self._lock:
            return self._get(migration_id, step)

    def steps(self, migration_id=None):
        """Every journal entry (of one migration), for recovery and for tests."""
        migration_id = None if migration_id is None else str(migration_id)
        with self._lock:
            if migration_id is None:
                cur = self._db.execute("SELECT * FROM steps ORDER BY migration_id, started_at")
            else:
                cur = self._db.execute("SELECT * FROM steps WHERE migration_id = ? "
                                       "ORDER BY started_at", (migration_id,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def prune(self, older_than=7 * 86400):
        """Forget steps that finished long ago."""
        cutoff = time.time() - older_than
        with self._lock:
            self._write("DELETE FROM steps WHERE finished_at IS NOT NULL AND "
                             "finished_at < ?", (cutoff,))


def _error(stored):
    """The exception a failed step raised, rebuilt from what the journal kept."""
    try:
        err = json.loads(stored)
    except (TypeError, ValueError):
        err = {"class": "", "message": stored or "the step failed"}
    cls = getattr(exception, err.get("class") or "", None)
    if isinstance(cls, type) and issubclass(cls, exception.GodwitException):
        return cls(err["message"])
    return exception.GodwitException(err["message"])


def read(path):
    """The entries of a journal file, for tests and ``godwit-manage`` (read-only)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = db.execute("SELECT * FROM steps ORDER BY migration_id, started_at")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        db.close()
