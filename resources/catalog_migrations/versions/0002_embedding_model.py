"""Which CLIP model an asset's embedding comes from, so similarity compares like with like; a
change counter, so a similarity index sees in one read whether images changed; an index for
sorting by file name.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("assets", sa.Column("embedding_model", sa.String(), nullable=True))
    # With updated_at: the similarity index checks for changes (count, newest) from the index alone.
    op.create_index("ix_assets_embedding_model_updated_at", "assets", ["embedding_model", "updated_at"])
    op.create_index("ix_assets_file_name", "assets", ["file_name"])
    op.create_table(
        "catalog_changes",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_catalog_changes"),
    )


def downgrade() -> None:
    op.drop_table("catalog_changes")
    op.drop_index("ix_assets_file_name", table_name="assets")
    op.drop_index("ix_assets_embedding_model_updated_at", table_name="assets")
    # A plain ALTER TABLE (SQLite >= 3.35 drops columns natively): a batch-mode copy of `assets`
    # would drop the full-text triggers that refer to it.
    op.execute("ALTER TABLE assets DROP COLUMN embedding_model")
