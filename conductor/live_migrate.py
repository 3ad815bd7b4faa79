"""Conductor side of live migration: check, choose the destination, hand over.

``LiveMigrationTask.execute`` runs inside the API's RPC call, so every
refusal reaches the user as an error:

1. Database-level checks (instance state, source up, requested destination
   exists/up/enabled/compatible). Nothing has been written yet, so a refusal
   changes nothing. (A requested destination's room is checked by its claim,
   step 2; the dry run checks it here.)
2. Claim the instance: task_state None -> MIGRATING by compare-and-swap (the
   loser of two concurrent requests gets 409), record the instance action
   and the migration row (``accepted``).
3. Host-level checks over RPC: check_can_live_migrate_destination on the
   destination, which asks the source in turn. A requested destination is
   asked while step 2 is written (decision 34; the check changes nothing, so
   a failed claim only drops its answer). Without a requested host, the
   scheduler's candidates are tried in order, each once its room is claimed,
   up to ``migrate_max_retries`` re-tries, each refusal remembered.
4. ``accepted -> queued`` with the destination and what the checks handed
   over (migrate_data) in one write, and on to ``preparing`` in the same
   write when the source has a slot free; then the engine drives the move
   (:mod:`conductor.flows.live`). The migration row is created owned by this
   conductor (lease and epoch 1), so from the moment it exists some conductor
   is responsible for it.

A refusal after step 2 ends the migration in ``error`` (with the reason),
clears task_state and leaves the instance as it was.
"""

import concurrent.futures
import contextlib
import datetime
import json
import time
import typing

import oslo_messaging as messaging
from oslo_log import log as logging

from conductor import checks
from conductor import scheduler as scheduler_mod
from godwit import exception, states
from godwit.db import timeline

LOG = logging.getLogger(__name__)


class OpeningChecks(typing.NamedTuple):
    info: dict            # the instance with its VIFs and BDMs (sent to the hosts' checks)
    source: str
    source_node: dict
    need: dict            # memory_mb, vcpus, disk_gb
    candidates: list      # destinations that passed the database's checks
    refusals: dict        # host -> why the scheduler left it out
    refused_host: Exception = None   # why the requested host was refused, if it was


def opening_checks(conductor, instance_uuid, requested_host, room=True):
    """The checks a live migration (and its dry run) makes before asking any
    host, all read in one transaction; they write nothing. The instance's own
    state and its source's service raise; a requested destination that fails
    its checks is returned in ``refused_host``. Without ``room``, a requested
    destination's room is left to the claim that follows (which checks it
    again anyway, in its own transaction)."""
    db, conf = conductor.db, conductor.conf
    with db.reads():
        # The instance with its VIFs and BDMs: the hosts' checks get them with
        # the request instead of each asking for them again.
        info = db.instance_get_with_devices(instance_uuid)
        instance = info["instance"]
        source = instance["host"]
        checks.check_instance_can_live_migrate(instance)
        # The source's and a requested destination's service and node rows in
        # one statement.
        rows = db.compute_hosts({source, requested_host} - {None})
        source_service, source_node = rows.get(source, (None, None))
        checks.check_service_up(db, conf, source, service=source_service)
        need = {"memory_mb": instance["memory_mb"], "vcpus": instance["vcpus"],
                "disk_gb": instance["root_gb"] + instance["ephemeral_gb"]}
        if requested_host:
            try:
                dest_node = checks.check_destination(
                    db, conf, instance, source_node, requested_host, room=room,
                    rows=rows.get(requested_host, (None, None)))
            except exception.GodwitException as e:
                return OpeningChecks(info, source, source_node, need, [], {}, e)
            return OpeningChecks(info, source, source_node, need, [dest_node["host"]], {})
        candidates, refusals = conductor.scheduler.candidates(
            need, exclude={source},
            check=lambda node: checks.check_hypervisor_compatible(source_node, node))
    return OpeningChecks(info, source, source_node, need, candidates, refusals)


def move_owner(conductor):
    """The columns that make ``conductor`` the owner of a new move (epoch 1)."""
    until = conductor.db.clock() + datetime.timedelta(
        seconds=conductor.conf.migration_lease_time)
    return {"owner": conductor.host, "lease_until": until, "epoch": 1}


@contextlib.contextmanager
def _unless_claimed(early):
    """An early pre-check (LiveMigrationTask._ask_early) is not needed if the
    claim fails: cancelled if it has not started; if it has, its answer (or
    error) is left in its future and dropped with it."""
    try:
        yield
    except BaseException:
        if early is not None:
            early.cancel()
        raise


class LiveMigrationTask:
    def __init__(self, conductor, ctxt, instance_uuid, requested_host, block_migration):
        self.conductor = conductor
        self.db = conductor.db
        self.conf = conductor.conf
        self.ctxt = ctxt
        self.instance_uuid = instance_uuid
        self.requested_host = requested_host
        self.block_migration = block_migration
        self.migration = None
        self.instance_info = None   # what the hosts' checks need, sent along
        self.timeline = []          # the pre-checks, written with the next phase

    def execute(self):
        # 1. Checks that write nothing, all read in one transaction. A requested
        # destination's room is checked by its claim (step 2) only: checked here
        # as well, it was read twice.
        found = opening_checks(self.conductor, self.instance_uuid, self.requested_host,
                               room=False)
        if found.refused_host is not None:
            raise found.refused_host
        if not found.candidates:
            raise exception.NoValidHost(reason=scheduler_mod.explain(found.refusals))
        info, source, candidates, refusals = (found.info, found.source, found.candidates,
                                              found.refusals)
        instance, need = info["instance"], found.need

        # 2. Claim the instance and record the move.
        # (One transaction: the claim is a compare-and-swap, and the action and
        # the migration row are written only if it wins. A requested destination's
        # room is claimed in the same transaction: the migration row naming it is
        # what holds it.)
        self.need = need
        engine = self.conductor.engine
        # A requested destination is asked its pre-check now, while the claim is
        # written (decision 34). The check changes nothing on either host, so
        # if the claim is refused its answer is only dropped.
        early = self._ask_early(source, info) if self.requested_host else None
        # The new row is this conductor's before it is adopted: the sweep leaves it.
        with engine.claiming(self.instance_uuid), _unless_claimed(early):
            engine.faults.check("claim", self.instance_uuid)
            try:
                claimed, action, self.migration = self.db.instance_claim_move(
                    self.ctxt, self.instance_uuid, {"task_state": states.MIGRATING},
                    {"task_state": None, "vm_state": (states.ACTIVE, states.PAUSED)},
                    states.ACTION_LIVE_MIGRATION, {
                        "instance_uuid": self.instance_uuid,
                        "migration_type": states.LIVE_MIGRATION,
                        "source_compute": source, "source_node": instance["node"],
                        "dest_compute": self.requested_host,
                        "dest_node": self.requested_host,
                        "old_instance_type_id": instance["instance_type_id"],
                        "new_instance_type_id": instance["instance_type_id"],
                        "user_id": self.ctxt.user_id, "project_id": self.ctxt.project_id,
                        **move_owner(self.conductor), "step_data": json.dumps(
                            {"context": self.ctxt.to_saved_dict()})},
                    room=(need, self.conf) if self.requested_host else None)
            except exception.HostCapacityExceeded as e:
                raise checks.no_room(e) from None
            engine.adopt(self.migration)
        self.instance_info = dict(info, instance=claimed)
        # The engine leaves the move alone while this request runs its checks
        # (its deadline may pass meanwhile), and drives it once they are done.
        # The hosts' steps are sent what the checks read (the claimed instance).
        engine.keep_info(self.migration, self.instance_info)
        with engine.hold(self.migration["id"]) as handed:
            try:
                with self.conductor.event(self.ctxt, self.instance_uuid,
                                          "conductor_live_migrate_instance"):
                    dest, migrate_data = self._choose_destination(source, candidates,
                                                                  refusals, early)
            except Exception as e:
                self._refused(e)
                self.db.action_finish(action["id"], message="Error")
                raise
            # 4. Queue it with what the checks found, started at once if its
            # source has a slot free, and hand it to the engine.
            data = {"context": self.ctxt.to_saved_dict(), "migrate_data": migrate_data}
            self.migration = self.db.migration_queue(
                self.migration, data=data, timeline=self.timeline,
                values={"dest_compute": dest, "dest_node": dest,
                        "dest_host": migrate_data.get("dest_host_ip"),
                        "block_migration": bool(migrate_data.get("block_migration"))})
            handed["row"] = self.migration
            engine.faults.check("advance.checked", self.instance_uuid)
        return self.migration

    def _ask_early(self, source, info):
        """Ask the requested destination's pre-check from a thread of the engine's
        check pool: a future of (when it was sent, when it was answered, the
        answer, the error), or None if every thread of the pool is taken or this
        conductor stops (it is then asked after the claim, if at all).
        ``info`` is what the opening checks read; the claim that runs meanwhile
        changes only the instance's task_state, which the hosts' checks do not
        look at."""
        rpc = self.conductor.compute_rpc

        def ask():
            sent = time.monotonic()   # not when queued: the step's own time
            try:
                answer = rpc.check_can_live_migrate_destination(
                    self.ctxt, self.requested_host, self.instance_uuid, source,
                    self.block_migration, instance_info=info)
                return sent, time.monotonic(), answer, None
            except Exception as e:  # noqa: BLE001 - handed to the request, as raised
                return sent, time.monotonic(), None, e
        engine = self.conductor.engine
        if not engine.check_slots.acquire(blocking=False):
            return None
        try:
            early = engine.check_pool.submit(ask)
        except RuntimeError:   # the pool is shut down: this conductor stops
            engine.check_slots.release()
            return None
        # Answered, failed or cancelled before it ran: the slot is free again.
        early.add_done_callback(lambda _done: engine.check_slots.release())
        return early

    def _choose_destination(self, source, candidates, refusals, early=None):
        """Ask each candidate in turn; ``refusals`` holds the scheduler's already.
        ``early``: the requested destination's pre-check, already asked."""
        refusals = dict(refusals)
        max_retries = self.conf.migrate_max_retries
        for attempt, dest in enumerate(candidates):
            if self.requested_host is None and max_retries >= 0 and attempt > max_retries:
                refusals["(others)"] = (f"not tried: migrate_max_retries={max_retries} "
                                        "reached")
                break
            if self.requested_host is None:
                # Claim the candidate's room before asking it: the claim is this
                # migration naming it as destination, checked in one transaction.
                try:
                    self.db.claim_move(self.migration, dest, self.need, self.conf)
                except exception.HostCapacityExceeded as e:
                    refusals[dest] = str(e)
                    continue
            asked, answered = time.monotonic(), None
            try:
                if early is not None:
                    asked, answered, migrate_data, error = self._early_answer(early)
                    if error is not None:
                        raise error
                else:
                    migrate_data = self.conductor.compute_rpc.\
                        check_can_live_migrate_destination(
                            self.ctxt, dest, self.instance_uuid, source,
                            self.block_migration, instance_info=self.instance_info)
            except (messaging.MessagingTimeout, messaging.RemoteError,
                    exception.GodwitException) as e:
                self._checked(dest, asked, exception.message_of(e)[:500], answered)
                refusals[dest] = self._check_refusal(dest, e)
                continue
            self._checked(dest, asked, "ok", answered)
            return dest, migrate_data
        raise exception.NoValidHost(reason=scheduler_mod.explain(refusals))

    def _check_refusal(self, dest, error):
        """Why ``dest``'s pre-check refused (to try the next candidate), or the
        error to raise when the user named ``dest``."""
        reason, named = precheck_refusal(dest, error)
        if self.requested_host:
            raise named from None
        return reason

    @staticmethod
    def _early_answer(early):
        """(sent, answered, migrate_data, error) of an early pre-check."""
        try:
            return early.result()
        except concurrent.futures.CancelledError:
            # Still queued when this conductor stopped: nothing was asked.
            now = time.monotonic()
            return now, now, None, exception.PreCheckNoAnswer(
                reason="the conductor stopped before the destination was asked; ask for "
                       "the migration again")

    def _checked(self, dest, asked, outcome, answered=None):
        """The destination's pre-check, for the move's timeline."""
        self.timeline.append(timeline.step_entry(
            "step", "check_can_live_migrate_destination", dest, asked, answered,
            outcome=outcome))

    def _refused(self, error):
        # message_of: a refusal from a host carries its remote traceback in
        # str(); a refusal is not an error of the host, so log only its reason.
        LOG.info("Live migration of %s refused: %s", self.instance_uuid,
                 exception.message_of(error))
        # A host that did not answer refused nothing: the move was given up
        # ('failed'), not refused ('error').
        event = "interrupted" if isinstance(error, exception.PreCheckNoAnswer) else "refused"
        try:
            self.db.migration_advance(
                self.migration, event,
                values={"error_message": exception.message_of(error)[:4000]},
                instance_values={"task_state": None},
                instance_expected={"task_state": states.MIGRATING}, timeline=self.timeline)
        except exception.GodwitException:
            LOG.exception("Could not record the refusal of migration %s",
                          self.migration["id"])
        self.conductor.engine.forget(self.migration)


def precheck_refusal(dest, error):
    """(why ``dest``'s pre-check refused, the error to raise when the user
    named ``dest``) for an error of check_can_live_migrate_destination."""
    if isinstance(error, messaging.MessagingTimeout):
        reason = f"compute service of {dest} did not answer the pre-check in time"
        return reason, exception.PreCheckNoAnswer(reason=reason)
    if isinstance(error, exception.GodwitException):
        reason = exception.message_of(error)
        if error.code >= 500:  # the host failed, rather than refused
            reason = f"pre-check failed: {reason}"
            error = exception.MigrationPreCheckError(reason=f"{dest}: {reason}")
        return reason, error
    # A RemoteError: an error the hosts could not name (not a godwit exception).
    reason = f"pre-check on {dest} failed: {error.exc_type}: {error.value}"
    return reason, exception.MigrationPreCheckError(reason=reason)
