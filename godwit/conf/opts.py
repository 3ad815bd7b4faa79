"""Entry point for oslo-config-generator (``oslo.config.opts = godwit``)."""

from godwit import conf as godwit_conf


def list_opts():
    """Every Godwit option group with its options, from each group's module."""
    return [(group, opts)
            for module in godwit_conf.GROUP_MODULES
            for group, opts in module.list_opts().items()]
