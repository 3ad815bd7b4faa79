"""godwit.events.Deferred: step events written off the critical path."""

import threading
import time

from godwit import events, states


class Sink:
    def __init__(self):
        self.got = []
        self.threads = []

    def __call__(self, **event):
        self.got.append(event)
        self.threads.append(threading.current_thread().name)


def ok(name):
    return {"event": name, "result": states.EVENT_SUCCESS}


def test_events_wait_for_a_quiet_moment_and_keep_their_order():
    sink, busy = Sink(), threading.Event()
    busy.set()
    d = events.Deferred(sink, name="ev-test", idle=lambda: not busy.is_set(), max_delay=5)
    d(**ok("a"))
    d(**ok("b"))
    time.sleep(0.1)
    assert sink.got == []            # something is being driven: not yet
    busy.clear()
    deadline = time.monotonic() + 5
    while len(sink.got) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e["event"] for e in sink.got] == ["a", "b"]
    assert set(sink.threads) == {"ev-test"}
    d.flush()


def test_under_constant_load_an_event_is_written_after_max_delay():
    sink = Sink()
    d = events.Deferred(sink, idle=lambda: False, max_delay=0.2)
    t0 = time.monotonic()
    d(**ok("a"))
    while not sink.got and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    took = time.monotonic() - t0
    assert sink.got and 0.2 <= took < 2, took
    d.flush()


def test_min_delay_holds_an_event_back_even_when_idle():
    sink = Sink()
    d = events.Deferred(sink, min_delay=0.2)
    t0 = time.monotonic()
    d(**ok("a"))
    time.sleep(0.1)
    assert sink.got == []
    while not sink.got and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    assert time.monotonic() - t0 >= 0.2
    d.flush()


def test_a_flush_cuts_min_delay_short():
    sink = Sink()
    d = events.Deferred(sink, min_delay=60)
    d(**ok("a"))
    time.sleep(0.05)          # the thread sleeps through its min_delay now
    t0 = time.monotonic()
    d.flush()
    assert [e["event"] for e in sink.got] == ["a"]
    assert time.monotonic() - t0 < 2


def test_an_error_event_is_written_at_once_in_the_callers_thread():
    sink = Sink()
    d = events.Deferred(sink, idle=lambda: False, max_delay=60)
    d(event="x", result=states.EVENT_ERROR)
    assert [e["event"] for e in sink.got] == ["x"]
    assert sink.threads == [threading.current_thread().name]


def test_flush_writes_what_is_queued_without_waiting_and_a_failing_sink_is_survived():
    calls = []

    def sink(**event):
        calls.append((event["event"], threading.current_thread().name))
        if event["event"] == "bad":
            raise RuntimeError("database away")

    d = events.Deferred(sink, name="ev-flush", idle=lambda: False, max_delay=60)
    d(**ok("bad"))
    d(**ok("good"))
    t0 = time.monotonic()
    d.flush(timeout=5)
    assert [c[0] for c in calls] == ["bad", "good"] and time.monotonic() - t0 < 2
    # A request still answered as the service stops: written at once, not lost
    # in a thread nothing flushes any more.
    d(**ok("later"))
    assert calls[-1] == ("later", threading.current_thread().name)


def test_events_racing_a_flush_are_all_written():
    got = []
    d = events.Deferred(lambda **e: got.append(e["event"]), max_delay=0.05)
    names = [f"e{i}" for i in range(400)]

    def send(part):
        for n in part:
            d(**ok(n))
    senders = [threading.Thread(target=send, args=(names[i::4],)) for i in range(4)]
    for t in senders:
        t.start()
    time.sleep(0.01)
    d.flush(timeout=10)
    for t in senders:
        t.join()
    assert sorted(got) == sorted(names)
