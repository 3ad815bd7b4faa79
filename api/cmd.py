"""godwit-api: the compute REST API, served by waitress.

waitress is a production-grade multi-threaded WSGI server in pure Python,
which fits the no-eventlet design and embeds in godwit-all.
"""

import threading

import waitress
from oslo_log import log as logging
from waitress import wasyncore

from api import compute_api, router
from conductor import rpcapi as conductor_rpcapi
from godwit import rpc, service
from godwit.cmd import common
from godwit.db import api as db_api

LOG = logging.getLogger(__name__)


class APIServer:
    """The WSGI app on a waitress server in a background thread."""

    def __init__(self, conf, transport, host=None, port=None):
        db = db_api.get_database(conf.database.connection, conf.database.echo)
        db.deadlines = conf
        conductor = conductor_rpcapi.ConductorAPI(transport,
                                                  long_timeout=conf.long_rpc_timeout)
        # No compute RPC client: the API never talks to a host. Every request
        # is recorded in the database and carried out by a conductor.
        self.api = compute_api.ComputeAPI(conf, db, conductor)
        self.app = router.build_app(self.api)
        self.server = waitress.create_server(
            self.app, host=host or conf.api.listen,
            port=conf.api.port if port is None else port, threads=conf.api.threads,
            ident="godwit-api")
        self.port = self.server.effective_port
        self.host = host or conf.api.listen
        self.url = f"http://{self.host}:{self.port}/v2.1"
        self._thread = threading.Thread(target=self.server.run, name="godwit-api", daemon=True)

    def start(self):
        self._thread.start()
        LOG.info("Compute API listening on %s", self.url)

    def stop(self, grace=5):
        # waitress's loop runs until its socket map is empty; closing only the
        # listener would leave keep-alive client connections holding it open.
        wasyncore.close_all(self.server._map)
        self.server.task_dispatcher.shutdown(timeout=min(grace, 5))

    def wait(self, timeout=5):
        self._thread.join(timeout)
        return not self._thread.is_alive()


def main(argv=None):
    conf = common.init(argv, prog="godwit-api")
    server = APIServer(conf, rpc.get_transport(conf))
    server.start()
    service.wait_for_signal([server], conf.graceful_shutdown_timeout)
    rpc.cleanup()
