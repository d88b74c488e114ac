"""The asset library: review decisions of images, owners of batches, the activity log and the
download history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMNs (no batch-mode copy of `assets`, which would drop its full-text triggers).
    op.add_column("assets", sa.Column("review", sa.String(), server_default="", nullable=False))
    op.create_index("ix_assets_review", "assets", ["review"])
    op.add_column("batches", sa.Column("owner", sa.String(), server_default="", nullable=False))
    # Until an ownership transfer, a batch's owner is who created it.
    op.execute("UPDATE batches SET owner = creator")
    op.create_table(
        "activity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_activity"),
    )
    for column in ("at", "user", "target"):
        op.create_index(f"ix_activity_{column}", "activity", [column])
    op.create_table(
        "downloads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_downloads"),
    )
    for column in ("at", "user", "target"):
        op.create_index(f"ix_downloads_{column}", "downloads", [column])


def downgrade() -> None:
    for table in ("downloads", "activity"):
        for column in ("target", "user", "at"):
            op.drop_index(f"ix_{table}_{column}", table_name=table)
        op.drop_table(table)
    # SQLite drops an indexed column only once its index is gone; plain ALTER TABLEs, as in 0002.
    op.drop_index("ix_assets_review", table_name="assets")
    op.execute("ALTER TABLE assets DROP COLUMN review")
    op.execute("ALTER TABLE batches DROP COLUMN owner")
