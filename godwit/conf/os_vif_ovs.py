"""[os_vif_ovs] options: os-vif's ovs plugin, as the 'ovs' VIF driver uses it."""

from oslo_config import cfg

GROUP = "os_vif_ovs"

# Godwit's own copy of the os-vif ovs plugin options it uses (os-vif reads them
# from its [os_vif_ovs] group); kept here so the sample does not depend on
# whether os-vif is installed. The plugin's other options keep os-vif's defaults.
OS_VIF_OVS_OPTS = [
    cfg.StrOpt("ovsdb_connection", default="tcp:127.0.0.1:6640",
               help="OVSDB endpoint of this host's Open vSwitch, e.g. "
                    "unix:/run/openvswitch/db.sock."),
    cfg.IntOpt("ovs_vsctl_timeout", default=120, min=0,
               help="Seconds to wait for an answer from OVSDB; 0 waits forever."),
    cfg.IntOpt("network_device_mtu", default=1500, min=68,
               help="MTU of the ports and taps the 'ovs' VIF driver creates when the VIF's "
                    "details give none ('mtu')."),
    cfg.BoolOpt("isolate_vif", default=False,
                help="Plug new ports into the dead VLAN 4095 until the Neutron OVS agent "
                     "binds them (only for the ML2/OVS agent)."),
]


def register_opts(conf):
    conf.register_opts(OS_VIF_OVS_OPTS, group=GROUP)


def list_opts():
    return {GROUP: OS_VIF_OVS_OPTS}
