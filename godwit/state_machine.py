"""The migration lifecycle as a graph: every allowed status change.

The edges come from the phase tables (:mod:`godwit.phases`), where each one
has a name (the event). A migration moves only along them, and only by a
compare-and-swap write (``UPDATE migrations SET status=:new WHERE id=:id AND
status=:old AND epoch=:epoch``, see :meth:`godwit.db.api.Database.migration_advance`):
two actors racing for the same edge cannot both win, and a step re-run after
a crash finds the row already moved (:func:`is_reached`).

Live migration::

    accepted -> queued -> preparing -> running -> post-migrating -> completed
       |          |           |           |              |
       |          |           +-----------+--> rolling-back --> failed | cancelled | error
       +----------+--> error | failed | cancelled                      |
                                                   post-migrating --> error

Cold migration and resize::

    accepted -> pre-migrating -> migrating -> post-migrating -> finished
    finished -> confirming -> confirmed
    finished -> reverting  -> reverted
    migrating | post-migrating -> rolling-back -> failed

``error`` is final, except that recovery reopens one whose hosts could not be
asked (``awaiting_hosts``) into ``post-migrating`` or ``rolling-back``.
"""

from godwit import exception, phases
from godwit import states as s


def _transitions(table):
    out = {}
    for old, _event, new in table.edges():
        out.setdefault(old, set()).add(new)
    return out


LIVE_TRANSITIONS = _transitions(phases.LIVE)
COLD_TRANSITIONS = _transitions(phases.COLD)

TRANSITIONS = {
    s.LIVE_MIGRATION: LIVE_TRANSITIONS,
    s.COLD_MIGRATION: COLD_TRANSITIONS,
    s.RESIZE: COLD_TRANSITIONS,
}

# The forward paths, used to tell whether a status has been passed. A cold
# migration's path forks after 'finished' into confirm or revert.
LIVE_PATHS = [[s.ACCEPTED, s.QUEUED, s.PREPARING, s.RUNNING_MIGRATION, s.POST_MIGRATING,
               s.COMPLETED],
              [s.ACCEPTED, s.QUEUED, s.PREPARING, s.RUNNING_MIGRATION, s.ROLLING_BACK]]
_COLD_TRUNK = [s.ACCEPTED, s.PRE_MIGRATING, s.MIGRATING_COLD, s.POST_MIGRATING, s.FINISHED]
COLD_PATHS = [_COLD_TRUNK + [s.CONFIRMING, s.CONFIRMED],
              _COLD_TRUNK + [s.REVERTING, s.REVERTED]]


def allowed(migration_type, old, new):
    """True if a migration of this type may move from ``old`` to ``new``."""
    return new in TRANSITIONS.get(migration_type, {}).get(old, ())


def check(migration_type, old, new):
    """Raise InvalidMigrationTransition unless ``old -> new`` is an edge."""
    if not allowed(migration_type, old, new):
        raise exception.InvalidMigrationTransition(
            migration_type=migration_type, old=old, new=new)


def is_final(status):
    return phases.is_final(status)


def is_reached(migration_type, current, target):
    """True if ``current`` is ``target`` or lies beyond it on a forward path.

    A retried step asks this to learn that its transition already happened.
    """
    if current == target:
        return True
    paths = LIVE_PATHS if migration_type == s.LIVE_MIGRATION else COLD_PATHS
    return any(current in p and target in p and p.index(current) > p.index(target)
               for p in paths)
