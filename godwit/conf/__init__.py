"""Configuration options, registered on an explicit ``ConfigOpts``.

Every service builds its configuration with :func:`parse_args`; code receives
the resulting object as an argument instead of reaching for a global, so one
process (``godwit-all``, the functional tests) can run several services with
different settings.

The options are Godwit's, one module per group (as placement and ironic keep
theirs), each with its list, ``register_opts(conf)`` and ``list_opts()``;
:data:`GROUP_MODULES` registers them all and :func:`godwit.conf.opts.list_opts`
lists them for the sample config. Then oslo.log's and oslo.messaging's own
(:mod:`godwit.conf.messaging`).
"""

import os

from oslo_config import cfg
from oslo_log import log as logging

from godwit.conf import (
    api,
    compute,
    database,
    default,
    fake,
    firewall,
    godwit_all,
    iscsi_qemu,
    libvirt,
    local_block,
    messaging,
    os_brick,
    os_vif_ovs,
    transfer,
    upgrade_levels,
    vif_bridge,
    vif_ovs,
)

# In the sample config's order. The last seven are the real host drivers'
# (compute/vif, compute/firewall, compute/volume), one group per driver.
GROUP_MODULES = (
    default,
    database,
    api,
    compute,
    fake,
    godwit_all,
    libvirt,
    transfer,
    upgrade_levels,
    vif_ovs,
    os_vif_ovs,
    vif_bridge,
    firewall,
    iscsi_qemu,
    local_block,
    os_brick,
)


def register_opts(conf):
    for module in GROUP_MODULES:
        module.register_opts(conf)
    logging.register_options(conf)
    messaging.register_opts(conf)


def new_conf():
    """A fresh ConfigOpts with every Godwit option registered."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    return conf


def parse_args(argv, conf=None, default_config_files=None, prog=None):
    conf = conf if conf is not None else new_conf()
    if default_config_files is None:
        default_config_files = [p for p in ("/etc/godwit/godwit.conf",) if os.path.exists(p)]
    conf(argv, project="godwit", prog=prog, default_config_files=default_config_files)
    return conf
