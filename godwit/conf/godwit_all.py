"""[all] options: godwit-all, the whole system in one process.

(The module is not called ``all``, which would shadow the builtin where it is
imported.)"""

from oslo_config import cfg

GROUP = "all"

ALL_OPTS = [
    cfg.IntOpt("compute_hosts", default=3, min=1,
               help="How many fake compute hosts godwit-all starts (compute1..N)."),
]


def register_opts(conf):
    conf.register_opts(ALL_OPTS, group=GROUP)


def list_opts():
    return {GROUP: ALL_OPTS}
