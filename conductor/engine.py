"""The conductor's engine: it owns moves and drives each one phase by phase.

Every move is a durable workflow whose whole state is its migration row
(:mod:`godwit.db.moves`). The engine

* takes a move before driving it: a lease on the database's clock and a
  fencing epoch (a restarted conductor takes its own moves back, raising the
  epoch, since its old process may still be writing);
* drives it with the flow of its type (:mod:`conductor.flows`), one phase
  handler after another, each idempotent and deciding from the row and from
  what the hosts say, until the move waits (a job runs, a user decides, a
  host is away) or ends;
* wakes on messages (a job ended, a user's intent, a host came back), which
  only say "look again": a lost one is made up by the sweep.

The sweep (every ``migration_watchdog_interval``) renews this conductor's
leases, takes over moves whose owner stopped renewing, looks again at its own
moves whose deadline passed or whose intents wait, and resumes moves that
wait for a host that is back. Several conductors may run; each drives only
what it holds.
"""

import concurrent.futures
import contextlib
import json
import os
import threading
import time

from oslo_log import log as logging

from compute import fault_injection
from conductor.flows import base, cold, live
from godwit import context as godwit_context
from godwit import exception, phases, states
from godwit.db import moves
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)


class Engine:
    def __init__(self, conductor):
        self.conductor = conductor
        self.conf = conductor.conf
        self.db = conductor.db
        self.host = conductor.host
        self.pool = concurrent.futures.ThreadPoolExecutor(
            self.conf.conductor_workers, thread_name_prefix="move")
        # A second host step a handler asks at the same time as its own (the two
        # post steps of a live migration): never more than one per worker.
        self.side_pool = concurrent.futures.ThreadPoolExecutor(
            self.conf.conductor_workers, thread_name_prefix="move-side")
        # A requested destination's pre-check, asked while its request writes the
        # claim (decision 34): a pool of its own, so that post steps held up by a
        # slow source never hold up a user's request, nor the other way round.
        self.check_pool = concurrent.futures.ThreadPoolExecutor(
            self.conf.conductor_workers, thread_name_prefix="move-check")
        # A check sent early cannot be recalled once it runs, even when its claim
        # was refused: when every thread of the pool is taken, a request asks its
        # check after the claim instead of queueing behind checks nobody awaits.
        self.check_slots = threading.BoundedSemaphore(self.conf.conductor_workers)
        self.flows = {states.LIVE_MIGRATION: live.LiveFlow(self),
                      states.COLD_MIGRATION: cold.ColdFlow(self),
                      states.RESIZE: cold.ColdFlow(self)}
        self.held = {}          # migration id -> the epoch this conductor holds
        self.outcomes = {}      # migration id -> a reported job outcome not yet acted on
        self._host_up = {}      # host -> (when looked, up)
        self.job_marks = {}     # migration id -> bytes its job had moved at the last overrun
        self._cleaning = set()  # (migration id, host) deferred clean-ups under way
        self.parked = {}        # migration id -> the phase it was left waiting in
        self.waiting_for = {}   # migration id -> a host it could not ask last time
        self.steps = {}         # migration id -> host steps for its timeline, not yet written
        # migration id -> (epoch, the instance, VIFs and BDMs a live migration's host
        # steps are sent): read once while this conductor holds the move instead of
        # once per step (the instance is claimed for the move, so only the move
        # itself changes it). Kept only while held (dropped with ``held``).
        self._infos = {}
        self._claiming = set()  # instances a request of this process is claiming
        self._lock = threading.Lock()
        self._scheduled = set()
        self._again = set()
        self._busy = 0
        self._idle = threading.Condition(self._lock)
        self.stopping = threading.Event()
        # Faults the chaos tests arm in a conductor (conductor_faults).
        self.faults = fault_injection.for_host(
            f"conductor {self.host}",
            os.path.join(self.conf.state_path, "conductor-faults", self.host),
            self.conf.conductor_faults)

    # --- holding ------------------------------------------------------------------
    def adopt(self, migration):
        """The request path created ``migration`` with this conductor as owner."""
        with self._lock:
            self.held[migration["id"]] = migration["epoch"]

    def idle(self):
        """No move handler runs (nor a request's checks): a moment for work that
        can wait (step events)."""
        return self._busy == 0

    def holds(self, migration):
        return (migration.get("owner") == self.host
                and self.held.get(migration["id"]) == migration["epoch"])

    def _own(self, migration):
        """The row to drive, taking it first if this conductor does not hold it."""
        if self.holds(migration):
            return migration
        with self._lock:
            if migration["status"] == states.ACCEPTED and \
                    migration.get("owner") == self.host and \
                    migration["instance_uuid"] in self._claiming:
                return None     # its request, in this process, is about to adopt it
        force = migration["status"] == states.ERROR_MIGRATION
        taken = self.db.migration_take(migration["id"], self.host,
                                       self.conf.migration_lease_time, force=force)
        if taken is None:
            return None
        LOG.info("Migration %s (%s): taken over at epoch %s", taken["id"], taken["status"],
                 taken["epoch"])
        with self._lock:
            self.held[taken["id"]] = taken["epoch"]
        return taken

    # --- the timeline's host steps (written with the move's next write) ------------
    def add_step(self, migration_id, entry):
        with self._lock:
            self.steps.setdefault(migration_id, []).append(entry)

    def take_steps(self, migration_id):
        with self._lock:
            return self.steps.pop(migration_id, [])

    def put_back_steps(self, migration_id, entries):
        if entries:
            with self._lock:
                self.steps[migration_id] = entries + self.steps.get(migration_id, [])

    def _release(self, migration_id):
        """No longer held by this process (call with the lock)."""
        self.held.pop(migration_id, None)
        self._infos.pop(migration_id, None)

    # --- what a live migration's host steps are sent -------------------------------
    def info_of(self, migration):
        """The kept instance/VIFs/BDMs of a held move at its epoch, or None."""
        with self._lock:
            kept = self._infos.get(migration["id"])
        return kept[1] if kept is not None and kept[0] == migration["epoch"] else None

    def keep_info(self, migration, info):
        """Keep ``info`` for the move while this process holds it at its epoch
        (not for a move it does not hold or that ended: a deferred clean-up)."""
        with self._lock:
            if self.held.get(migration["id"]) == migration["epoch"] and \
                    not phases.is_final(migration["status"]):
                self._infos[migration["id"]] = (migration["epoch"], info)

    @contextlib.contextmanager
    def claiming(self, instance_uuid):
        """A request of this process claims ``instance_uuid`` for a move: its new
        migration row is this conductor's before :meth:`adopt` says so, and the
        sweep must not take it back meanwhile (as a move of a dead process)."""
        with self._lock:
            self._claiming.add(instance_uuid)
        try:
            yield
        finally:
            with self._lock:
                self._claiming.discard(instance_uuid)

    def wait_for_claims(self, timeout):
        """Wait up to ``timeout`` s until no request of this process is claiming."""
        deadline = time.monotonic() + timeout
        while self._claiming and time.monotonic() < deadline:
            time.sleep(0.05)

    def forget(self, migration):
        with self._lock:
            self.steps.pop(migration["id"], None)
            self._release(migration["id"])
            self.outcomes.pop(migration["id"], None)
            self.job_marks.pop(migration["id"], None)
            self.parked.pop(migration["id"], None)
            self.waiting_for.pop(migration["id"], None)

    def let_go(self, migration):
        with self._lock:
            self._release(migration["id"])
            self.outcomes.pop(migration["id"], None)
        self.db.migration_release(migration, self.host)

    @contextlib.contextmanager
    def hold(self, migration_id):
        """The request path works on ``migration_id`` (its checks): kicks meanwhile
        only note that it wants a look, and it is driven once the request is done.

        Yields a dict; the request puts the row it last wrote under "row" to be
        driven from without a read, unless something asked for a look meanwhile
        (a user's intent: then the row is read afresh)."""
        handed = {}
        with self._lock:
            self._scheduled.add(migration_id)
            self._busy += 1
        try:
            yield handed
        finally:
            with self._lock:
                woken = migration_id in self._again
            self._done(migration_id)
            self.kick(migration_id, None if woken else handed.get("row"))

    # --- driving ------------------------------------------------------------------
    def kick(self, migration_id, row=None):
        """Look at the move again, soon, in a worker (at most one per move).

        ``row``: the move's row as the caller just read or wrote it, driven from
        without reading it again when it starts a worker (not when a worker
        already runs: that one reads the row afresh for its next look)."""
        with self._lock:
            if self.stopping.is_set():
                return
            if migration_id in self._scheduled:
                self._again.add(migration_id)
                return
            self._scheduled.add(migration_id)
            self._busy += 1
        try:
            self.pool.submit(self._run, migration_id, row)
        except RuntimeError:   # the pool is shutting down
            self._done(migration_id)

    def _done(self, migration_id):
        with self._lock:
            self._scheduled.discard(migration_id)
            self._again.discard(migration_id)
            self._busy -= 1
            self._idle.notify_all()

    def _run(self, migration_id, row=None):
        try:
            while True:
                try:
                    self._drive(migration_id, row)
                except exception.MigrationFenced as e:
                    LOG.warning("%s", e)
                    with self._lock:
                        self._release(migration_id)
                except base.Stopping:
                    return
                except Exception:
                    LOG.exception("Driving migration %s failed; the sweep will look again",
                                  migration_id)
                row = None
                with self._lock:
                    if migration_id in self._again and not self.stopping.is_set():
                        self._again.discard(migration_id)
                        continue
                    return
        finally:
            self._done(migration_id)

    def _drive(self, migration_id, row=None):
        # A handed row is as fresh as a read when this conductor holds the move:
        # every write to a held move is its own, or a user's intent, which wakes
        # it again (and a stale row only loses its compare-and-swap).
        m = row if row is not None and self.holds(row) else self.db.migration_get(migration_id)
        if phases.is_final(m["status"]):
            if m["status"] == states.ERROR_MIGRATION and moves.awaiting(m):
                m = self._resume(m)
                if m is None:
                    return
            else:
                if m.get("owner") == self.host:
                    self.let_go(m)
                else:
                    self.forget(m)    # ended under another conductor: nothing of it here
                return
        m = self._own(m)
        if m is None:
            return
        self.waiting_for.pop(m["id"], None)
        self.flows[m["migration_type"]].drive(m)

    def _resume(self, m):
        """An unresolved error whose hosts are all up again: resume its phase."""
        hosts = moves.awaiting(m)
        if not all(self.host_up(h) for h in hosts):
            return None
        m = self._own(m)
        if m is None:
            return None
        phase = moves.step_data(m).get("unresolved_phase")
        LOG.info("Migration %s: %s back; resuming it in '%s'", m["id"], ", ".join(hosts),
                 phase)
        return self.db.migration_advance(m, phases.RESUME + phase,
                                         values={"awaiting_hosts": None})

    # --- hosts --------------------------------------------------------------------
    def host_up(self, host):
        """Whether ``host``'s agent counts as up, looked up at most every tenth of
        service_down_time (and at least every 5 s): an agent is only counted down
        after service_down_time anyway, so this adds at most a tenth to how long
        a move takes to notice, and saves a read before most host steps."""
        now = time.monotonic()
        cached = self._host_up.get(host)
        ttl = min(5.0, self.conf.service_down_time / 10.0)
        if cached is not None and now - cached[0] < ttl:
            return cached[1]
        svc = self.db.service_get_by_host(host)
        up = svc is not None and self.db.is_host_up(svc, self.conf.service_down_time)
        self._host_up[host] = (now, up)
        return up

    def host_returned(self, host):
        """A compute agent (re)started: look at every move it is part of."""
        self._host_up.pop(host, None)
        for m in self.db.migrations_of_host(host):
            self.look(m)
        for m in self.db.migrations_awaiting(host):
            self.kick(m["id"])
        for m in self.db.migrations_with_cleanup(host):
            self._schedule_cleanup(m["id"], host)

    def look(self, m):
        """Have ``m`` looked at by whoever drives it: this conductor, or (a wake-up
        message) the one that holds its lease."""
        owner = m.get("owner")
        if owner and owner != self.host and m.get("lease_until") and \
                m["lease_until"] > self.db.clock():
            try:
                self.conductor.self_rpc.wake(godwit_context.get_admin_context(), m["id"],
                                             owner=owner)
            except Exception:  # noqa: BLE001 - its owner's sweep looks anyway
                LOG.warning("Could not wake %s for migration %s", owner, m["id"],
                            exc_info=True)
            return
        self.kick(m["id"])

    def _schedule_cleanup(self, migration_id, host):
        with self._lock:
            if (migration_id, host) in self._cleaning or self.stopping.is_set():
                return
            self._cleaning.add((migration_id, host))
        self.pool.submit(self._cleanup, migration_id, host)

    def _cleanup(self, migration_id, host):
        try:
            m = self.db.migration_get(migration_id)
            self.flows[m["migration_type"]].deferred_cleanup(m, host)
        except Exception:
            LOG.exception("Deferred clean-up of migration %s on %s failed; it is tried again "
                          "at the next sweep", migration_id, host)
        finally:
            with self._lock:
                self._cleaning.discard((migration_id, host))

    # --- the sweep ------------------------------------------------------------------
    def sweep(self):
        if self.stopping.is_set():
            return
        ttl = self.conf.migration_lease_time
        still = set(self.db.migration_renew_leases(self.host, ttl))
        with self._lock:
            for mid in list(self.held):
                if mid not in still:
                    self._release(mid)
        for m in self.db.migrations_to_take(self.host):
            self.kick(m["id"])
        now = utcnow()
        for m in self.db.migrations_owned(self.host):
            if self._wants_a_look(m, now):
                self.kick(m["id"])
        # Moves that waited for a host that counts as up again (its heartbeats came
        # back: an agent that was only unreachable does not report itself anew).
        for mid, host in list(self.waiting_for.items()):
            if self.host_up(host):
                self.kick(mid)
        for m in self.db.migrations_awaiting():
            if all(self.host_up(h) for h in moves.awaiting(m)):
                self.kick(m["id"])
        # Clean-up left for hosts that were away: a host back (or one only
        # thought away) gets it without having to restart.
        for m in self.db.migrations_with_cleanup():
            for host in json.loads(m["cleanup_hosts"] or "[]"):
                if self.host_up(host):
                    self._schedule_cleanup(m["id"], host)

    def _wants_a_look(self, m, now):
        if m["id"] not in self.held:
            return True     # ours by the row, not by this process: take it back
        if self.parked.get(m["id"]) != m["status"]:
            return True     # moved by someone else (the API's confirm or revert)
        if m["deadline_at"] is not None and now >= m["deadline_at"]:
            return True
        if m["abort_requested_at"] or m["force_complete_requested_at"]:
            return True
        if m["status"] == states.RUNNING_MIGRATION and moves.tuning_pending(m):
            return True     # the user's set-speed / set-downtime
        if m["status"] == states.FINISHED and self.conf.resize_confirm_window > 0:
            return True
        if m["status"] == states.QUEUED:
            return True
        return False

    # --- stopping -------------------------------------------------------------------
    def stop(self, grace):
        """Take no new work, let running handlers finish for up to ``grace``
        seconds, then hand every move over (release the leases)."""
        self.stopping.set()
        deadline = time.monotonic() + grace
        with self._lock:
            while self._busy and time.monotonic() < deadline:
                self._idle.wait(max(0.0, min(0.5, deadline - time.monotonic())))
            left = self._busy
        released = self.db.migrations_release_all(self.host)
        LOG.info("Conductor %s stops: %d moves handed over%s", self.host, released,
                 f", {left} still in a step (their owner's epoch fences them)" if left
                 else "")
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.side_pool.shutdown(wait=False, cancel_futures=True)
        self.check_pool.shutdown(wait=False, cancel_futures=True)
        return left
