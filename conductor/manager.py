"""The conductor's RPC endpoint: the only service that writes the database.

Compute agents call the first group of methods to read and write state
(they hold no database credentials); the API calls the second group to
start work and to wake the owner of a move when a user recorded an intent.
Moves are driven by the engine (:mod:`conductor.engine`) through the flows
in :mod:`conductor.flows`; the requests that start them are in
:mod:`conductor.live_migrate` and :mod:`conductor.migrate`, power actions in
:mod:`conductor.power`. This class holds the shared pieces and dispatches.
"""

import concurrent.futures
import datetime
import threading
import time

import oslo_messaging as messaging
from oslo_log import log as logging

import godwit
from compute import rpcapi as compute_rpcapi
from conductor import checks, drain, dry_run, engine, live_migrate, migrate, power, reconciler
from conductor import rpcapi as conductor_rpcapi
from conductor import scheduler as scheduler_mod
from godwit import context as godwit_context
from godwit import events, exception, notifications, phases, rpc, states, upgrade
from godwit.db import api as db_api
from godwit.db import claims, timeline
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)

#: Events that can reach a conductor before the action they belong to: the
#: requested destination's pre-check (which asks the source's) is sent while
#: the move is claimed (decision 34), so its events may come before the claim
#: commits; a refusal's at once.
EVENTS_BEFORE_THEIR_ACTION = frozenset({"compute_check_can_live_migrate_destination",
                                        "compute_check_can_live_migrate_source"})
#: How long such an event is tried again: as long as a claim keeps trying
#: under contention (godwit.db.claims.CLAIM_PATIENCE), and a little more.
EVENT_RETRY_SECONDS = claims.CLAIM_PATIENCE + 5.0

_DATETIME_FIELDS = ("launched_at", "terminated_at", "start_time", "finish_time")


def _datetimes(values):
    """RPC carries datetimes as ISO strings; the database wants datetimes."""
    out = dict(values)
    for key in _DATETIME_FIELDS:
        if isinstance(out.get(key), str):
            out[key] = datetime.datetime.fromisoformat(out[key]).replace(tzinfo=None)
    return out


class ConductorManager:
    target = messaging.Target(version=conductor_rpcapi.VERSION)
    #: What this conductor records in the services table as the conductor RPC
    #: version it serves (for [upgrade_levels] conductor = auto): its target's.
    #: (None: as conductors did before versions were recorded; the test kit's
    #: older conductors.)
    rpc_version = target.version

    def __init__(self, conf, transport, db=None, host=None):
        self.conf = conf
        self.host = host or conf.host
        self.db = db or db_api.get_database(conf.database.connection, conf.database.echo)
        self.db.deadlines = conf
        # [upgrade_levels]: send only what the oldest service still running knows
        # (with auto, as the services table says; godwit.upgrade).
        self.compute_cap = upgrade.cap(conf, compute_rpcapi.INTERFACE, self.db)
        self.conductor_cap = upgrade.cap(conf, conductor_rpcapi.INTERFACE, self.db)
        self.compute_rpc = compute_rpcapi.ComputeAgentClient(
            transport, long_timeout=conf.long_rpc_timeout, step_timeout=conf.host_step_timeout,
            version_cap=self.compute_cap)
        self.self_rpc = conductor_rpcapi.ConductorClient(transport, version_cap=self.conductor_cap)
        # The broker check's ping runs in a thread of its own (see broker_check).
        self._ping_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="broker-check")
        self._ping = None              # (started, future) of the ping in flight
        self._sampled = {}             # migration id -> when progress was last sampled
        self._sampled_lock = threading.Lock()
        self.scheduler = scheduler_mod.Scheduler(self.db, conf)
        self.notifier = notifications.Notifier(conf, getattr(transport, "godwit_url", None),
                                               f"conductor.{self.host}")
        self.notifier.follow_moves(self.db)
        self.engine = engine.Engine(self)
        self.drains = drain.Drainer(self, transport)
        # Step events, this conductor's own and the agents', are written from a
        # thread of their own when no move handler runs (godwit.events.Deferred).
        self._events = events.Deferred(lambda ctxt, **kw: self._record_event(ctxt, **kw),
                                       name="events", idle=self.engine.idle)
        # Pre-check events whose action was not there yet, tried again every
        # second (see _record_event), in a queue of their own so they hold up
        # no other.
        self._events_again = events.Deferred(
            lambda ctxt, **kw: self._record_event(ctxt, **kw),
            name="events-again", min_delay=1.0, max_delay=1.0)
        # Requests of this process that ended without writing an action (a dry
        # run, a move refused before its claim): their events stop being retried.
        self._no_action = {}
        self._no_action_lock = threading.Lock()

    # --- service lifecycle ------------------------------------------------
    def init_host(self):
        self.db.service_register(self.host, states.SERVICE_CONDUCTOR, "conductor",
                                 godwit.__version__, rpc_version=self.rpc_version)
        for cap in (self.compute_cap, self.conductor_cap):
            cap.refresh()
            LOG.info("[upgrade_levels]: sending %s", cap.describe())
        # While no conductor ran, no heartbeat could be recorded: the agents'
        # silence proves nothing until this one has seen the broker work for
        # service_down_time (decision 18).
        self.db.broker_checked(self.host, ok=False)
        for table in (phases.LIVE, phases.COLD):
            for phase in table.phases.values():
                if phase.deadline and getattr(self.conf, phase.deadline) < \
                        2 * self.conf.host_step_timeout:
                    LOG.warning("%s (%d s) is under twice host_step_timeout (%d s): a host "
                                "step of '%s' may be given up before it is asked again",
                                phase.deadline, getattr(self.conf, phase.deadline),
                                self.conf.host_step_timeout, phase.status)

    def after_start(self):
        # Moves this conductor held before a restart, and moves nobody holds.
        self.engine.sweep()

    def heartbeat(self):
        self.db.service_heartbeat(self.host, states.SERVICE_CONDUCTOR)

    def broker_check(self):
        """A message to itself through the broker: whether agents' silence can be
        trusted (decision 18). Half of service_down_time to answer: a busy
        conductor is not a broken broker.

        The ping runs in a thread of its own and this tick only waits for it up
        to that limit: while the broker is away a send can block in
        oslo.messaging's reconnection (a pooled connection is reset on its
        way back to the pool) well past any RPC timeout, and the outage must
        still be recorded, tick after tick. Otherwise the last look goes stale
        and the heartbeats' age alone decides, which shows healthy hosts down
        after a broker restart.
        """
        limit = max(2, self.conf.service_down_time // 2)
        now = time.monotonic()
        if self._ping is None or self._ping[1].done():
            self._ping = (now, self._ping_pool.submit(self._ping_self, limit))
        started, future = self._ping
        # At most a second per tick, so each tick records something.
        wait = min(1.0, max(0.0, started + limit - now))
        try:
            ok = future.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            if time.monotonic() - started < limit:
                ok = None      # still under way: a current look, no verdict yet
            else:
                LOG.warning("A message to myself through the broker has not come back in "
                            "%d s: agents' missing heartbeats are not held against them "
                            "meanwhile", limit)
                ok = False
        self.db.broker_checked(self.host, ok)

    def _ping_self(self, timeout):
        try:
            # retry=0: with the broker away the call fails at once instead of
            # waiting for a connection, so the outage is recorded as it happens.
            self.self_rpc.client.prepare(server=self.host, retry=0, timeout=timeout).call(
                godwit_context.get_admin_context(), "ping")
            return True
        except Exception as e:  # noqa: BLE001 - a probe: any failure means "not through"
            # (kombu's OperationalError also escapes oslo.messaging when the
            # broker refuses the connection)
            LOG.warning("A message to myself through the broker did not come back (%s): "
                        "agents' missing heartbeats are not held against them meanwhile", e)
            return False

    def ping(self, ctxt):
        return {"host": self.host}

    def sweep(self):
        self.engine.sweep()
        power.sweep(self, godwit_context.get_admin_context())

    def drain_sweep(self):
        """Every host_drain_interval: the host drains (conductor.drain)."""
        self.drains.sweep()

    def stop(self, grace):
        """Hand every move and drain over; returns how many handlers were still
        running."""
        self._ping_pool.shutdown(wait=False)
        self.drains.stop()
        running = self.engine.stop(grace)
        self._events.flush()
        # The RPC server is stopped but its handlers may still run: a request in
        # its claim writes its action in a moment, and an event waiting for it
        # is tried once more at the flush.
        self.engine.wait_for_claims(min(grace, 5.0))
        self._events_again.flush()
        return running

    def event(self, ctxt, instance_uuid, name):
        return events.step_event(lambda **kw: self._events(ctxt=ctxt, **kw), instance_uuid,
                                 name, self.host)

    def notify(self, ctxt, event_type, payload):
        self.notifier.info(ctxt, event_type, payload)

    # --- for compute agents ---------------------------------------------------
    def service_report(self, ctxt, host, binary, topic, version, node_info, inventory=None,
                       rpc_version=None):
        """A compute agent starts. It is registered, with the compute RPC version it
        serves (2.2; None from an agent of an older release: counted as the
        oldest); what it holds (``inventory``) is reconciled, and the orphans it
        should remove before it takes work are returned; the moves it is part of
        are looked at again. The answer also carries the caps ``auto`` gives
        now, for the agent's own ``[upgrade_levels]``."""
        svc = self.db.service_register(host, binary, topic, version, rpc_version=rpc_version)
        # An agent of another version may have come (or gone): auto follows at once.
        self.compute_cap.refresh()
        node = self.db.compute_node_upsert(host, dict(node_info, hypervisor_hostname=host))
        LOG.info("Compute host %s registered (%s %s)", host, node["hypervisor_type"],
                 node["hypervisor_version"])
        orphans = []
        if inventory is not None:
            orphans = reconciler.classify(self.db, host, inventory)
            reconciler.settle_ledger(self.db, host, inventory)
            for o in orphans:
                LOG.warning("Orphan on %s, found as it starts: %s %s of %s (%s)%s", host,
                            o["kind"], o["name"], o["instance_uuid"], o["why"],
                            "" if o["removable"] else "; left for an operator")
        # It may have restarted in the middle of moves: look at each of them.
        self.engine.host_returned(host)
        return {"service": svc, "node": node,
                "orphans": [o for o in orphans if o["removable"]],
                "rpc_versions": self.auto_versions()}

    def auto_versions(self):
        """What ``[upgrade_levels] ... = auto`` gives now, for each interface, from
        the services table (whatever this conductor's own options say)."""
        services = self.db.service_list()
        down_time = self.conf.service_down_time
        return {itf.name: upgrade.from_services(itf, services,
                                                lambda s: self.db.is_host_up(s, down_time))
                for itf in (compute_rpcapi.INTERFACE, conductor_rpcapi.INTERFACE)}

    def reconcile(self):
        """The periodic reconciliation, in one conductor: the first by name of those up."""
        up = sorted(s["host"] for s in self.db.service_list(binary=states.SERVICE_CONDUCTOR)
                    if self.db.is_host_up(s, self.conf.service_down_time))
        if up and up[0] != self.host:
            return
        reconciler.reconcile_all(self, self.conf.reconcile_fix)

    def service_heartbeat(self, ctxt, host, binary):
        if not self.db.service_heartbeat(host, binary):
            raise exception.ServiceNotFound(service_id=f"{binary} on {host}")
        return True

    @rpc.refusals
    def instance_get(self, ctxt, instance_uuid):
        return self.db.instance_get_with_devices(instance_uuid)

    @rpc.refusals
    def instance_update(self, ctxt, instance_uuid, values, expected=None):
        return self.db.instance_update(instance_uuid, _datetimes(values), expected)

    def instance_destroyed(self, ctxt, instance_uuid, host):
        now = utcnow()
        return self.db.instance_update(
            instance_uuid, {"vm_state": states.DELETED, "task_state": None,
                            "power_state": states.NOSTATE, "terminated_at": now,
                            "deleted_at": now},
            expected={"task_state": states.DELETING})

    def migration_progress(self, ctxt, migration_id, values, tuning=None):
        """Progress of a running job (a percentage that only rises: the
        task_state guard makes that hold across writers) and its tuning."""
        values = dict(values)
        progress = values.pop("progress", None)
        # Not columns: the rates and downtime now go to the timeline's samples.
        rates = {k: values.pop(k) for k in ("dirty_rate", "transfer_rate", "max_downtime_ms")
                 if k in values}
        deadline = utcnow() + datetime.timedelta(
            seconds=self.conf.live_migration_progress_timeout)
        try:
            self.db.migration_update(migration_id, values, states.RUNNING_MIGRATION,
                                     instance_progress=progress, deadline_if_moved=deadline)
            if tuning:
                self.db.migration_merge_data(
                    migration_id, states.RUNNING_MIGRATION, {"tuning": tuning},
                    timeline=[timeline.entry("tuning", "monitor", detail=tuning)])
            self._sample_progress(migration_id, dict(values, **rates), progress)
        except exception.ConcurrentUpdate:
            pass   # the job ended meanwhile
        return True

    def _sample_progress(self, migration_id, values, progress):
        """A progress sample for the move's timeline, at most one per
        timeline.PROGRESS_EVERY seconds (the first report included)."""
        now = time.monotonic()
        with self._sampled_lock:
            last = self._sampled.get(migration_id)
            if last is not None and now - last < timeline.PROGRESS_EVERY:
                return
            self._sampled[migration_id] = now
            if len(self._sampled) > 10000:   # moves that ended long ago
                self._sampled.pop(next(iter(self._sampled)))
        detail = {k: v for k, v in values.items() if k.startswith(("memory_", "disk_")) or
                  k in ("dirty_rate", "transfer_rate", "max_downtime_ms")}
        self.db.timeline_append(migration_id, [timeline.entry(
            "progress", "sample", progress=progress, **detail)])

    @rpc.refusals
    def migration_job_ended(self, ctxt, migration_id, epoch, outcome):
        """The source's job ended. Its owner acts on it; another conductor
        passes the news on (or takes the move if nobody holds it)."""
        if self.engine.held.get(migration_id) == epoch:
            # Held here at the job's epoch (the usual case): the worker reads the
            # row itself. Had another conductor just taken the move, its own
            # look asks the source, whose journal keeps the job's outcome.
            self.engine.outcomes[migration_id] = outcome
            self.engine.kick(migration_id)
            return True
        m = self.db.migration_get(migration_id)
        if m["status"] != states.RUNNING_MIGRATION:
            return False
        if self.engine.holds(m):
            self.engine.outcomes[m["id"]] = outcome
            # Not handed the row: a worker may have moved the move on since it was read.
            self.engine.kick(m["id"])
        elif m["owner"] and m["owner"] != self.host:
            self.self_rpc.wake(ctxt, m["id"], owner=m["owner"])
        else:
            self.engine.kick(m["id"])
        return True

    def action_event(self, ctxt, instance_uuid, event, host, start_time, finish_time,
                     result, traceback=None):
        """An agent's step event (a cast): written by the events thread."""
        self._events(ctxt=ctxt, instance_uuid=instance_uuid, event=event, host=host,
                     start_time=start_time, finish_time=finish_time, result=result,
                     traceback=traceback)

    def _record_event(self, ctxt, instance_uuid, event, host, start_time, finish_time,
                      result, traceback=None, retry_until=None):
        if ctxt.request_id in self._no_action:
            LOG.debug("Request %s ended without an action; event %s not recorded",
                      ctxt.request_id, event)
            return
        # The action id is remembered per request: a migration records about
        # eight events under the same one.
        action_id = self.db.action_id_for_request(instance_uuid, ctxt.request_id)
        if action_id is None and event in EVENTS_BEFORE_THEIR_ACTION:
            # A requested destination's pre-check runs while its move's claim
            # (which writes the action) commits (decision 34), in this conductor
            # or another: a quick refusal's event, written at once, may come
            # first. Tried again every second for as long as a claim may wait,
            # unless its request ended here without an action; on a clean stop
            # once more, at once, after the claims in flight here are written.
            now = time.monotonic()
            retry_until = now + EVENT_RETRY_SECONDS if retry_until is None else retry_until
            if now < retry_until and not self._events_again.closed:
                self._events_again.later(ctxt=ctxt, instance_uuid=instance_uuid, event=event,
                                         host=host, start_time=start_time,
                                         finish_time=finish_time, result=result,
                                         traceback=traceback, retry_until=retry_until)
                return
        if action_id is None:
            LOG.debug("No action for request %s on %s; event %s not recorded",
                      ctxt.request_id, instance_uuid, event)
            return
        times = _datetimes({"start_time": start_time, "finish_time": finish_time})
        self.db.event_record(action_id, event, host, times["start_time"],
                             times["finish_time"], result, traceback)

    # --- for the API -------------------------------------------------------------
    def build_instance(self, ctxt, instance_uuid, requested_host=None):
        instance = self.db.instance_get(instance_uuid)
        need = {"memory_mb": instance["memory_mb"], "vcpus": instance["vcpus"],
                "disk_gb": instance["root_gb"] + instance["ephemeral_gb"]}
        try:
            with self.event(ctxt, instance_uuid, "conductor_schedule_and_build_instance"):
                if requested_host:
                    checks.check_service_up(self.db, self.conf, requested_host)
                    hosts, refusals = [requested_host], {}
                else:
                    hosts, refusals = self.scheduler.candidates(need)
                # The room is checked again and claimed in one transaction: of
                # two requests for the last room on a host, one gets it.
                host = None
                for candidate in hosts:
                    try:
                        self.db.claim_build(instance_uuid, candidate, need, self.conf,
                                            values={"task_state": states.SPAWNING},
                                            expected={"task_state": states.SCHEDULING})
                        host = candidate
                        break
                    except exception.HostCapacityExceeded as e:
                        refusals[candidate] = str(e)
                if host is None:
                    raise exception.NoValidHost(reason=scheduler_mod.explain(refusals))
        except exception.GodwitException as e:
            self.db.instance_update(instance_uuid, {"vm_state": states.ERROR,
                                                    "task_state": None,
                                                    "fault_message": str(e)})
            return
        self.compute_rpc.build_and_run_instance(ctxt, host, instance_uuid)

    def delete_instance(self, ctxt, instance_uuid):
        instance = self.db.instance_get(instance_uuid)
        svc = self.db.service_get_by_host(instance["host"]) if instance["host"] else None
        if svc is not None and self.db.is_host_up(svc, self.conf.service_down_time):
            self.compute_rpc.terminate_instance(ctxt, instance["host"], instance_uuid)
            return
        if instance["host"]:
            LOG.warning("Host %s of %s is down: deleting the record only; the host must be "
                        "cleaned when it returns", instance["host"], instance_uuid)
        self.instance_destroyed(ctxt, instance_uuid, instance["host"])

    @rpc.refusals
    def migrate_server(self, ctxt, instance_uuid, flavor_id=None, requested_host=None):
        """Cold migration (no flavor) or resize; see conductor.migrate."""
        return migrate.MigrationTask(self, ctxt, instance_uuid, flavor_id,
                                     requested_host).execute()

    @rpc.refusals
    def live_migrate_instance(self, ctxt, instance_uuid, requested_host=None,
                              block_migration="auto"):
        task = live_migrate.LiveMigrationTask(self, ctxt, instance_uuid, requested_host,
                                              block_migration)
        try:
            return task.execute()
        finally:
            if task.migration is None:   # refused before its claim: no action
                self._ended_without_action(ctxt.request_id)

    @rpc.refusals
    def live_migration_dry_run(self, ctxt, instance_uuid, requested_host=None,
                               block_migration="auto"):
        """2.1: see conductor.dry_run."""
        try:
            return dry_run.run(self, ctxt, instance_uuid, requested_host, block_migration)
        finally:
            self._ended_without_action(ctxt.request_id)

    def _ended_without_action(self, request_id, keep=1024):
        """No event of ``request_id`` will find an action: stop retrying them."""
        with self._no_action_lock:
            self._no_action[request_id] = True
            while len(self._no_action) > keep:
                del self._no_action[next(iter(self._no_action))]

    def wake(self, ctxt, migration_id):
        """A user's intent was recorded on the migration: look at it now."""
        self.engine.kick(migration_id)

    def power_action(self, ctxt, instance_uuid, action, reboot_type=None):
        power.run(self, ctxt, instance_uuid, action, reboot_type)

    def drain_wake(self, ctxt, drain_uuid):
        """A host drain was created or cancelled: look at it now (2.1)."""
        self.drains.wake(drain_uuid)
