"""[compute] options: the compute agent's drivers."""

from oslo_config import cfg

GROUP = "compute"

COMPUTE_OPTS = [
    cfg.StrOpt("virt_driver", default="fake",
               help="Hypervisor driver, an entry point in 'godwit.virt_drivers'."),
    cfg.StrOpt("vif_driver", default="fake",
               help="Virtual interface driver, an entry point in 'godwit.vif_drivers'."),
    cfg.StrOpt("volume_driver", default="fake",
               help="Volume connector driver, an entry point in 'godwit.volume_drivers'."),
    cfg.StrOpt("firewall_driver", default="fake",
               help="Firewall filter driver, an entry point in 'godwit.firewall_drivers'."),
]


def register_opts(conf):
    conf.register_opts(COMPUTE_OPTS, group=GROUP)


def list_opts():
    return {GROUP: COMPUTE_OPTS}
