"""[upgrade_levels] options: rolling upgrades (docs/upgrades.md)."""

from oslo_config import cfg

GROUP = "upgrade_levels"

UPGRADE_LEVELS_OPTS = [
    # Checked against the interfaces' histories when a service starts
    # (godwit.upgrade.check_levels), with a message that lists what is allowed.
    cfg.StrOpt("compute",
               help="Highest compute RPC version this service sends while older compute "
                    "agents run: 'auto' (the oldest version among the compute services "
                    "that are up, from the services table), a version this release serves "
                    "(e.g. 2.0), or unset for the newest this release knows."),
    cfg.StrOpt("conductor",
               help="Highest conductor RPC version this service sends while older "
                    "conductors run: 'auto' (the oldest version among the conductors that "
                    "are up, from the services table), a version this release serves "
                    "(e.g. 2.0), or unset for the newest this release knows."),
]


def register_opts(conf):
    conf.register_opts(UPGRADE_LEVELS_OPTS, group=GROUP)


def list_opts():
    return {GROUP: UPGRADE_LEVELS_OPTS}
