"""The asset catalog: batches, assets, versions, tags, style profiles, exports, category overrides,
and full-text search over prompt, tag labels and metadata.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)

# SQLite: FTS5 over a plain table keyed by an INTEGER PRIMARY KEY (a rowid VACUUM never changes),
# kept in step with `assets` by triggers, so any writer of `assets` keeps search current.
# Diacritics are kept, as PostgreSQL's 'simple' configuration keeps them.
SQLITE_SEARCH = [
    """CREATE TABLE assets_search (
        id INTEGER PRIMARY KEY,
        asset_id VARCHAR NOT NULL UNIQUE REFERENCES assets (id) ON DELETE CASCADE,
        prompt TEXT NOT NULL DEFAULT '',
        tags TEXT NOT NULL DEFAULT '',
        metadata TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE VIRTUAL TABLE assets_fts USING fts5(
        prompt, tags, metadata,
        content='assets_search', content_rowid='id', tokenize='unicode61 remove_diacritics 0'
    )""",
    """CREATE TRIGGER assets_search_ai AFTER INSERT ON assets_search BEGIN
        INSERT INTO assets_fts (rowid, prompt, tags, metadata)
        VALUES (new.id, new.prompt, new.tags, new.metadata);
    END""",
    """CREATE TRIGGER assets_search_ad AFTER DELETE ON assets_search BEGIN
        INSERT INTO assets_fts (assets_fts, rowid, prompt, tags, metadata)
        VALUES ('delete', old.id, old.prompt, old.tags, old.metadata);
    END""",
    """CREATE TRIGGER assets_search_au AFTER UPDATE ON assets_search BEGIN
        INSERT INTO assets_fts (assets_fts, rowid, prompt, tags, metadata)
        VALUES ('delete', old.id, old.prompt, old.tags, old.metadata);
        INSERT INTO assets_fts (rowid, prompt, tags, metadata)
        VALUES (new.id, new.prompt, new.tags, new.metadata);
    END""",
    # An upsert that updates fires the UPDATE trigger only; deletes cascade to assets_search.
    """CREATE TRIGGER assets_search_from_assets_ai AFTER INSERT ON assets BEGIN
        INSERT INTO assets_search (asset_id, prompt, tags, metadata)
        VALUES (new.id, new.prompt, new.tags_text, new.metadata_text);
    END""",
    """CREATE TRIGGER assets_search_from_assets_au AFTER UPDATE OF prompt, tags_text, metadata_text ON assets
    WHEN old.prompt IS NOT new.prompt OR old.tags_text IS NOT new.tags_text
        OR old.metadata_text IS NOT new.metadata_text
    BEGIN
        UPDATE assets_search SET prompt = new.prompt, tags = new.tags_text, metadata = new.metadata_text
        WHERE asset_id = new.id;
    END""",
]
SQLITE_SEARCH_DROP = [
    "DROP TRIGGER IF EXISTS assets_search_from_assets_au",
    "DROP TRIGGER IF EXISTS assets_search_from_assets_ai",
    "DROP TRIGGER IF EXISTS assets_search_au",
    "DROP TRIGGER IF EXISTS assets_search_ad",
    "DROP TRIGGER IF EXISTS assets_search_ai",
    "DROP TABLE IF EXISTS assets_fts",
    "DROP TABLE IF EXISTS assets_search",
]

# PostgreSQL: a stored generated tsvector (prompt weighted A, tags B, metadata C) with a GIN
# index. ASCII punctuation becomes spaces first and the 'simple' configuration neither stems nor
# drops stop words, so words split and match as in FTS5's unicode61 tokenizer: "SKU-42" and
# "castle.png" are the words sku, 42, castle and png on both dialects, whatever the language.
PUNCTUATION = "!\"#$%&''()*+,-./:;<=>?@[\\]^_`{|}~"  # string.punctuation, quote doubled for SQL
SPACES = " " * 32


def _words(column: str) -> str:
    return f"to_tsvector('simple'::regconfig, translate(coalesce({column}, ''), '{PUNCTUATION}', '{SPACES}'))"


POSTGRES_SEARCH = [
    f"""ALTER TABLE assets ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight({_words('prompt')}, 'A')
        || setweight({_words('tags_text')}, 'B')
        || setweight({_words('metadata_text')}, 'C')
    ) STORED""",
    "CREATE INDEX ix_assets_search_vector ON assets USING gin (search_vector)",
]
POSTGRES_SEARCH_DROP = [
    "DROP INDEX IF EXISTS ix_assets_search_vector",
    "ALTER TABLE assets DROP COLUMN IF EXISTS search_vector",
]


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("creator", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("images_planned", sa.Integer(), nullable=False),
        sa.Column("images_stored", sa.Integer(), nullable=False),
        sa.Column("images_failed", sa.Integer(), nullable=False),
        sa.Column("images_passed", sa.Integer(), nullable=False),
        sa.Column("images_review", sa.Integer(), nullable=False),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("style_profile", sa.String(), nullable=True),
        sa.Column("campaign", sa.String(), nullable=True),
        sa.Column("registered_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_batches"),
    )
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_index("ix_batches_style_profile", "batches", ["style_profile"])
    op.create_index("ix_batches_campaign", "batches", ["campaign"])
    op.create_index("ix_batches_registered_at", "batches", ["registered_at"])

    op.create_table(
        "assets",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("batch_key", sa.String(), nullable=False),
        sa.Column("image_id", sa.String(), nullable=False),
        sa.Column("file_name", sa.String(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("raw_key", sa.String(), nullable=False),
        sa.Column("thumb_key", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("subcategory", sa.String(), nullable=False),
        sa.Column("category_source", sa.String(), nullable=False),
        sa.Column("style_score", sa.Float(), nullable=True),
        sa.Column("palette_score", sa.Float(), nullable=True),
        sa.Column("lighting_score", sa.Float(), nullable=True),
        sa.Column("composition_score", sa.Float(), nullable=True),
        sa.Column("texture_score", sa.Float(), nullable=True),
        sa.Column("embedding_score", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=True),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("negative_prompt", sa.Text(), nullable=False),
        sa.Column("language", sa.String(), nullable=False),
        sa.Column("sku", sa.String(), nullable=False),
        sa.Column("extra", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("tags_text", sa.Text(), nullable=False),
        sa.Column("metadata_text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["batch_key"], ["batches.key"], name="fk_assets_batch_key_batches",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_assets"),
        sa.UniqueConstraint("batch_key", "image_id", name="uq_assets_batch_key_image_id"),
    )
    op.create_index("ix_assets_batch_key", "assets", ["batch_key"])
    op.create_index("ix_assets_category_subcategory", "assets", ["category", "subcategory"])
    op.create_index("ix_assets_style_score", "assets", ["style_score"])
    op.create_index("ix_assets_verdict", "assets", ["verdict"])
    op.create_index("ix_assets_language", "assets", ["language"])
    op.create_index("ix_assets_created_at", "assets", ["created_at"])

    op.create_table(
        "asset_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("style_score", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("storage_key", sa.String(), nullable=False),
        sa.Column("thumb_key", sa.String(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name="fk_asset_versions_asset_id_assets",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_asset_versions"),
        sa.UniqueConstraint("asset_id", "version", name="uq_asset_versions_asset_id_version"),
    )

    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("group", sa.String(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name="fk_tags_asset_id_assets", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_tags"),
        sa.UniqueConstraint("asset_id", "label", "group", name="uq_tags_asset_id_label_group"),
    )
    op.create_index("ix_tags_label", "tags", ["label"])

    op.create_table(
        "style_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_style_profiles"),
        sa.UniqueConstraint("name", "version", name="uq_style_profiles_name_version"),
    )

    op.create_table(
        "exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_key", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("storage_key", sa.String(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["batch_key"], ["batches.key"], name="fk_exports_batch_key_batches",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_exports"),
        sa.UniqueConstraint("batch_key", "kind", name="uq_exports_batch_key_kind"),
    )

    op.create_table(
        "category_overrides",
        sa.Column("asset_id", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("set_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("asset_id", name="pk_category_overrides"),
    )
    op.create_index("ix_category_overrides_category", "category_overrides", ["category"])

    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": SQLITE_SEARCH, "postgresql": POSTGRES_SEARCH}.get(dialect, []):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": SQLITE_SEARCH_DROP, "postgresql": POSTGRES_SEARCH_DROP}.get(dialect, []):
        op.execute(statement)
    op.drop_index("ix_category_overrides_category", table_name="category_overrides")
    op.drop_table("category_overrides")
    op.drop_table("exports")
    op.drop_table("style_profiles")
    op.drop_index("ix_tags_label", table_name="tags")
    op.drop_table("tags")
    op.drop_table("asset_versions")
    for name in ("created_at", "language", "verdict", "style_score", "category_subcategory", "batch_key"):
        op.drop_index(f"ix_assets_{name}", table_name="assets")
    op.drop_table("assets")
    for name in ("registered_at", "campaign", "style_profile", "status"):
        op.drop_index(f"ix_batches_{name}", table_name="batches")
    op.drop_table("batches")
