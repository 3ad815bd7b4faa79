"""[vif_bridge] options: the Linux-bridge VIF driver (compute/vif)."""

from oslo_config import cfg

GROUP = "vif_bridge"

VIF_BRIDGE_OPTS = [
    cfg.ListOpt("bridge_mappings", default=[],
                help="'<network_id>:<bridge>' pairs: the Linux bridge each network's VIFs "
                     "join. Networks not listed get 'br-<first 11 characters of the "
                     "network id>'. Bridges the driver creates itself are removed again "
                     "when their last port goes; bridges it found are never removed."),
    cfg.StrOpt("netns", default="",
               help="Network namespace the 'linux_bridge' VIF driver works in; empty is "
                    "the agent's own (tests put a fake host in a namespace)."),
]


def register_opts(conf):
    conf.register_opts(VIF_BRIDGE_OPTS, group=GROUP)


def list_opts():
    return {GROUP: VIF_BRIDGE_OPTS}
