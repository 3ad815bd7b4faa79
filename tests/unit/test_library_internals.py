"""What Godwit reaches into in its libraries (README, "What we patch or reach
into"), checked so that an upgrade that moves any of it fails here, by name,
instead of somewhere far away (a busy loop, a missing option, a slow stop)."""

import importlib
import inspect
import queue
import threading

import futurist
from futurist import _utils as futurist_utils
from kombu.transport import memory
from oslo_messaging import server as oslo_server
from oslo_messaging import transport as oslo_transport
from waitress import wasyncore

from godwit import rpc


def _params(fn):
    return list(inspect.signature(fn).parameters)


def test_kombu_memory_transport_as_godwit_rpc_patches_it():
    # godwit/rpc.py wraps these three and calls the originals with these arguments.
    assert _params(memory.Channel._put)[:3] == ["self", "queue", "message"]
    assert _params(memory.Channel._put_fanout)[:4] == ["self", "exchange", "message",
                                                       "routing_key"]
    assert _params(memory.Transport.drain_events)[:3] == ["self", "connection", "timeout"]
    # drain_events' replacement uses the transport's cycle and channels as kombu's does.
    source = inspect.getsource(memory.Transport.__mro__[1].drain_events)
    assert "self.cycle.get" in source and "self._deliver" in source


def test_oslo_messaging_private_options():
    names = {o.name for o in oslo_transport._transport_opts}
    assert {"transport_url", "control_exchange"} <= names
    for module, attr in (("oslo_messaging._tracing.client", "oslo_messaging_tracing"),
                         ("oslo_messaging._metrics.client", "oslo_messaging_metrics")):
        assert getattr(importlib.import_module(module), attr)


def test_rpc_server_takes_its_executor_class_from_an_attribute():
    # godwit.rpc.get_server sets _executor_cls on in-process RPC servers.
    assert "self._executor_cls" in inspect.getsource(oslo_server)
    assert "_executor_cls" in inspect.getsource(oslo_server.MessageHandlingServer.__init__)


def test_prompt_stop_pool_runs_queued_work_then_stops_every_worker():
    assert isinstance(futurist.ThreadPoolExecutor(1)._work_queue, queue.Queue)
    assert _params(futurist_utils.WorkItem)[:2] == ["future", "fn"]
    pool = rpc._PromptStopThreadPool(max_workers=4)
    done, release = [], threading.Event()
    futures = [pool.submit(lambda i=i: (release.wait(5), done.append(i))) for i in range(8)]
    release.set()
    pool.shutdown(wait=True)
    assert sorted(done) == list(range(8)) and all(f.done() for f in futures)
    assert pool._workers and not any(w.is_alive() for w in pool._workers)


def test_waitress_internals_the_api_stop_uses():
    assert callable(wasyncore.close_all)
    from waitress.server import BaseWSGIServer
    assert "trigger" in inspect.getsource(BaseWSGIServer.__init__)
