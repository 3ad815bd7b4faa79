"""Alembic environment: runs migrations against the URL godwit passes in."""

import sqlalchemy as sa
from alembic import context

from godwit.db import models

config = context.config
target_metadata = models.Base.metadata


def run_migrations_online():
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
