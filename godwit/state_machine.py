"""The migration lifecycle: every allowed status change, on one screen.

A migration moves only along these edges, and only by a compare-and-swap
write (``UPDATE migrations SET status=:new WHERE id=:id AND status=:old``,
see :func:`godwit.db.api.migration_transition`). Two actors racing for the
same edge therefore cannot both win, and a step re-run after a crash finds
the row already moved and does nothing (:func:`is_reached`).

Live migration::

    accepted -> queued -> preparing -> running -> post-migrating -> completed
        |          |          |           |              |
        +----------+----------+-----------+--------------+--> failed | error | cancelled

Cold migration and resize::

    accepted -> pre-migrating -> migrating -> post-migrating -> finished
    finished -> confirming -> confirmed
    finished -> reverting  -> reverted
    (any non-final) -> error
"""

from godwit import exception
from godwit import states as s

LIVE_TRANSITIONS = {
    s.ACCEPTED: {s.QUEUED, s.ERROR_MIGRATION, s.FAILED, s.CANCELLED},
    s.QUEUED: {s.PREPARING, s.CANCELLED, s.FAILED, s.ERROR_MIGRATION},
    s.PREPARING: {s.RUNNING_MIGRATION, s.CANCELLED, s.FAILED, s.ERROR_MIGRATION},
    s.RUNNING_MIGRATION: {s.POST_MIGRATING, s.CANCELLED, s.FAILED, s.ERROR_MIGRATION},
    # Past the switch-over the guest runs on the destination: the only way out
    # is forward (or error, if the destination cannot be finalised).
    s.POST_MIGRATING: {s.COMPLETED, s.ERROR_MIGRATION},
}

COLD_TRANSITIONS = {
    s.ACCEPTED: {s.PRE_MIGRATING, s.ERROR_MIGRATION},
    s.PRE_MIGRATING: {s.MIGRATING_COLD, s.ERROR_MIGRATION},
    s.MIGRATING_COLD: {s.POST_MIGRATING, s.ERROR_MIGRATION},
    s.POST_MIGRATING: {s.FINISHED, s.ERROR_MIGRATION},
    s.FINISHED: {s.CONFIRMING, s.REVERTING, s.ERROR_MIGRATION},
    s.CONFIRMING: {s.CONFIRMED, s.ERROR_MIGRATION},
    s.REVERTING: {s.REVERTED, s.ERROR_MIGRATION},
}

TRANSITIONS = {
    s.LIVE_MIGRATION: LIVE_TRANSITIONS,
    s.COLD_MIGRATION: COLD_TRANSITIONS,
    s.RESIZE: COLD_TRANSITIONS,
}

# The forward paths, used to tell whether a status has been passed. A cold
# migration's path forks after 'finished' into confirm or revert.
LIVE_PATHS = [[s.ACCEPTED, s.QUEUED, s.PREPARING, s.RUNNING_MIGRATION, s.POST_MIGRATING,
               s.COMPLETED]]
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
    return status in s.MIGRATION_FINAL


def is_reached(migration_type, current, target):
    """True if ``current`` is ``target`` or lies beyond it on the forward path.

    A retried step asks this to learn that its transition already happened.
    """
    if current == target:
        return True
    paths = LIVE_PATHS if migration_type == s.LIVE_MIGRATION else COLD_PATHS
    return any(current in p and target in p and p.index(current) > p.index(target)
               for p in paths)
