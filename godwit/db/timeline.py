"""Each move's timeline (table ``migration_timeline``): what happened and when.

Append-only. Kinds of entry:

* ``phase``: a phase entered (``name`` the status; ``detail``: from, event,
  reason), written in the phase change's own transaction, so the timeline
  has every phase the row went through, with the time it was committed;
* ``step``: a host step the conductor asked for, stamped with the time it was
  asked (``host``, ``duration_ms``;
  ``detail``: outcome ``ok`` or the error), kept in the conductor's memory and
  written with the move's next phase change or saved data (so a step costs no
  transaction of its own; a conductor that dies loses the steps it had not
  written yet, never a phase);
* ``intent``: a user's abort, force-complete, confirm or revert, with the
  intent's own write;
* ``tuning``: the monitor changed the job (``detail``: the new max downtime,
  post-copy, auto-converge...);
* ``progress``: a sample of the job's progress (at most one per
  PROGRESS_EVERY seconds per move, and the first);
* ``cleanup``: a clean-up left for a host that was away, run when it returned.

Timestamps are the recording process's clock (UTC), as ``updated_at`` is.
"""

import datetime
import json
import time

from sqlalchemy import bindparam, insert, select

from godwit.db import models
from godwit.timeutils import utcnow

_TL = models.TimelineEntry.__table__
_INSERT = insert(_TL)
# In time order: a host step is written after entries that came later (with
# the phase it led to), stamped with the time it was asked.
_OF = select(_TL).where(_TL.c.migration_id == bindparam("mid")).order_by(_TL.c.at,
                                                                          _TL.c.id)

KINDS = ("phase", "step", "intent", "tuning", "progress", "cleanup")
PROGRESS_EVERY = 5.0


def entry(kind, name, host=None, duration_ms=None, at=None, detail=None, **more):
    """One entry, ready for :func:`record` (without its migration id); its
    detail is ``detail`` (a dict) and ``more``."""
    detail = dict(detail or {}, **more)
    return {"kind": kind, "name": name[:64], "host": host,
            "duration_ms": None if duration_ms is None else int(round(duration_ms)),
            "at": at or utcnow(),
            "detail": json.dumps(detail, default=str) if detail else None}


def step_entry(kind, name, host, started_monotonic, ended_monotonic=None, **detail):
    """A step that began at ``started_monotonic`` (time.monotonic()) and just
    ended, or ended at ``ended_monotonic``."""
    now = time.monotonic()
    ended = now if ended_monotonic is None else ended_monotonic
    took = ended - started_monotonic
    return entry(kind, name, host=host, duration_ms=took * 1000,
                 at=utcnow() - datetime.timedelta(seconds=now - started_monotonic),
                 **detail)


def record(conn, migration_id, entries):
    """Append ``entries`` to the timeline of ``migration_id`` in ``conn``'s transaction."""
    if entries:
        conn.execute(_INSERT, [dict(e, migration_id=migration_id) for e in entries])


def phase_entry(old, new, event, reason=None):
    return entry("phase", new, **{"from": old, "event": event,
                                  **({"reason": reason} if reason else {})})


class TimelineStore:
    """Mixed into :class:`godwit.db.api.Database`."""

    def timeline(self, migration_id):
        """The timeline of ``migration_id`` in time order, ``detail`` decoded."""
        with self.connection() as conn:
            rows = [dict(r._mapping) for r in conn.execute(_OF, {"mid": migration_id})]
        for r in rows:
            r["detail"] = json.loads(r["detail"]) if r["detail"] else {}
        return rows

    def timeline_append(self, migration_id, entries):
        """Append ``entries`` in a transaction of their own."""
        if entries:
            with self.connection() as conn:
                record(conn, migration_id, entries)
