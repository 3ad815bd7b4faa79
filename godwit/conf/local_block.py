"""[local_block] options: loop-device volumes (compute/volume)."""

from oslo_config import cfg

GROUP = "local_block"

LOCAL_BLOCK_OPTS = [
    cfg.StrOpt("volumes_path", default="$state_path/volumes",
               help="Directory of the 'local_block' driver's backing files, one per volume "
                    "named volume-<volume_id>, unless a BDM's connection_info names its "
                    "file ('data': {'backing_file': ...})."),
]


def register_opts(conf):
    conf.register_opts(LOCAL_BLOCK_OPTS, group=GROUP)


def list_opts():
    return {GROUP: LOCAL_BLOCK_OPTS}
