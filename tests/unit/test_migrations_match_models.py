"""The alembic migrations build exactly the schema the models describe."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from godwit.db import migration, models


@pytest.fixture
def synced_url(tmp_path):
    url = f"sqlite:///{tmp_path}/schema.sqlite"
    migration.db_sync(url)
    return url


def test_migrations_match_models(synced_url):
    engine = sa.create_engine(synced_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), models.Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], ("models and alembic migrations differ; add a migration "
                        f"(alembic revision --autogenerate) for: {diff}")


def test_db_sync_reaches_the_single_head(synced_url):
    script = ScriptDirectory.from_config(migration.alembic_config(synced_url))
    heads = script.get_heads()
    assert len(heads) == 1, f"alembic has several heads: {heads}"
    assert migration.db_version(synced_url) == heads[0]


def test_db_sync_is_idempotent(synced_url):
    migration.db_sync(synced_url)
    engine = sa.create_engine(synced_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == set(models.Base.metadata.tables) | {"alembic_version"}
