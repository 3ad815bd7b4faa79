"""[api] options: the REST API's server, authentication and limits."""

from oslo_config import cfg

GROUP = "api"

API_OPTS = [
    cfg.HostAddressOpt("listen", default="127.0.0.1", help="Address the API listens on."),
    cfg.PortOpt("port", default=8774, help="Port the API listens on (Nova's by default)."),
    cfg.IntOpt("threads", default=8, min=1, help="WSGI server worker threads."),
    cfg.StrOpt("auth_strategy", default="noauth2", choices=["noauth2", "keystone"],
               help="noauth2 trusts the X-Auth-Token '<user>:<project>' and treats a "
                    "request without a token as admin (development only); keystone "
                    "validates tokens with keystonemiddleware (its options are in "
                    "[keystone_authtoken])."),
    cfg.BoolOpt("allow_noauth_on_network", default=False,
                help="Let godwit-api start with auth_strategy = noauth2 on an address that "
                     "is not loopback. noauth2 makes anyone who reaches the port an "
                     "admin, so by default godwit-api refuses to start that way; set "
                     "this only on an isolated network (a test lab) where that is "
                     "wanted."),
    cfg.IntOpt("max_request_body_size", default=114688, min=1024,
               help="Largest request body, in bytes, the API reads (Nova's default, "
                    "112 KiB); a larger one is refused with 413 before it is parsed."),
    cfg.ListOpt("faults", default=[],
                help="For tests of crash safety only: faults the API injects into itself, "
                     "'intent.<abort|force_complete|confirm|revert|stop|start|reboot>:"
                     "<action>[:<seconds>][:once]', just after the intent is written and "
                     "before the conductor is woken. Also read from "
                     "<state_path>/api-faults/faults.json."),
]


def register_opts(conf):
    conf.register_opts(API_OPTS, group=GROUP)


def list_opts():
    return {GROUP: API_OPTS}
