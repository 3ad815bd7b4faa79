"""Schema migrations with alembic (``godwit-manage db sync``)."""

import os

from alembic import command
from alembic.config import Config

ALEMBIC_DIR = os.path.join(os.path.dirname(__file__), "alembic")


def alembic_config(url):
    cfg = Config()
    cfg.set_main_option("script_location", ALEMBIC_DIR)
    # alembic's Config interpolates %; keep URLs with escaped passwords intact.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def ensure_sqlite_dir(url):
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = url[len("sqlite:///"):]
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)


def db_sync(url, revision="head"):
    ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


def db_version(url):
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
