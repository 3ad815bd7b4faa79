"""crash safety: migration owner, lease, epoch, step data, intents; host slots;
the broker's last sign of life per conductor

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade():
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("lease_until", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("epoch", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("step_data", sa.Text(), nullable=True))
        batch.add_column(sa.Column("abort_requested_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("force_complete_requested_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("awaiting_hosts", sa.Text(), nullable=True))
        batch.add_column(sa.Column("cleanup_hosts", sa.Text(), nullable=True))
        batch.create_index("migrations_owner_idx", ["owner"])
    with op.batch_alter_table("compute_nodes") as batch:
        batch.add_column(sa.Column("max_live_migrations", sa.Integer(), nullable=True))
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("broker_checked_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("broker_ok_since", TIMESTAMP, nullable=True))


def downgrade():
    with op.batch_alter_table("services") as batch:
        batch.drop_column("broker_ok_since")
        batch.drop_column("broker_checked_at")
    with op.batch_alter_table("compute_nodes") as batch:
        batch.drop_column("max_live_migrations")
    with op.batch_alter_table("migrations") as batch:
        batch.drop_index("migrations_owner_idx")
        for column in ("cleanup_hosts", "awaiting_hosts", "force_complete_requested_at", "abort_requested_at",
                       "step_data", "epoch", "lease_until", "owner"):
            batch.drop_column(column)
