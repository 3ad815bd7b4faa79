"""Entry point for oslo-config-generator (``oslo.config.opts = godwit``)."""

from godwit import conf as godwit_conf


def list_opts():
    return [
        ("DEFAULT", godwit_conf.DEFAULT_OPTS),
        ("database", godwit_conf.DATABASE_OPTS),
        ("api", godwit_conf.API_OPTS),
        ("compute", godwit_conf.COMPUTE_OPTS),
        ("fake", godwit_conf.FAKE_OPTS),
        ("all", godwit_conf.ALL_OPTS),
        ("libvirt", godwit_conf.LIBVIRT_OPTS),
        ("transfer", godwit_conf.TRANSFER_OPTS),
        ("upgrade_levels", godwit_conf.UPGRADE_LEVELS_OPTS),
        *godwit_conf.HOST_DRIVER_OPTS,
    ]
