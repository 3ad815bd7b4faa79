"""Running every clean-up step even when one fails, and saying which failed."""

from oslo_log import log as logging

from godwit import exception

LOG = logging.getLogger(__name__)


def run_all(steps, host=None, purpose="clean-up"):
    """Call each ``(name, fn)`` in order; return "<name> [on <host>]: <reason>" per failure.

    Undo and clean-up steps are independent: one that fails must not keep the
    others from running, and the caller reports every one that did not work.
    """
    problems = []
    for name, fn in steps:
        try:
            fn()
        except Exception as e:
            label = f"{name} on {host}" if host else name
            LOG.exception("%s: %s failed", purpose, label)
            problems.append(f"{label}: {exception.message_of(e)}")
    return problems
