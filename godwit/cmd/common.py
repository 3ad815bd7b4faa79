"""Start-up shared by the console scripts."""

import sys

from oslo_log import log as logging

from godwit import conf as godwit_conf


def init(argv=None, prog=None, defaults=None):
    """Parse configuration and set up logging; returns the ConfigOpts."""
    conf = godwit_conf.new_conf()
    for name, (value, group) in (defaults or {}).items():
        conf.set_default(name, value, group=group)
    godwit_conf.parse_args(sys.argv[1:] if argv is None else argv, conf=conf, prog=prog)
    logging.setup(conf, "godwit")
    return conf
