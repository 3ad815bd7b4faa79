"""[database] options: where the control plane's database is."""

from oslo_config import cfg

GROUP = "database"

DATABASE_OPTS = [
    cfg.StrOpt("connection", default="sqlite:///$state_path/godwit.sqlite", secret=True,
               help="SQLAlchemy URL of the database. The default is a SQLite file under "
                    "state_path; use postgresql+psycopg2://... or mysql+pymysql://... for "
                    "real deployments."),
    cfg.BoolOpt("echo", default=False, help="Log every SQL statement (debugging)."),
]


def register_opts(conf):
    conf.register_opts(DATABASE_OPTS, group=GROUP)


def list_opts():
    return {GROUP: DATABASE_OPTS}
