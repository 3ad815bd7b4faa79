"""[os_brick] options: the os-brick volume connector (compute/volume)."""

from oslo_config import cfg

GROUP = "os_brick"

OS_BRICK_OPTS = [
    cfg.BoolOpt("use_multipath", default=False,
                help="Let os-brick connect through multipathd."),
    cfg.IntOpt("device_scan_attempts", default=3, min=1,
               help="How often os-brick rescans for the device after the iSCSI login."),
    cfg.StrOpt("lock_path", default="$state_path/locks",
               help="Directory of os-brick's inter-process locks."),
]


def register_opts(conf):
    conf.register_opts(OS_BRICK_OPTS, group=GROUP)


def list_opts():
    return {GROUP: OS_BRICK_OPTS}
