"""The phases of every move, in one table per move type that everything reads.

A migration's ``status`` is its phase. For each phase the table says:

* ``driver``: who does the work while the move is in it. The conductor that
  owns the migration always drives (it calls the hosts); this names the host
  whose step runs, or ``user`` when the move waits for a decision.
* ``events``: the named events that leave the phase and the phase each one
  leads to. Flows say ``advance(migration, "prepared")`` and the table picks
  the target; the compare-and-swap keeps the edge in its WHERE clause.
* ``deadline``: the ``[DEFAULT]`` option (seconds) after which the conductor
  stops waiting and decides from what the hosts say (see
  :mod:`conductor.recovery`); None: no deadline.
* ``guest``: where the guest runs while the move is in the phase
  (``source``, ``destination`` or ``either``: only the hosts can tell).
* ``on_error``: what the instance looks like if the move ends in ``error``
  from this phase (its vm_state; ``None`` keeps it).
* ``holds``: what the move has made, or is making, on its hosts once it
  enters the phase: (``source``|``dest``, kind, ``planned``|``present``), for
  the ledger (:mod:`godwit.db.ledger`). A final phase releases everything
  the move held (``error`` only its claim: the rest stays recorded, since
  an operator has to see what is left where).
* ``final``: the move is over. ``error`` may be reopened, and only while its
  row names hosts that could not be asked (``awaiting_hosts``): a phase whose
  ``unresolved`` event led there resumes when they return (``resume:<phase>``).

The watchdog, recovery, the API, ``godwit.testing``, the demo and the
published tables (docs/crash-safety.md) all take statuses from here.
"""

import dataclasses

from godwit import states as s

#: The event a phase takes when a host it needs could not be asked by the
#: phase's deadline: the move ends in 'error' and waits for that host.
UNRESOLVED = "unresolved"
#: Prefix of the event that reopens such an 'error' (``resume:running``).
RESUME = "resume:"


@dataclasses.dataclass(frozen=True)
class Phase:
    status: str
    driver: str
    events: dict
    deadline: str | None
    guest: str
    on_error: str | None
    final: bool = False
    doc: str = ""
    holds: tuple = ()


def _final(status, doc):
    return Phase(status, "-", {}, None, "-", None, final=True, doc=doc)


def _holds(role, state, *kinds):
    return tuple((role, kind, state) for kind in kinds)


# What pre_live_migration (live) sets up on the destination: the guest's
# directory (its disks with block migration), volume connections, VIFs, the
# filter. The kinds name what the step makes if the guest has any.
_LIVE_PREP = ("instance_dir", "volumes", "vifs", "filter")
# What finish_resize builds on a cold move's destination around the copied disks.
_COLD_FINISH = ("domain", "volumes", "vifs", "filter")


class PhaseTable:
    """The phases of one move type, with lookups by status and event."""

    def __init__(self, name, phases):
        self.name = name
        self.phases = {p.status: p for p in phases}
        # An 'error' that awaits hosts resumes, when they return, in the phase
        # it was left from (the one whose 'unresolved' event led to it).
        self.reopen = frozenset(p.status for p in phases
                                if p.events.get(UNRESOLVED) == s.ERROR_MIGRATION)

    def __getitem__(self, status):
        return self.phases[status]

    def __contains__(self, status):
        return status in self.phases

    def target(self, status, event):
        """The phase ``event`` leads to from ``status``; None if it has no such edge.

        ``resume:<phase>`` reopens an unresolved ``error`` into ``<phase>``.
        """
        if status == s.ERROR_MIGRATION and event.startswith(RESUME):
            resumed = event[len(RESUME):]
            return resumed if resumed in self.reopen else None
        phase = self.phases.get(status)
        return None if phase is None else phase.events.get(event)

    def edges(self):
        """Every (old, event, new), the reopening edges included."""
        out = [(p.status, ev, new) for p in self.phases.values()
               for ev, new in p.events.items()]
        out += [(s.ERROR_MIGRATION, RESUME + st, st) for st in sorted(self.reopen)]
        return out

    @property
    def in_progress(self):
        return frozenset(st for st, p in self.phases.items() if not p.final)

    @property
    def final(self):
        return frozenset(st for st, p in self.phases.items() if p.final)


_COMPLETED = _final(s.COMPLETED, "the guest runs on the destination; both hosts are clean")
_FAILED = _final(s.FAILED, "rolled back: the guest runs on the source; the destination "
                           "is clean")
_CANCELLED = _final(s.CANCELLED, "aborted on request and rolled back, as failed")
_ERROR = _final(s.ERROR_MIGRATION, "refused by a check, or needs an operator; error_message "
                                   "says why. Reopened by recovery while awaiting_hosts is "
                                   "set")

LIVE = PhaseTable(s.LIVE_MIGRATION, [
    Phase(s.ACCEPTED, "conductor", {"checked": s.QUEUED, "refused": s.ERROR_MIGRATION,
                                    "interrupted": s.FAILED},
          "live_migration_accepted_timeout", "source", None,
          doc="claimed; the conductor runs the host pre-checks and picks the destination"),
    Phase(s.QUEUED, "conductor", {"slot": s.PREPARING, "abort": s.CANCELLED},
          "live_migration_queued_timeout", "source", None,
          doc="waiting for one of the source's max_concurrent_live_migrations slots"),
    Phase(s.PREPARING, "destination", {"prepared": s.RUNNING_MIGRATION,
                                       "fail": s.ROLLING_BACK, "abort": s.ROLLING_BACK},
          "live_migration_preparing_timeout", "source", None,
          doc="pre_live_migration: directory, disks, volume connections, VIFs, filter",
          holds=_holds("dest", "planned", *_LIVE_PREP)),
    Phase(s.RUNNING_MIGRATION, "source", {"switched": s.POST_MIGRATING,
                                          "fail": s.ROLLING_BACK, "abort": s.ROLLING_BACK,
                                          UNRESOLVED: s.ERROR_MIGRATION},
          "live_migration_progress_timeout", "either", s.ERROR,
          doc="the hypervisor job moves the guest, steered by the source's monitor",
          holds=_holds("dest", "present", *_LIVE_PREP) + _holds("dest", "planned", "domain")),
    Phase(s.POST_MIGRATING, "source", {"done": s.COMPLETED, "fail": s.ERROR_MIGRATION,
                                       UNRESOLVED: s.ERROR_MIGRATION},
          "live_migration_post_timeout", "destination", s.ERROR,
          doc="switched over (instances.host is the destination); both hosts finalised",
          holds=_holds("dest", "present", "domain")),
    Phase(s.ROLLING_BACK, "destination", {"rolled_back": s.FAILED,
                                          "cancelled": s.CANCELLED,
                                          "fail": s.ERROR_MIGRATION},
          "live_migration_preparing_timeout", "source", None,
          doc="the guest stayed on the source; the destination is being cleaned"),
    _COMPLETED, _FAILED, _CANCELLED, _ERROR,
])

COLD = PhaseTable("cold migration and resize", [
    Phase(s.ACCEPTED, "destination", {"prepped": s.PRE_MIGRATING, "refused": s.ERROR_MIGRATION,
                                      "interrupted": s.FAILED},
          "cold_migration_accepted_timeout", "source", None,
          doc="prep_resize on the destination (the next alternate if it refuses)"),
    Phase(s.PRE_MIGRATING, "conductor", {"copy": s.MIGRATING_COLD,
                                         "interrupted": s.FAILED},
          "cold_migration_accepted_timeout", "source", None,
          doc="the destination took the claim; the source is next"),
    Phase(s.MIGRATING_COLD, "source", {"copied": s.POST_MIGRATING, "fail": s.ROLLING_BACK,
                                       UNRESOLVED: s.ERROR_MIGRATION},
          "cold_migration_step_timeout", "source", s.ERROR,
          doc="resize_instance: the source powers off and copies the disks",
          holds=_holds("source", "planned", "resize_dir")
          + _holds("dest", "planned", "instance_dir")),
    Phase(s.POST_MIGRATING, "destination", {"finished": s.FINISHED, "fail": s.ROLLING_BACK,
                                            UNRESOLVED: s.ERROR_MIGRATION},
          "cold_migration_step_timeout", "destination", s.ERROR,
          doc="finish_resize: the destination builds and starts the guest",
          holds=_holds("source", "present", "resize_dir")
          + _holds("dest", "present", "instance_dir")
          + _holds("dest", "planned", *_COLD_FINISH)),
    Phase(s.FINISHED, "user", {"confirm": s.CONFIRMING, "revert": s.REVERTING},
          None, "destination", None,
          doc="VERIFY_RESIZE: waiting for confirm or revert (or resize_confirm_window)",
          holds=_holds("dest", "present", *_COLD_FINISH)),
    Phase(s.CONFIRMING, "source", {"confirmed": s.CONFIRMED, "fail": s.ERROR_MIGRATION},
          "cold_migration_step_timeout", "destination", None,
          doc="confirm_resize: the source's copy and domain are removed"),
    Phase(s.REVERTING, "destination", {"reverted": s.REVERTED, "fail": s.ERROR_MIGRATION,
                                       UNRESOLVED: s.ERROR_MIGRATION},
          "cold_migration_step_timeout", "either", s.ERROR,
          doc="revert_resize on the destination, then finish_revert_resize on the source"),
    Phase(s.ROLLING_BACK, "source", {"rolled_back": s.FAILED, "fail": s.ERROR_MIGRATION,
                                     UNRESOLVED: s.ERROR_MIGRATION},
          "cold_migration_step_timeout", "source", s.ERROR,
          doc="the copy or the finish failed: the destination is cleaned and the guest "
              "restored on the source"),
    _final(s.CONFIRMED, "confirmed: the guest runs on the destination; the source is clean"),
    _final(s.REVERTED, "reverted: the guest runs on the source; the destination is clean"),
    _FAILED, _ERROR,
])

TABLES = {s.LIVE_MIGRATION: LIVE, s.COLD_MIGRATION: COLD, s.RESIZE: COLD}

#: The live migration phases the server migrations API shows as under way
#: (Nova's queued, preparing, running, post-migrating; and rolling-back).
LIVE_UNDER_WAY = LIVE.in_progress - {s.ACCEPTED}

FINAL = frozenset().union(*(t.final for t in TABLES.values()))
IN_PROGRESS = frozenset().union(*(t.in_progress for t in TABLES.values()))


def table(migration_type):
    return TABLES.get(migration_type)


def phase(migration_type, status):
    return TABLES[migration_type][status]


def target(migration_type, status, event):
    t = TABLES.get(migration_type)
    return None if t is None else t.target(status, event)


def is_final(status):
    return status in FINAL
