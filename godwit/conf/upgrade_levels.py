"""[upgrade_levels] options: rolling upgrades (docs/upgrades.md)."""

from oslo_config import cfg

GROUP = "upgrade_levels"

UPGRADE_LEVELS_OPTS = [
    cfg.StrOpt("compute", regex=r"^\d+\.\d+$",
               help="Highest compute RPC version this service sends (e.g. 2.0) while "
                    "older compute agents run; unset: the newest this release knows."),
    cfg.StrOpt("conductor", regex=r"^\d+\.\d+$",
               help="Highest conductor RPC version this service sends (e.g. 2.0) while "
                    "older conductors run; unset: the newest this release knows."),
]


def register_opts(conf):
    conf.register_opts(UPGRADE_LEVELS_OPTS, group=GROUP)


def list_opts():
    return {GROUP: UPGRADE_LEVELS_OPTS}
