"""host drains: host_drains, one durable record per drain

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade():
    op.create_table(
        "host_drains",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fallback", sa.String(length=16), nullable=False),
        sa.Column("on_cancel", sa.String(length=16), nullable=False),
        sa.Column("guest_timeout", sa.Integer(), nullable=False),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("cancel_requested_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=True),
        sa.UniqueConstraint("uuid"))
    op.create_index("host_drains_host_idx", "host_drains", ["host", "status"])


def downgrade():
    op.drop_index("host_drains_host_idx", table_name="host_drains")
    op.drop_table("host_drains")
