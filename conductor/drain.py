"""Driving host drains (docs/host-drain.md).

A drain is a row (:mod:`godwit.db.drains`) whose report lists the host's
guests in the order they are moved, each with its state:

    pending      not asked for yet
    moving       a live migration was asked for (``migration_id``)
    cold-moving  the fallback's cold migration was asked for; confirmed when it
                 finishes
    moved        on another host (``destination``)
    skipped      fallback ``skip``: its live migration could not be done, or is
                 predicted not to be, and then is not tried (``reason``)
    left         fallback ``leave``, or the drain was cancelled before it moved
    failed       the cold migration of fallback ``cold`` could not be done
    gone         deleted while the drain ran

Each conductor looks at the active drains every ``host_drain_interval``
seconds and when woken (a drain created or cancelled). It drives only the
drains it holds, by a lease and a fencing epoch as for moves; a drain whose
conductor stopped renewing is taken over. A look:

0. the first one orders the guests by their live migrations' predicted
   duration (the source's estimate, compute RPC 2.1), or keeps them by memory
   without an estimate for every guest; while ``running``, every look adds
   guests that arrived on the host since;
1. acts on the moves the drain started, from their migration rows: a live
   migration that completed moved its guest; one that ended otherwise gives
   the guest the fallback; one still under way past the per-guest timeout, or
   when a cancel with ``on_cancel=abort`` came, is aborted as the abort API
   does (the intent recorded on the migration, its owner woken); a finished
   cold migration is confirmed, one past the per-guest timeout given up;
2. while ``running``, asks for the next pending guests' live migrations, the
   scheduler choosing each destination, through the REST API's own code
   (api.compute_api.ComputeAPI: the same checks, policy and refusals, in the
   name of whoever asked for the drain), while fewer than the source's
   ``max_concurrent_live_migrations`` of its guests are moving;
3. ends it: ``finished`` once no guest is pending or moving, ``cancelled``
   once a cancelled drain's last move ended (its pending guests are ``left``).

Everything a look needs is in the drain's row and the migration rows: a
conductor that restarts, or one that takes over, carries on from there. A
guest is marked ``moving`` (with the time it was asked) before its live
migration is asked for, and the migration's id is written as soon as the
request returns; a conductor that died between the two finds the migration
by its instance and time, or puts the guest back to ``pending``.
"""

import datetime
import json
import threading

import oslo_messaging as messaging
from oslo_context import context as oslo_context
from oslo_log import log as logging
from oslo_messaging.rpc import dispatcher as rpc_dispatcher

from api import compute_api
from conductor import controller, prediction
from godwit import context as godwit_context
from godwit import exception, phases, states
from godwit.db import drains, moves, timeline
from godwit.db.drains import (
    COLD_MOVING,
    FAILED,
    GONE,
    LEFT,
    MOVED,
    MOVING,
    PENDING,
    SKIPPED,
    UNDER_WAY,
)
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)

_LIVE_ENDED_BADLY = (states.FAILED, states.CANCELLED, states.ERROR_MIGRATION)
_COLD_ENDED_BADLY = (states.FAILED, states.ERROR_MIGRATION, states.REVERTED)
# A guest marked moving whose migration cannot be found this long after it was
# asked for was never started (its conductor died before asking): pending again.
_LOST_REQUEST_AFTER = 60
# The same for a request made by a conductor that lost the drain since: its
# move, if it made one, is recorded within its checks (a few seconds).
_LOST_AFTER_TAKEOVER = 10
# How often a guest is asked for again when a conductor's death cut its live
# migration's checks short (before the fallback applies after all).
_RETRIES_AFTER_INTERRUPTION = 3
# Looks at a finished cold fallback whose confirm is refused before the drain
# stops waiting for it (the operator decides).
_CONFIRM_TRIES = 5
# Requests whose move never appeared that are asked again before the guest is
# given up as failed.
_LOST_REQUEST_TRIES = 3
# How long the source may take to answer one guest's estimate (libvirt samples
# the dirty rate for a second) before the drain orders by memory instead.
_ESTIMATE_TIMEOUT = 15
# The order's basis, shown in every guest's ``ordered_by``.
BY_PREDICTION, BY_MEMORY = "predicted duration", "memory size"


class _ConductorHere(controller._HereFirst):
    """The conductor client the REST code expects, answered by this conductor
    (as for the controllers' interface), its refusals raised as themselves:
    the manager's methods are RPC endpoints, whose refusals (godwit.rpc.refusals)
    come wrapped for oslo.messaging's dispatcher when called directly."""

    def live_migrate_instance(self, *args, **kwargs):
        return _unwrapped(super().live_migrate_instance, *args, **kwargs)

    def migrate_server(self, *args, **kwargs):
        return _unwrapped(super().migrate_server, *args, **kwargs)


def _unwrapped(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except rpc_dispatcher.ExpectedException as e:
        raise e.exc_info[1] from None


def _iso(when):
    return when.isoformat()


def _age(guest, now):
    asked = guest.get("asked_at")
    if not asked:
        return 0.0
    return (now - datetime.datetime.fromisoformat(asked)).total_seconds()


class Drainer:
    """One per conductor; see the module docstring."""

    def __init__(self, conductor, transport):
        self.conductor = conductor
        self.db = conductor.db
        self.conf = conductor.conf
        self.host = conductor.host
        # The REST API's code, with the calls that check and start a move
        # answered by this conductor (as the controllers' interface does).
        self.api = compute_api.ComputeAPI(conductor.conf, conductor.db,
                                          _ConductorHere(conductor, transport))
        self.held = {}            # drain uuid -> the epoch this conductor holds
        self._lock = threading.Lock()
        self._running = set()     # drains a thread of this conductor looks at
        self._again = set()       # ... and that were woken meanwhile
        self.stopping = threading.Event()

    # --- when to look ---------------------------------------------------------------
    def sweep(self):
        """Every host_drain_interval: each active drain (ours, or free to take),
        in the engine's workers (a look may wait for a move's pre-checks)."""
        if self.stopping.is_set():
            return
        for d in self.db.drains_active():
            self.wake(d["uuid"])

    def wake(self, drain_uuid):
        """Look at a drain soon, in a worker (a drain that is being looked at
        is looked at once more when that look ends)."""
        if self.stopping.is_set():
            return
        try:
            self.conductor.engine.pool.submit(self.look, drain_uuid)
        except RuntimeError:   # the pool is shutting down
            pass

    def look(self, drain_uuid):
        with self._lock:
            if drain_uuid in self._running:
                self._again.add(drain_uuid)
                return
            self._running.add(drain_uuid)
        try:
            while True:
                try:
                    self._drive(drain_uuid)
                except exception.ConcurrentUpdate as e:
                    # Taken over, or cancelled while this look decided: look again.
                    LOG.info("Drain %s: %s", drain_uuid, e)
                except Exception:
                    LOG.exception("Driving drain %s failed; the next look tries again",
                                  drain_uuid)
                with self._lock:
                    if drain_uuid in self._again and not self.stopping.is_set():
                        self._again.discard(drain_uuid)
                        continue
                    return
        finally:
            with self._lock:
                self._running.discard(drain_uuid)
                self._again.discard(drain_uuid)

    def stop(self):
        """Take no new look, hand every drain over (its lease released)."""
        self.stopping.set()
        released = self.db.drains_release_all(self.host)
        if released:
            LOG.info("Conductor %s stops: %d host drains handed over", self.host, released)

    # --- holding ------------------------------------------------------------------------
    def _hold(self, d):
        """The drain's row to drive, renewed or taken; None if another holds it."""
        ttl = self.conf.migration_lease_time
        if d["owner"] == self.host and self.held.get(d["uuid"]) == d["epoch"]:
            renewed = self.db.drain_renew(d, ttl)
            if renewed is None:
                self.held.pop(d["uuid"], None)
            return renewed
        if d["owner"] and d["owner"] != self.host and d["lease_until"] and \
                d["lease_until"] > self.db.clock():
            return None
        taken = self.db.drain_take(d["uuid"], self.host, ttl)
        if taken is None:
            return None
        LOG.info("Drain %s of %s (%s): taken at epoch %s%s", taken["uuid"], taken["host"],
                 taken["status"], taken["epoch"],
                 f" from {d['owner']}" if d["owner"] and d["owner"] != self.host else "")
        self.held[taken["uuid"]] = taken["epoch"]
        return taken

    # --- a look -------------------------------------------------------------------------
    def _drive(self, drain_uuid):
        d = self.db.drain_get(drain_uuid)
        if d["status"] not in drains.ACTIVE:
            self.held.pop(drain_uuid, None)
            return
        d = self._hold(d)
        if d is None:
            return
        d = self._order(d)
        d = self._follow_moves(d)
        if d["status"] == drains.RUNNING:
            d = self._adopt(d)
        if d["status"] == drains.RUNNING:
            d = self._start_moves(d)
        else:
            d = self._cancel(d)
        self._end(d)

    def _save(self, d, status=None):
        """Write ``d``'s report (and ``status``). The report list stays the one
        the caller is working on: what was written is exactly it."""
        return dict(self.db.drain_save(d, d["report"], status), report=d["report"])

    def _context(self, d):
        """Who asked for the drain, with a request id of this move's own (each
        move gets its instance action)."""
        values = json.loads(d["context"] or "{}")
        if not values:
            return godwit_context.get_admin_context()
        values["request_id"] = oslo_context.generate_request_id()
        return godwit_context.RequestContext.from_dict(values)

    def _log(self, d, guest, text, *args):
        LOG.info("Drain %s of %s: %s (%s) " + text, d["uuid"], d["host"], guest["name"],
                 guest["instance_uuid"], *args)

    # --- 0. the order, and guests that arrive -------------------------------------------------
    def _order(self, d):
        """The first look at a drain puts its guests in order of their live
        migrations' predicted duration, shortest first, from the source's
        estimate of each (compute RPC 2.1: bandwidth and the guest's dirty rate,
        conductor/prediction.py); guests predicted never to converge come last.
        When the estimate is missing for any guest (an agent or conductor
        pinned to 2.0, a driver that cannot tell, an unlimited bandwidth, no
        answer), the order stays the one the drain was created with: memory,
        then disk, then age. With ``fallback=skip`` a guest predicted not to
        converge, or to outlast the per-guest timeout, is skipped here without
        being tried. Done once: every guest then carries ``ordered_by``."""
        report = d["report"]
        if not report or d["status"] != drains.RUNNING or \
                any("ordered_by" in g for g in report):
            return d
        if any(g["state"] != PENDING for g in report):
            # A drain started before drains were ordered by prediction: its
            # moves are under way in the order it has.
            for g in report:
                g["ordered_by"] = BY_MEMORY
            return self._save(d)
        ctxt = self._context(d)
        why_not = None
        for guest in report:
            guest.update(predicted_s=None, prediction=None)
            if why_not is None:
                why_not = self._estimate(d, ctxt, guest)
                # A long estimate round keeps the drain this conductor's.
                if self.db.drain_renew(d, self.conf.migration_lease_time) is None:
                    raise exception.ConcurrentUpdate(
                        what=f"Drain {d['uuid']}", expected=f"held by {self.host}",
                        found="taken over while its guests were estimated")
            if why_not is not None and guest["prediction"] is None:
                guest["prediction"] = f"no estimate: {why_not}"
        if why_not is None:
            index = {g["instance_uuid"]: i for i, g in enumerate(report)}
            report.sort(key=lambda g: (g.get("converges") is False, g["predicted_s"] or 0.0,
                                       index[g["instance_uuid"]]))
            basis = BY_PREDICTION
        else:
            basis = BY_MEMORY
        for g in report:
            g["ordered_by"] = basis
        LOG.info("Drain %s of %s: %d guests in order of %s%s: %s", d["uuid"], d["host"],
                 len(report), basis, f" ({why_not})" if why_not else "",
                 ", ".join(f"{g['name']} ({g['prediction']})" for g in report))
        if basis == BY_PREDICTION and d["fallback"] == "skip":
            for guest in report:
                hopeless = self._hopeless(d, guest)
                if hopeless:
                    guest.update(state=SKIPPED, reason=f"not tried: {hopeless}")
                    self._log(d, guest, "skipped: %s", guest["reason"])
        return self._save(d)

    def _estimate(self, d, ctxt, guest):
        """Fill ``guest``'s prediction from its source's estimate; None, or
        why there is none (the drain then orders every guest by memory)."""
        rpc = self.conductor.compute_rpc
        if not rpc.can_estimate():
            return "compute RPC is pinned below 2.1 ([upgrade_levels] compute)"
        try:
            info = self.db.instance_get_with_devices(guest["instance_uuid"])
        except exception.InstanceNotFound:
            guest["prediction"] = "deleted"
            return None
        instance = info["instance"]
        if instance["host"] != d["host"]:
            guest["prediction"] = f"already on {instance['host']}"
            return None
        try:
            estimate = rpc.estimate_live_migration(ctxt, d["host"], guest["instance_uuid"],
                                                   info, timeout=_ESTIMATE_TIMEOUT)
        except messaging.MessagingTimeout:
            return f"{d['host']} did not answer within {_ESTIMATE_TIMEOUT} s"
        except (messaging.RemoteError, exception.GodwitException) as e:
            return f"{d['host']} could not estimate: {exception.message_of(e)}"
        if estimate is None:
            return f"the driver on {d['host']} cannot estimate"
        memory = estimate.get("memory_mb") or instance["memory_mb"]
        bandwidth, dirty = estimate.get("bandwidth_mb_s"), estimate.get("dirty_rate_mb_s")
        # The disks as the driver measures them (what a block migration would
        # stream); the destination, hence shared or block storage, is not
        # known before the scheduler chooses it.
        predicted = prediction.predict(memory, bandwidth, dirty,
                                       self.conf.libvirt.live_migration_downtime,
                                       disk_mb=estimate.get("disk_mb") or 0)
        if predicted is None:
            return f"no bandwidth limit on {d['host']} to predict with"
        rates = f"{memory} MiB at {bandwidth} MiB/s, dirtying {dirty or 0} MiB/s"
        if predicted["converges"]:
            guest.update(predicted_s=predicted["duration_s"], converges=True,
                         prediction=f"about {predicted['duration_s']:g} s ({rates})")
        else:
            guest.update(predicted_s=None, converges=False,
                         prediction=f"never converges ({rates})")
        return None

    @staticmethod
    def _hopeless(d, guest):
        """Why the prediction says this guest's live migration cannot succeed
        within the drain's rules, or None."""
        if guest.get("converges") is False:
            return ("its live migration is predicted never to converge "
                    + guest["prediction"].removeprefix("never converges "))
        if guest.get("predicted_s") and guest["predicted_s"] > d["guest_timeout"]:
            return (f"its live migration is predicted to take {guest['predicted_s']:g} s, "
                    f"longer than the drain's per-guest timeout ({d['guest_timeout']} s)")
        return None

    def _adopt(self, d):
        """A running drain empties its host: a guest that arrived after the drain
        began (put there with a forced host, or moved there; the host is
        disabled, so not by the scheduler) is added to the report, last, and
        moved like the others (not estimated: the order was decided). Its entry
        says so (``arrived``)."""
        known = {g["instance_uuid"] for g in d["report"]}
        # One still being built is added once built (its live migration would
        # be refused until then).
        arrived = [i for i in self.db.drain_host_guests(d["host"])
                   if i["uuid"] not in known and i["vm_state"] != states.BUILDING]
        if not arrived:
            return d
        for entry in drains.report_for(arrived):
            entry.update(arrived=True, ordered_by=BY_MEMORY, predicted_s=None,
                         prediction="not estimated: arrived after the drain began")
            d["report"].append(entry)
            self._log(d, entry, "arrived on the host after the drain began: added to it")
        return self._save(d)

    # --- 1. the moves under way ---------------------------------------------------------------
    def _follow_moves(self, d):
        now = utcnow()
        for guest in d["report"]:
            if guest["state"] not in UNDER_WAY:
                continue
            m = self._migration_of(d, guest, now)
            if m is None:
                continue
            before = dict(guest)
            if guest["state"] == MOVING:
                self._follow_live(d, guest, m, now)
            else:
                self._follow_cold(d, guest, m, now)
            if guest != before:
                d = self._save(d)
        return d

    def _migration_of(self, d, guest, now):
        """The move a guest's entry names; for an entry whose conductor died
        before it wrote the id, the move found by instance and time."""
        if guest["migration_id"] is not None:
            return self.db.migration_get(guest["migration_id"])
        kind = states.LIVE_MIGRATION if guest["state"] == MOVING else states.COLD_MIGRATION
        found = self._moves_since(guest, kind)
        if found:   # newest first: the oldest since it was asked is the drain's
            self._started(d, guest, found[-1])
            self._save(d)
            return found[-1]
        # Asked by a conductor that has since lost the drain (killed, or
        # stalled past its lease): its request died with it unless its move
        # appeared within a short grace; asked by this holder, it may still run.
        wait = _LOST_REQUEST_AFTER if guest.get("asked_epoch") == d["epoch"] \
            else _LOST_AFTER_TAKEOVER
        if _age(guest, now) > wait:
            lost = guest.get("lost_requests", 0) + 1
            guest["lost_requests"] = lost
            if lost > _LOST_REQUEST_TRIES:
                guest.update(state=FAILED, asked_at=None, kind=None,
                             reason=f"{lost} requests to move it left no move; see the "
                                    "conductors' logs")
                self._log(d, guest, "could not be moved: %s", guest["reason"])
            elif guest["state"] == COLD_MOVING:
                self._log(d, guest, "its cold migration was asked for but never recorded: "
                          "asking again")
                self._cold(d, guest, guest.get("reason") or "asked again")
            else:
                self._log(d, guest, "was marked %s but no move of it was recorded: pending "
                          "again", guest["state"])
                guest.update(state=PENDING, asked_at=None, kind=None)
            self._save(d)
        return None

    def _moves_since(self, guest, kind):
        """The guest's moves of ``kind`` recorded since the drain first asked for
        one in this turn (newest first)."""
        asked = guest.get("first_asked_at") or guest.get("asked_at")
        if not asked:
            return []
        since = datetime.datetime.fromisoformat(asked)
        return [m for m in self.db.migration_list({"instance_uuid": guest["instance_uuid"],
                                                   "migration_type": kind})
                if m["created_at"] >= since]

    def _follow_live(self, d, guest, m, now):
        status = m["status"]
        if status == states.COMPLETED:
            guest.update(state=MOVED, destination=m["dest_compute"], reason=None)
            self._log(d, guest, "moved to %s (live migration %s)", m["dest_compute"],
                      m["id"])
            return
        if status in _LIVE_ENDED_BADLY:
            if self._gone(guest):
                guest.update(state=GONE, reason="deleted while the drain ran")
                self._log(d, guest, "was deleted")
                return
            if status == states.ERROR_MIGRATION and m.get("awaiting_hosts"):
                # Unresolved: recovery resumes it when its hosts return, and
                # the guest may yet leave. Wait for that.
                return
            where = self.db.instance_get(guest["instance_uuid"])["host"]
            if where != d["host"]:
                # Ended badly after the switch-over: the guest is not here.
                guest.update(state=MOVED, destination=where,
                             reason=f"live migration {m['id']} ended {status} after the "
                                    f"guest had moved to {where}")
                self._log(d, guest, "is on %s after all", where)
                return
            if self._interrupted(m) and d["status"] == drains.RUNNING and \
                    guest.get("retries", 0) < _RETRIES_AFTER_INTERRUPTION:
                guest.update(state=PENDING, migration_id=None, kind=None, asked_at=None,
                             first_asked_at=None, retries=guest.get("retries", 0) + 1)
                self._log(d, guest, "live migration %s was cut short in its checks by a "
                          "conductor that stopped: asked for again", m["id"])
                return
            reason = guest.get("abort_reason") or (
                f"live migration {m['id']} ended {status}: "
                f"{m.get('error_message') or 'no reason given'}")
            if d["status"] == drains.CANCELLING:
                # A cancelled drain starts no fallback: the guest stays.
                if guest.get("aborted_for") != "cancel":
                    reason += "; no fallback: the drain was cancelled"
                guest.update(state=LEFT, reason=reason, destination=None)
                self._log(d, guest, "stays on the host: %s", reason)
                return
            self._fallback(d, guest, reason)
            return
        if guest.get("abort_asked") or status not in phases.LIVE_UNDER_WAY:
            return
        if d["status"] == drains.CANCELLING and d["on_cancel"] == "abort":
            self._abort(d, guest, m, "cancel", f"the drain was cancelled; its live "
                                               f"migration {m['id']} was aborted")
        elif _age(guest, now) > d["guest_timeout"]:
            self._abort(d, guest, m, "timeout",
                        f"its live migration {m['id']} did not finish within the drain's "
                        f"per-guest timeout ({d['guest_timeout']} s) and was aborted")

    def _interrupted(self, m):
        """Whether recovery ended ``m`` because the conductor that ran its checks
        stopped ('accepted' -interrupted-> 'failed'): not the guest's failure."""
        return m["status"] == states.FAILED and any(
            e["kind"] == "phase" and e["name"] == states.FAILED and
            e["detail"].get("event") == "interrupted" for e in self.db.timeline(m["id"]))

    def _abort(self, d, guest, m, why, reason):
        """Abort as the abort API does: the intent is recorded on the migration
        and its owner woken. A move past its switch-over cannot be aborted any
        more: it is let finish (and asked only once)."""
        guest["abort_asked"] = True
        try:
            self.api.abort_live_migration(self._context(d), guest["instance_uuid"], m["id"],
                                          allow_early=True)
        except exception.GodwitException as e:
            self._log(d, guest, "live migration %s could not be aborted (%s); it is let "
                      "finish", m["id"], exception.message_of(e))
            return
        guest.update(aborted_for=why, abort_reason=reason)
        self._log(d, guest, "live migration %s aborted: %s", m["id"], reason)

    def _follow_cold(self, d, guest, m, now):
        status = m["status"]
        if status == states.FINISHED:
            if self._gone(guest):
                guest.update(state=GONE, reason="deleted while its cold migration waited "
                                                "for its confirm")
                self._log(d, guest, "was deleted")
                return
            # The fallback moves the guest for good: confirm, as an operator
            # would after checking it (the source's copy is removed).
            try:
                self.api.confirm_resize(self._context(d), guest["instance_uuid"])
                self._log(d, guest, "cold migration %s confirmed", m["id"])
            except exception.GodwitException as e:
                failures = guest.get("confirm_failures", 0) + 1
                guest["confirm_failures"] = failures
                self._log(d, guest, "cold migration %s not confirmed yet (%s)", m["id"],
                          exception.message_of(e))
                if failures >= _CONFIRM_TRIES:
                    # Not the drain's to force: it stops waiting, and says so.
                    guest.update(state=FAILED, destination=m["dest_compute"],
                                 reason=f"cold migration {m['id']} to {m['dest_compute']} "
                                        f"finished but could not be confirmed "
                                        f"({exception.message_of(e)}); confirm or revert "
                                        "it yourself")
        elif status == states.CONFIRMED and moves.step_data(m).get("delete_context"):
            # Deleted in VERIFY_RESIZE: the delete confirmed the resize first.
            guest.update(state=GONE, reason="deleted while the drain ran")
        elif status == states.CONFIRMED:
            guest.update(state=MOVED, destination=m["dest_compute"])
            self._log(d, guest, "moved to %s (cold migration %s)", m["dest_compute"],
                      m["id"])
        elif status in _COLD_ENDED_BADLY:
            if self._gone(guest):
                guest.update(state=GONE, reason="deleted while the drain ran")
                return
            guest.update(state=FAILED, destination=None,
                         reason=f"{guest['reason']}; then cold migration {m['id']} ended "
                                f"{status}: {m.get('error_message') or 'no reason'}")
            self._log(d, guest, "could not be moved: %s", guest["reason"])
        elif status not in (states.CONFIRMING, states.REVERTING) and \
                _age(guest, now) > d["guest_timeout"]:
            # A cold migration cannot be aborted: the drain stops waiting for
            # it (its slot is free, the drain can end) and says where it is.
            guest.update(state=FAILED,
                         reason=f"{guest['reason']}; then cold migration {m['id']} did not "
                                f"finish within the drain's per-guest timeout "
                                f"({d['guest_timeout']} s; it was {status}): the drain "
                                f"stopped waiting for it; follow it with 'godwit migration "
                                f"show {m['id']}'")
            self._log(d, guest, "given up: %s", guest["reason"])

    def _gone(self, guest):
        try:
            self.db.instance_get(guest["instance_uuid"])
            return False
        except exception.InstanceNotFound:
            return True

    # --- the fallback -------------------------------------------------------------------------
    def _fallback(self, d, guest, reason):
        guest.update(migration_id=None, kind=None, asked_at=None, aborted_for=None,
                     abort_reason=None, abort_asked=None, destination=None,
                     first_asked_at=None)
        fallback = d["fallback"]
        # The status as it is now: a cancel recorded while this guest's live
        # migration was being asked for (its checks take seconds) starts no
        # fallback either.
        if d["status"] != drains.RUNNING or \
                self.db.drain_get(d["uuid"])["status"] != drains.RUNNING:
            guest.update(state=LEFT, reason=f"{reason}; no fallback: the drain was "
                                            "cancelled")
            self._log(d, guest, "stays on the host: %s", guest["reason"])
        elif fallback == "skip":
            guest.update(state=SKIPPED, reason=reason)
            self._log(d, guest, "skipped: %s", reason)
        elif fallback == "leave":
            guest.update(state=LEFT, reason=reason)
            self._log(d, guest, "left on the host: %s", reason)
        else:
            self._cold(d, guest, reason)

    def _cold(self, d, guest, reason):
        guest.update(state=COLD_MOVING, kind="cold", asked_at=_iso(utcnow()),
                     asked_epoch=d["epoch"],
                     reason=reason)
        self._save(d)
        try:
            m = self.api.migrate(self._context(d), guest["instance_uuid"])
        except exception.MigrationFenced:
            self._log(d, guest, "its cold migration was taken over by another conductor")
            return
        except (exception.GodwitException, messaging.MessagingException) as e:
            guest.update(state=FAILED, asked_at=None, destination=None,
                         reason=f"{reason}; a cold migration was refused too: "
                                f"{exception.message_of(e)}")
            self._log(d, guest, "could not be moved: %s", guest["reason"])
            return
        self._started(d, guest, m)
        self._log(d, guest, "cold migration %s to %s asked for (%s)", m["id"],
                  m["dest_compute"], reason)

    def _started(self, d, guest, m):
        guest.update(migration_id=m["id"], destination=m.get("dest_compute"))
        if m["id"] not in guest["migrations"]:
            guest["migrations"].append(m["id"])
            # The move's timeline says it is the drain's.
            self.db.timeline_append(m["id"], [timeline.entry(
                "intent", "drain", drain=d["uuid"], host=d["host"])])

    # --- 2. the next guests -----------------------------------------------------------------------
    def limit(self, host):
        """How many of the host's guests the drain moves at once: the source's
        max_concurrent_live_migrations, or host_drain_max_concurrent when that
        is 0 (unlimited)."""
        node = self.db.compute_node_get_by_host(host) or {}
        return node.get("max_live_migrations") or self.conf.host_drain_max_concurrent

    def _start_moves(self, d):
        limit = self.limit(d["host"])
        for guest in d["report"]:
            if sum(g["state"] in UNDER_WAY for g in d["report"]) >= limit or \
                    self.stopping.is_set() or d["status"] != drains.RUNNING:
                break   # (each save reads the drain again: a cancel stops the look)
            if guest["state"] != PENDING:
                continue
            try:
                instance = self.db.instance_get(guest["instance_uuid"])
            except exception.InstanceNotFound:
                guest.update(state=GONE, reason="deleted before its turn")
                self._log(d, guest, "was deleted before its turn")
                d = self._save(d)
                continue
            if instance["host"] != d["host"]:
                guest.update(state=MOVED, destination=instance["host"],
                             reason="moved by someone else before its turn")
                self._log(d, guest, "is already on %s", instance["host"])
                d = self._save(d)
                continue
            d = self._live(d, guest)
        return d

    def _live(self, d, guest):
        # Written before asking: a conductor that dies during the request
        # leaves a trace its successor can follow (module docstring).
        guest.update(state=MOVING, kind="live", asked_at=_iso(utcnow()),
                     asked_epoch=d["epoch"])
        guest.setdefault("first_asked_at", guest["asked_at"])
        d = self._save(d)
        try:
            m = self.api.live_migrate(self._context(d), guest["instance_uuid"], None, "auto")
        except exception.MigrationFenced:
            # Not a refusal: the move exists, and another conductor took it over
            # during its checks (this one stalled past its lease). The guest
            # stays 'moving'; a later look adopts the move by instance and time.
            self._log(d, guest, "its live migration was taken over by another conductor "
                      "during its checks")
            return d
        except (exception.GodwitException, messaging.MessagingException) as e:
            earlier = [m for m in self._moves_since(guest, states.LIVE_MIGRATION)
                       if m["id"] not in guest["migrations"]
                       and not phases.is_final(m["status"])]
            if earlier:
                # Refused because an earlier request of the drain's (from a
                # conductor that lost it) made its move after all: follow that.
                self._started(d, guest, earlier[-1])
                self._log(d, guest, "follows live migration %s, asked for earlier",
                          earlier[-1]["id"])
                return self._save(d)
            reason = f"live migration refused: {exception.message_of(e)}"
            self._log(d, guest, "%s", reason)
            self._fallback(d, guest, reason)
            return self._save(d)
        except Exception as e:  # noqa: BLE001 - a guest must not stay 'moving' for ever
            LOG.exception("Drain %s: asking for a live migration of %s failed", d["uuid"],
                          guest["instance_uuid"])
            self._fallback(d, guest, f"live migration could not be asked for: {e}")
            return self._save(d)
        self._started(d, guest, m)
        self._log(d, guest, "live migration %s to %s asked for", m["id"], m["dest_compute"])
        return self._save(d)

    # --- 3. cancel and end -----------------------------------------------------------------------
    def _cancel(self, d):
        """A cancelled drain starts nothing; its pending guests stay."""
        changed = False
        for guest in d["report"]:
            if guest["state"] == PENDING:
                guest.update(state=LEFT, reason="the drain was cancelled before its turn")
                changed = True
        if changed:
            LOG.info("Drain %s of %s: cancelled; %s", d["uuid"], d["host"],
                     "aborting the live migrations under way" if d["on_cancel"] == "abort"
                     else "letting the moves under way finish")
            d = self._save(d)
        return d

    def _end(self, d):
        if any(g["state"] in (PENDING,) + UNDER_WAY for g in d["report"]):
            return d
        status = drains.FINISHED if d["status"] == drains.RUNNING else drains.CANCELLED
        d = self._save(d, status)
        self.held.pop(d["uuid"], None)
        counts = {}
        for g in d["report"]:
            counts[g["state"]] = counts.get(g["state"], 0) + 1
        LOG.info("Drain %s of %s %s: %s", d["uuid"], d["host"], status,
                 ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no guests")
        return d
