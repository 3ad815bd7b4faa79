"""godwit-api: the compute REST API, served by waitress.

waitress is a production-grade multi-threaded WSGI server in pure Python,
which fits the no-eventlet design and embeds in godwit-all.
"""

import functools
import ipaddress
import socket
import sys
import threading

import waitress
from oslo_log import log as logging
from waitress import channel as waitress_channel
from waitress import parser as waitress_parser
from waitress import wasyncore

from api import compute_api, router
from conductor import rpcapi as conductor_rpcapi
from godwit import exception, notifications, rpc, service, upgrade
from godwit.cmd import common
from godwit.db import api as db_api

LOG = logging.getLogger(__name__)


# waitress reads whole requests before the app runs; this bounds what it
# buffers for one request. The app refuses bodies over [api]
# max_request_body_size itself, with a JSON 413; waitress's own (text/plain)
# 413 is only for bodies larger still.
WAITRESS_MAX_BODY = 1 << 20


class _RequestParser(waitress_parser.HTTPRequestParser):
    """waitress's parser, with no '100 Continue' for a request without a body.

    waitress answers ``Expect: 100-continue`` with 100 Continue and then
    marks the request incomplete until the body arrives; a request with
    ``Content-Length: 0`` (or none) has no body to arrive, so it was never
    answered. RFC 9110 lets a server skip the 100 when no body is expected.
    """

    def parse_header(self, header_plus):
        super().parse_header(header_plus)
        if self.expect_continue and not self.chunked and not self.content_length:
            self.expect_continue = False


class _Channel(waitress_channel.HTTPChannel):
    parser_class = _RequestParser


class UnsafeAuthConfig(exception.GodwitException):
    msg_fmt = ("godwit-api refuses to start: [api] auth_strategy = noauth2 makes every "
               "request without a token an admin request, and [api] listen = %(listen)s "
               "is %(why)s, so anyone who reaches port %(port)s would be an admin. Set "
               "[api] auth_strategy = keystone (with a [keystone_authtoken] section; see "
               "the README), or listen on 127.0.0.1, or - only on an isolated network "
               "where unauthenticated admin access is wanted - set [api] "
               "allow_noauth_on_network = True.")


def is_loopback(host):
    """Whether every address ``host`` stands for is a loopback address.

    A name counts only if it resolves, and only to loopback addresses
    ("localhost"); "", "0.0.0.0" and "::" listen everywhere and are not.
    """
    candidate = host.strip("[]") if host else ""
    if not candidate:
        return False
    try:
        return ipaddress.ip_address(candidate.partition("%")[0]).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(candidate, None)
    except (OSError, UnicodeError):
        return False
    addrs = {info[4][0].partition("%")[0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a).is_loopback for a in addrs)


def check_auth_exposure(conf, host, port):
    """Refuse noauth2 on an address other machines can reach, unless told to.

    :raises UnsafeAuthConfig: with what to change.
    """
    if conf.api.auth_strategy != "noauth2" or is_loopback(host):
        return
    if conf.api.allow_noauth_on_network:
        LOG.warning("[api] auth_strategy = noauth2 on %s (allow_noauth_on_network = True): "
                    "anyone who reaches this port is an admin.", host)
        return
    why = "every address of this machine" if not host.strip("[]") or \
        host.strip("[]") in ("0.0.0.0", "::") else "not a loopback address"
    raise UnsafeAuthConfig(listen=host or "''", why=why, port=port)


class APIServer:
    """The WSGI app on a waitress server in a background thread."""

    def __init__(self, conf, transport, host=None, port=None, api=None):
        # Before anything is opened: a refused configuration leaves nothing behind.
        check_auth_exposure(conf, host or conf.api.listen,
                            conf.api.port if port is None else port)
        if api is None:
            db = db_api.get_database(conf.database.connection, conf.database.echo)
            db.deadlines = conf
            # [upgrade_levels] conductor, auto included (read from the services table).
            conductor = conductor_rpcapi.ConductorClient(
                transport, long_timeout=conf.long_rpc_timeout,
                version_cap=upgrade.cap(conf, conductor_rpcapi.INTERFACE, db))
            # No compute RPC client: the API never talks to a host. Every
            # request is recorded in the database and carried out by a conductor.
            api = compute_api.ComputeAPI(conf, db, conductor)
            # The API commits some phase changes itself (a confirm or revert
            # recorded): they are announced like the conductor's.
            notifications.Notifier(conf, getattr(transport, "godwit_url", None),
                                   f"api.{conf.host}").follow_moves(db)
        # ``api`` given: tests serve a ComputeAPI whose conductor only records.
        self.api = api
        self.app = router.build_app(self.api)
        self.server = waitress.create_server(
            self.app, host=host or conf.api.listen,
            port=conf.api.port if port is None else port, threads=conf.api.threads,
            ident="godwit-api",
            max_request_body_size=max(WAITRESS_MAX_BODY, conf.api.max_request_body_size))
        self.server.channel_class = _Channel
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
        close = functools.partial(wasyncore.close_all, self.server._map)
        if self._thread.is_alive():
            # Closed from the loop's own thread (a thunk its trigger runs), so
            # that the loop sees the map empty at once: closed from here, it sat
            # in select() for up to asyncore_loop_timeout (1 s) first.
            try:
                self.server.trigger.pull_trigger(close)
            except OSError:
                # The trigger is closed: an earlier stop's thunk already closed
                # everything and the loop is on its way out (EBADF).
                pass
        else:
            close()
        self.server.task_dispatcher.shutdown(timeout=min(grace, 5))

    def wait(self, timeout=5):
        self._thread.join(timeout)
        return not self._thread.is_alive()


def main(argv=None):
    conf = common.init(argv, prog="godwit-api")
    try:
        server = APIServer(conf, rpc.get_transport(conf))
    except UnsafeAuthConfig as e:
        LOG.error("%s", e)
        # Also on stderr: the log may be a file nobody looks at while the
        # service manager only says "exited with status 2".
        print(f"godwit-api: error: {e}", file=sys.stderr)
        sys.exit(2)
    server.start()
    service.wait_for_signal([server], conf.graceful_shutdown_timeout)
    rpc.cleanup()
