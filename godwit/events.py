"""Instance action events: one record per step, with result and traceback."""

import contextlib
import traceback as tb_module

from godwit import states
from godwit.timeutils import utcnow


@contextlib.contextmanager
def step_event(sink, instance_uuid, event, host):
    """Time the block and hand one finished event to ``sink``.

    ``sink(instance_uuid=, event=, host=, start_time=, finish_time=, result=,
    traceback=)`` writes it (the conductor to its database, an agent by a
    cast to the conductor). The exception, if any, propagates unchanged.
    """
    start = utcnow()
    try:
        yield
    except BaseException as e:
        sink(instance_uuid=instance_uuid, event=event, host=host, start_time=start,
             finish_time=utcnow(), result=states.EVENT_ERROR,
             traceback="".join(tb_module.format_exception(e))[-8000:])
        raise
    sink(instance_uuid=instance_uuid, event=event, host=host, start_time=start,
         finish_time=utcnow(), result=states.EVENT_SUCCESS, traceback=None)
