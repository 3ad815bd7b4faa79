"""What every flow shares: the phase loop, host steps, advancing, giving up.

A flow has one handler per in-progress phase, named after it
(``preparing``, ``post_migrating``...). A handler looks at the row (and at
the hosts), does at most one phase's work, and returns the row it moved on
to, or None when the move must wait. Handlers are idempotent: run again from
the start of their phase after any crash, they find the host steps already
done (the hosts' journals answer) and go on.
"""

import datetime
import json
import time

import oslo_messaging as messaging
from oslo_log import log as logging

from godwit import context as godwit_context
from godwit import exception, phases
from godwit.db import moves, timeline
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)


class Stopping(Exception):
    """The conductor stops: the handler leaves its move to the next owner."""


class Flow:
    table = None

    def __init__(self, engine):
        self.engine = engine
        self.conductor = engine.conductor
        self.db = engine.db
        self.conf = engine.conf
        self.rpc = engine.conductor.compute_rpc

    # --- the loop --------------------------------------------------------------------
    def drive(self, m):
        while m is not None and not phases.is_final(m["status"]):
            handler = getattr(self, m["status"].replace("-", "_"))
            last, m = m, handler(m)
            if m is None:
                # Waiting in this phase; the sweep looks again if the row moves
                # without us (a user's confirm or revert written by the API).
                self.engine.parked[last["id"]] = last["status"]
        if m is not None and phases.is_final(m["status"]):
            self.ended(m)

    def ended(self, m):
        """A final phase: the row has no owner any more (the advance cleared it)."""
        self.engine.forget(m)

    # --- context ---------------------------------------------------------------------
    @staticmethod
    def data(m):
        return moves.step_data(m)

    def ctxt(self, m, key="context"):
        """The requester's context, kept with the move under ``key``: events go to
        their action."""
        saved = self.data(m).get(key)
        if saved:
            return godwit_context.RequestContext.from_dict(saved)
        return godwit_context.get_admin_context()

    @staticmethod
    def deadline_in(seconds):
        return utcnow() + datetime.timedelta(seconds=seconds)

    def overdue(self, m):
        return m.get("deadline_at") is not None and utcnow() >= m["deadline_at"]

    # --- moving the row ----------------------------------------------------------------
    def advance(self, m, event, **kwargs):
        steps = self.engine.take_steps(m["id"])
        try:
            new = self.db.migration_advance(m, event, timeline=steps, **kwargs)
        except Exception:
            self.engine.put_back_steps(m["id"], steps)
            raise
        LOG.info("Migration %s: %s -> %s (%s)", m["id"], m["status"], new["status"], event)
        self.advanced(m, new, kwargs)
        self.engine.faults.check(f"advance.{event}", m["instance_uuid"])
        return new

    def advanced(self, m, new, kwargs):
        """``m`` moved on to ``new`` (committed), with ``kwargs`` of the advance:
        for what a flow keeps in memory (before any fault after the write)."""

    def save(self, m, data, **values):
        steps = self.engine.take_steps(m["id"])
        try:
            return self.db.migration_save_data(m, data, values or None, timeline=steps)
        except Exception:
            self.engine.put_back_steps(m["id"], steps)
            raise

    def unresolved(self, m, hosts, reason, instance_values=None):
        """Hosts needed to know where the guest is could not be asked: end in
        'error', with the instance's fault saying which and what to check, until
        they return (then recovery resumes the phase)."""
        data = dict(self.data(m), unresolved_phase=m["status"])
        fault = (f"{reason}. Could not ask {', '.join(hosts)} where the guest runs; the "
                 f"migration resumes when {'they return' if len(hosts) > 1 else 'it returns'}"
                 f". Check {', '.join(hosts)} (compute service, libvirtd) before acting on "
                 "the server.")
        values = {"vm_state": "error", "fault_message": fault[:4000]}
        values.update(instance_values or {})
        return self.advance(m, phases.UNRESOLVED, data=data,
                            values={"error_message": fault[:4000],
                                    "awaiting_hosts": json.dumps(sorted(hosts))},
                            instance_values=values)

    # --- host steps ----------------------------------------------------------------------
    def call(self, m, host, method, *args, **kwargs):
        """One host step, asked again until it answers (see compute.rpcapi).

        Raises HostUnreachable when the host's service is down, or when it has
        not answered by the phase's deadline; the host's own error otherwise.
        """
        ctxt = self.ctxt(m)
        asked = time.monotonic()
        try:
            answer = self._call(m, host, method, ctxt, args, kwargs)
        except Exception as e:
            self._stepped(m, host, method, asked, exception.message_of(e)[:500])
            raise
        self._stepped(m, host, method, asked, "ok")
        return answer

    def _stepped(self, m, host, method, asked, outcome):
        """A host step, for the move's timeline (written with its next write)."""
        self.engine.add_step(m["id"], timeline.step_entry("step", method, host, asked,
                                                           outcome=outcome))

    def _call(self, m, host, method, ctxt, args, kwargs):
        while True:
            if self.engine.stopping.is_set():
                raise Stopping()
            if not self.engine.host_up(host):
                self.engine.waiting_for[m["id"]] = host
                raise exception.HostUnreachable(host=host, why="its compute service is down")
            self.engine.faults.check(f"call.{method}", m["instance_uuid"])
            try:
                return getattr(self.rpc, method)(ctxt, host, *args, **kwargs)
            except (messaging.MessagingTimeout, messaging.MessageDeliveryFailure,
                    exception.StepInProgress) as e:
                if self.overdue(m):
                    self.engine.waiting_for[m["id"]] = host
                    raise exception.HostUnreachable(
                        host=host, why=f"no answer to {method} by the phase's deadline"
                    ) from e
                self._still_ours(m)
                LOG.info("Migration %s: %s on %s %s; asking again", m["id"], method, host,
                         "still runs" if isinstance(e, exception.StepInProgress)
                         else "did not answer")
                if not isinstance(e, exception.StepInProgress):
                    time.sleep(0.5)

    def _still_ours(self, m):
        row = self.db.migration_get(m["id"])
        if row["epoch"] != m["epoch"]:
            raise exception.MigrationFenced(migration_id=m["id"], epoch=m["epoch"],
                                            found=row["epoch"])

    def inspect(self, m, host):
        """What ``host`` has of the move's instance, or None if it cannot be asked."""
        try:
            return self.call(m, host, "inspect_instance", m["instance_uuid"], m["id"])
        except exception.HostUnreachable:
            return None

    # --- clean-up left for later ------------------------------------------------------------
    def defer(self, data, host, step):
        """Remember a clean-up step for ``host``, done when it next reports."""
        data.setdefault("deferred", []).append({"host": host, "step": step})
        return data

    def deferred_cleanup(self, m, host):
        """``host`` reports again: run the clean-up steps left for it, then forget them."""
        data = self.data(m)
        mine = [d for d in data.get("deferred", []) if d["host"] == host]
        if not mine:
            return
        for d in mine:
            LOG.info("Migration %s: %s is back; running the deferred %s", m["id"], host,
                     d["step"])
            self.run_deferred(m, d)
        data["deferred"] = [d for d in data.get("deferred", []) if d["host"] != host]
        done = [dict(e, kind="cleanup") for e in self.engine.take_steps(m["id"])]
        self.db.migration_save_data(m, data, self.deferred_values(data), timeline=done)

    def run_deferred(self, m, step):
        raise NotImplementedError

    def deferred_values(self, data):
        hosts = sorted({d["host"] for d in data.get("deferred", [])})
        return {"cleanup_hosts": json.dumps(hosts) if hosts else None}
