"""claims: a generation on each compute node, bumped by every claim on its room

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("compute_nodes") as batch:
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade():
    with op.batch_alter_table("compute_nodes") as batch:
        batch.drop_column("generation")
