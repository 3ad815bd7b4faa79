"""Instance action events: one record per step, with result and traceback."""

import contextlib
import queue
import threading
import time
import traceback as tb_module

from oslo_log import log as logging

from godwit import states
from godwit.timeutils import utcnow

LOG = logging.getLogger(__name__)


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


class Deferred:
    """A sink that hands finished events to ``sink`` from a thread of its own,
    at a moment when the process is not busy with a move.

    A step's event is an audit record: the step it audits need not wait for
    its write (a cast from an agent, a transaction in the conductor), and
    neither should the steps that follow. In one process, Python runs one
    thread at a time, so an event written while a move's next step is being
    driven delays that step. So each event waits until ``idle()`` says nothing
    is being driven (an agent: no host step running; the conductor: no move
    handler running), at least ``min_delay`` seconds (for an agent: the
    step's answer goes out first), and at most ``max_delay`` seconds: under
    constant load events are still written, a quarter of a second late.
    Events go out in the order they finished.

    Failed steps' events are written at once, in the caller's thread: an error
    is what a user looks for right after a refusal (so it may be listed before
    success events that finished earlier and are still queued). A process that
    dies loses the events still queued (at most ``max_delay`` seconds' worth),
    as a cast lost with the broker always could. On a clean stop, :meth:`flush`
    writes what is queued; events that come after it (a request still being
    answered as the service stops) are written at once, in their own thread.
    """

    _STOP = object()
    POLL = 0.002   # how often a waiting event looks at idle() again

    def __init__(self, sink, name="events", idle=None, min_delay=0.0, max_delay=0.25):
        self.sink = sink
        self.name = name
        self.idle = idle or (lambda: True)
        self.min_delay = min_delay
        self.max_delay = max_delay
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._closed = False
        self._lock = threading.Lock()
        self._flushing = threading.Event()

    def __call__(self, **event):
        if event.get("result") == states.EVENT_ERROR:
            self._write(event)
            return
        self.later(**event)

    @property
    def closed(self):
        """flush() has run: events given now are written at once."""
        return self._closed

    def later(self, **event):
        """Queue ``event`` whatever its result (written at once after flush())."""
        with self._lock:
            if not self._closed:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name,
                                                    daemon=True)
                    self._thread.start()
                # Under the lock: never behind the STOP of a flush.
                self._queue.put((time.monotonic(), event))
                return
        self._write(event)   # after flush(): at once

    def _write(self, event):
        try:
            self.sink(**event)
        except Exception:  # auditing must never break what it audits
            LOG.exception("Could not record event %s", event.get("event"))

    def _wait_for_a_quiet_moment(self, queued):
        # min_delay in one sleep, not in POLL-long ones (each wakes the thread
        # and takes the interpreter's lock); a flush cuts it short.
        early = min(self.min_delay, self.max_delay) - (time.monotonic() - queued)
        if early > 0:
            self._flushing.wait(early)
        while not self._flushing.is_set():
            age = time.monotonic() - queued
            if age >= self.max_delay or (age >= self.min_delay and self.idle()):
                return
            time.sleep(self.POLL)

    def _run(self):
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            queued, event = item
            self._wait_for_a_quiet_moment(queued)
            self._write(event)

    def flush(self, timeout=5.0):
        """Write what is queued now (waiting at most ``timeout`` s for it) and stop
        the thread; later events are written at once by their callers."""
        with self._lock:
            thread, self._thread, self._closed = self._thread, None, True
            if thread is not None:
                self._flushing.set()
                self._queue.put(self._STOP)
        if thread is not None:
            thread.join(timeout)
