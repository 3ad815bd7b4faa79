"""migrations: alternates and old_vm_state for cold migration and resize

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("alternates", sa.Text(), nullable=True))
        batch.add_column(sa.Column("old_vm_state", sa.String(length=255), nullable=True))


def downgrade():
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("old_vm_state")
        batch.drop_column("alternates")
