"""Old file names of renamed assets (`assetql rename`), so that links to an old name still find them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "asset_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.String(), nullable=False),
        sa.Column("batch_key", sa.String(), nullable=False),
        sa.Column("file_name", sa.String(), nullable=False),
        sa.Column("raw_key", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name="fk_asset_aliases_asset_id_assets",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_asset_aliases"),
        sa.UniqueConstraint("batch_key", "file_name", name="uq_asset_aliases_batch_key_file_name"),
    )
    op.create_index("ix_asset_aliases_asset_id", "asset_aliases", ["asset_id"])
    op.create_index("ix_asset_aliases_file_name", "asset_aliases", ["file_name"])


def downgrade() -> None:
    op.drop_index("ix_asset_aliases_file_name", table_name="asset_aliases")
    op.drop_index("ix_asset_aliases_asset_id", table_name="asset_aliases")
    op.drop_table("asset_aliases")
