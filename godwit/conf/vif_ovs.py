"""[vif_ovs] options: the Open vSwitch VIF driver (compute/vif)."""

from oslo_config import cfg

GROUP = "vif_ovs"

VIF_OVS_OPTS = [
    cfg.StrOpt("bridge", default="br-int",
               help="Open vSwitch integration bridge the 'ovs' VIF driver plugs ports into "
                    "(created with datapath_type if missing). A VIF's details may name "
                    "another bridge with the key 'bridge'."),
    cfg.StrOpt("datapath_type", default="netdev", choices=["netdev", "system"],
               help="Datapath of the bridges the 'ovs' VIF driver creates: 'system' needs "
                    "the openvswitch kernel module, 'netdev' is the userspace datapath "
                    "that works without it."),
]


def register_opts(conf):
    conf.register_opts(VIF_OVS_OPTS, group=GROUP)


def list_opts():
    return {GROUP: VIF_OVS_OPTS}
