"""services: rpc_version, the RPC version each service serves ([upgrade_levels] auto)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Rows of services registered before this revision keep NULL: a service of a
release that did not record its RPC version, which ``auto`` counts as the
oldest version served until the service registers again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    # batch: SQLite cannot ALTER a table beyond adding a column; batch mode
    # adds it in place where it can, on every backend.
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("rpc_version", sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table("services") as batch:
        batch.drop_column("rpc_version")
