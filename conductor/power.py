"""Stop, start and reboot: recorded by the API, carried out by a conductor.

The API writes the request as the instance's task_state (powering-off,
powering-on, rebooting, rebooting_hard) with an instance action, and casts
to any conductor, which calls the host and records the result. The host runs
the action once per request (its journal), so a conductor that asks again
after a crash, or two that both noticed, do no harm. The cast is only a
wake-up: every conductor's sweep carries out requests left waiting longer
than two host step timeouts.
"""

import datetime
import threading

import oslo_messaging as messaging
from oslo_log import log as logging

from godwit import context as godwit_context
from godwit import exception, states
from godwit.db import moves
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)

#: action -> (task_state while it runs, vm_state after it)
ACTIONS = {"stop": (states.POWERING_OFF, states.STOPPED),
           "start": (states.POWERING_ON, states.ACTIVE),
           "reboot": (None, states.ACTIVE)}
REBOOT_TASKS = {states.REBOOTING: "SOFT", states.REBOOTING_HARD: "HARD"}
TASKS = {states.POWERING_OFF: "stop", states.POWERING_ON: "start",
         states.REBOOTING: "reboot", states.REBOOTING_HARD: "reboot"}

_running = set()
_running_lock = threading.Lock()


def _task_state(action, reboot_type):
    if action == "reboot":
        return states.REBOOTING_HARD if reboot_type == "HARD" else states.REBOOTING
    return ACTIONS[action][0]


def run(conductor, ctxt, instance_uuid, action, reboot_type=None):
    task_state = _task_state(action, reboot_type)
    with _running_lock:
        if instance_uuid in _running:
            return
        _running.add(instance_uuid)
    try:
        _run(conductor, ctxt, instance_uuid, action, reboot_type, task_state)
    finally:
        with _running_lock:
            _running.discard(instance_uuid)


def _run(conductor, ctxt, instance_uuid, action, reboot_type, task_state):
    db = conductor.db
    instance = db.instance_get(instance_uuid)
    if instance["task_state"] != task_state:
        return   # done already, or something else took the instance
    host = instance["host"]
    event = f"compute_{action}_instance"
    while True:
        svc = db.service_get_by_host(host)
        if svc is None or not db.is_host_up(svc, conductor.conf.service_down_time):
            LOG.info("%s of %s waits for its host %s", action, instance_uuid, host)
            return   # the sweep asks again once the host is back
        try:
            power_state = conductor.compute_rpc.power_action(
                ctxt, host, instance_uuid, action, ctxt.request_id, reboot_type)
            break
        except (messaging.MessagingTimeout, exception.StepInProgress):
            continue
        except Exception as e:
            db.instance_update(instance_uuid, {
                "task_state": None,
                "fault_message": f"{event} on {host}: {exception.message_of(e)}"[:4000]},
                expected={"task_state": task_state})
            return
    try:
        db.instance_update(instance_uuid, {"vm_state": ACTIONS[action][1], "task_state": None,
                                           "power_state": power_state},
                           expected={"task_state": task_state})
    except exception.ConcurrentUpdate:
        pass


def sweep(conductor, ctxt):
    """Carry out power requests whose wake-up was lost or whose conductor died."""
    cutoff = utcnow() - datetime.timedelta(seconds=2 * conductor.conf.host_step_timeout)
    for task_state, action in TASKS.items():
        for inst in conductor.db.instance_list({"task_state": task_state}):
            if (inst["updated_at"] or inst["created_at"]) > cutoff:
                continue
            request = next((a for a in conductor.db.action_list(inst["uuid"])
                            if a["action"] == action), None)
            if request is None:
                continue
            rctxt = godwit_context.RequestContext(
                request_id=request["request_id"], user_id=request["user_id"],
                project_id=request["project_id"], roles=["admin"], is_admin=True)
            LOG.info("Carrying out the %s of %s asked in %s", action, inst["uuid"],
                     request["request_id"])
            conductor.engine.pool.submit(run, conductor, rctxt, inst["uuid"], action,
                                         REBOOT_TASKS.get(task_state))
    _deletes_after_confirm(conductor, cutoff)


def _deletes_after_confirm(conductor, cutoff):
    """A server deleted in VERIFY_RESIZE is deleted by its move's owner once the
    resize is confirmed (conductor.flows.cold): one whose move ended over two
    host step timeouts ago while the server is still 'deleting' lost that
    conductor in between. One conductor sends it again, at most once per two
    step timeouts: the one whose compare-and-swap on the server's updated_at
    wins (an agent's teardown is not journaled, so two at once must not run)."""
    for inst in conductor.db.instance_list({"task_state": states.DELETING}):
        if (inst["updated_at"] or inst["created_at"]) > cutoff:
            continue
        found = conductor.db.migration_list({"instance_uuid": inst["uuid"]}, limit=1)
        if not found or found[0]["status"] not in (states.CONFIRMED, states.ERROR_MIGRATION):
            continue
        move = found[0]
        saved = moves.step_data(move).get("delete_context")
        if not saved or (move["updated_at"] or move["created_at"]) > cutoff:
            continue      # deleted the usual way (the API's cast), or its owner is at it
        try:
            conductor.db.instance_update(inst["uuid"], {}, expected={
                "task_state": states.DELETING, "updated_at": inst["updated_at"]})
        except (exception.ConcurrentUpdate, exception.InstanceNotFound):
            continue      # another conductor sent it, or it is gone
        LOG.info("Deleting %s, whose resize was confirmed for its delete", inst["uuid"])
        conductor.engine.pool.submit(conductor.delete_instance,
                                     godwit_context.RequestContext.from_dict(saved),
                                     inst["uuid"])
