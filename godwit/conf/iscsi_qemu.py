"""[iscsi_qemu] options: iSCSI volumes through QEMU's initiator (compute/volume)."""

from oslo_config import cfg

GROUP = "iscsi_qemu"

ISCSI_QEMU_OPTS = [
    cfg.FloatOpt("connect_timeout", default=5.0, min=0.1,
                 help="Seconds to wait for a TCP connection to an iSCSI portal before "
                      "connect_volume fails."),
    cfg.StrOpt("target_portal", default="",
               help="Portal (host:port) of the iSCSI target that serves volumes whose "
                    "BDM carries no connection_info (a deployment without a volume "
                    "service that records it). Empty: such a BDM cannot connect."),
    cfg.StrOpt("target_iqn_format", default="iqn.2010-10.org.openstack:volume-%(volume_id)s",
               help="IQN of such a volume's target, from its volume_id (Cinder's "
                    "default naming for its tgt and LIO targets)."),
    cfg.IntOpt("target_lun", default=1, min=0,
               help="LUN of such a volume within its target (tgtd numbers data LUNs "
                    "from 1)."),
    cfg.BoolOpt("probe_lun", default=True,
                help="Also log in and read the LUN's inquiry data with libiscsi's "
                     "iscsi-inq when that tool is installed (package libiscsi-bin)."),
]


def register_opts(conf):
    conf.register_opts(ISCSI_QEMU_OPTS, group=GROUP)


def list_opts():
    return {GROUP: ISCSI_QEMU_OPTS}
