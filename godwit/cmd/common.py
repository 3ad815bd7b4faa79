"""Start-up shared by the console scripts."""

import re
import sys

from oslo_log import log as logging

from godwit import conf as godwit_conf
from godwit import upgrade

LOG = logging.getLogger(__name__)


def init(argv=None, prog=None, defaults=None):
    """Parse configuration and set up logging; returns the ConfigOpts."""
    conf = godwit_conf.new_conf()
    for key, (value, group) in (defaults or {}).items():
        # A key may be "group.name" (so that one name in two groups is two keys).
        conf.set_default(key.rpartition(".")[2], value, group=group)
    godwit_conf.parse_args(sys.argv[1:] if argv is None else argv, conf=conf, prog=prog)
    logging.setup(conf, "godwit")
    try:
        upgrade.check_levels(conf)
        refused = None
    except upgrade.InvalidUpgradeLevel as e:
        refused = str(e)
    if refused:
        # As argparse refuses a bad argument: one line on stderr, exit status 2.
        LOG.error("%s", refused)
        print(f"{prog or 'godwit'}: error: {refused}", file=sys.stderr)
        sys.exit(2)
    # Every option's value, as Nova does at start-up, for debugging a deployment;
    # options registered with secret=True ([database] connection, transport_url,
    # [keystone_authtoken] password) are shown as ****.
    conf.log_opt_values(LOG, logging.DEBUG)
    return conf


# "//user:password@" or ",user:password@" (oslo.messaging's list of brokers).
_URL_PASSWORD_RE = re.compile(r"(//|,)([^:/@,]*):[^@/]*@")


def mask_url(url):
    """``url`` with the password of every ``user:password@`` replaced by ***,
    for what is printed or logged (database and transport URLs)."""
    return _URL_PASSWORD_RE.sub(r"\1\2:***@", url or "")
