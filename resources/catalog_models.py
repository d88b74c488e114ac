"""Tables of the asset catalog (SQLAlchemy 2) and the plain entries its upserts take.

The catalog is an index over what storage holds (batches, images, versions, tags, exports), kept
for search; storage stays the source of truth. The asset library's activity log and download
history are the exception: they are history, kept here only (a catalog rebuilt from nothing starts
them empty). The schema itself is created by the Alembic migrations in
`resources/catalog_migrations/`; these models describe the same tables for queries and for
autogenerating the next migration. Full-text search objects are dialect-specific and live
in the migrations only (see `SEARCH_OBJECTS`).

Nothing here imports the code location: callers turn their records into the entries below.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint and index names, so migrations can refer to them on every dialect.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Search objects the migrations create outside these models: on SQLite the `assets_search` table
# and its FTS5 index `assets_fts` (with FTS5's shadow tables), on PostgreSQL the generated
# `assets.search_vector` column and its GIN index. Autogenerate must leave them alone.
SEARCH_OBJECTS = ("assets_search", "assets_fts", "search_vector", "ix_assets_search_vector")

# The five style parameters scored per image (besides the overall style score).
PARAMETER_SCORES = ("palette_score", "lighting_score", "composition_score", "texture_score", "embedding_score")


def is_search_object(name: str | None) -> bool:
    """True for the dialect-specific full-text objects that only the migrations manage."""
    return bool(name) and any(name == n or name.startswith(f"{n}_") for n in SEARCH_OBJECTS)


def to_utc(value: datetime | str | None) -> datetime | None:
    """An aware UTC datetime from a datetime or ISO 8601 text; naive values are taken as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime or ISO 8601 text, got {type(value).__name__}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class UtcDateTime(TypeDecorator):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        return to_utc(value)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        return to_utc(value)


# JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JsonDocument = JSON().with_variant(postgresql.JSONB(), "postgresql")


def embedding_to_bytes(values: bytes | bytearray | memoryview | Sequence[float] | np.ndarray) -> bytes:
    """A vector as little-endian float32 bytes (bytes are checked and kept as they are)."""
    if isinstance(values, (bytes, bytearray, memoryview)):
        data = bytes(values)
        if len(data) % 4:
            raise ValueError(f"embedding bytes must be float32 values (a multiple of 4 bytes), got {len(data)}")
        return data
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"an embedding must be one vector, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("an embedding must hold finite numbers only")
    return array.astype("<f4").tobytes()


def embedding_from_bytes(data: bytes | None) -> np.ndarray | None:
    """The float32 vector stored by `embedding_to_bytes`."""
    return None if data is None else np.frombuffer(data, dtype="<f4").copy()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UtcDateTime(),
        dict[str, Any]: JsonDocument,
        str: String(),
        float: Float(),
        bytes: LargeBinary(),
    }


class Batch(Base):
    """One registered batch (a partition): who, what, how far it got."""

    __tablename__ = "batches"

    key: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str]
    description: Mapped[str] = mapped_column(Text)
    creator: Mapped[str]
    status: Mapped[str] = mapped_column(index=True)
    images_planned: Mapped[int]
    images_stored: Mapped[int]
    images_failed: Mapped[int]
    images_passed: Mapped[int]
    images_review: Mapped[int]
    settings: Mapped[dict[str, Any]]
    # A profile version ("brand-x@2"), a preset ("preset:watercolor") or both ("brand-x@2, preset:…").
    style_profile: Mapped[str | None] = mapped_column(index=True)
    campaign: Mapped[str | None] = mapped_column(index=True)
    registered_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    # Who answers for the batch in the asset library: its creator until an admin transfers it
    # (`batches/{batch}/owner.json`).
    owner: Mapped[str] = mapped_column(server_default="")


class Asset(Base):
    """One image of a batch: its current version, scores, file facts, prompt and CLIP embedding."""

    __tablename__ = "assets"
    __table_args__ = (
        UniqueConstraint("batch_key", "image_id"),
        Index(None, "category", "subcategory"),
        Index(None, "embedding_model", "updated_at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)  # "{batch}/{image_id}"
    batch_key: Mapped[str] = mapped_column(ForeignKey("batches.key", ondelete="CASCADE"), index=True)
    image_id: Mapped[str]
    file_name: Mapped[str] = mapped_column(index=True)
    current_version: Mapped[int]
    raw_key: Mapped[str]
    thumb_key: Mapped[str]
    category: Mapped[str]
    subcategory: Mapped[str]
    category_source: Mapped[str]  # csv, clip, override, ...
    style_score: Mapped[float | None] = mapped_column(index=True)
    palette_score: Mapped[float | None]
    lighting_score: Mapped[float | None]
    composition_score: Mapped[float | None]
    texture_score: Mapped[float | None]
    embedding_score: Mapped[float | None]
    verdict: Mapped[str] = mapped_column(index=True)  # pass, review, unscored
    width: Mapped[int]
    height: Mapped[int]
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    format: Mapped[str]
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(index=True)
    sku: Mapped[str]
    extra: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    embedding: Mapped[bytes | None]  # float32, little-endian (embedding_to_bytes)
    # The CLIP model the embedding comes from ("tiny", "ViT-B-32:openai", ...), None exactly when
    # there is no embedding: similarity compares only embeddings of one model.
    embedding_model: Mapped[str | None]
    # Full-text sources besides the prompt: tag labels (kept by replace_tags) and file name,
    # category, SKU and extra values (kept by upsert_assets).
    tags_text: Mapped[str] = mapped_column(Text)
    metadata_text: Mapped[str] = mapped_column(Text)
    # A person's review decision (`batches/{batch}/reviews.json`): approved, rejected, or "" while pending.
    review: Mapped[str] = mapped_column(index=True, server_default="")


class AssetVersion(Base):
    """One generation of an image (`batches/{batch}/versions.json`)."""

    __tablename__ = "asset_versions"
    __table_args__ = (UniqueConstraint("asset_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"))
    version: Mapped[int]
    seed: Mapped[int] = mapped_column(BigInteger)
    prompt: Mapped[str] = mapped_column(Text)
    style_score: Mapped[float | None]
    verdict: Mapped[str]
    reason: Mapped[str]  # initial, auto-regenerate, manual, rollback
    storage_key: Mapped[str]
    thumb_key: Mapped[str]
    created_at: Mapped[datetime]


class Tag(Base):
    """A tag of an asset; `group` is the tag's kind (colour, mood, composition, category, object, ...)."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("asset_id", "label", "group"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(index=True)
    group: Mapped[str]
    confidence: Mapped[float]
    source: Mapped[str]  # e.g. analysis, csv, manual


class StyleProfileVersion(Base):
    """A stored style profile version (`style-profiles/{name}/v{N}/profile.json`)."""

    __tablename__ = "style_profiles"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str]
    version: Mapped[int]
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Export(Base):
    """One exported file of a batch, by kind (zip, manifest, gallery, ...)."""

    __tablename__ = "exports"
    __table_args__ = (UniqueConstraint("batch_key", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_key: Mapped[str] = mapped_column(ForeignKey("batches.key", ondelete="CASCADE"))
    kind: Mapped[str]
    storage_key: Mapped[str]
    created_at: Mapped[datetime]


class CatalogChange(Base):
    """A counter per kind of change ("assets"), bumped by every write of that kind, so a reader can
    tell in one read whether anything changed since it last looked."""

    __tablename__ = "catalog_changes"

    name: Mapped[str] = mapped_column(primary_key=True)
    counter: Mapped[int] = mapped_column(BigInteger)


class CategoryOverride(Base):
    """A category set by hand. Not tied to `assets` by a foreign key, so re-cataloguing a batch
    (delete and upsert) keeps it."""

    __tablename__ = "category_overrides"

    asset_id: Mapped[str] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(index=True)  # a path, e.g. "weapons/swords"
    set_at: Mapped[datetime]


class AssetAlias(Base):
    """A file name an asset had before a rename (`batches/{batch}/names.json`), so that an old name
    still finds it; `raw_key` is where the file of that name stays. A name refers to one image of a
    batch, now or before."""

    __tablename__ = "asset_aliases"
    __table_args__ = (UniqueConstraint("batch_key", "file_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    batch_key: Mapped[str]
    file_name: Mapped[str] = mapped_column(index=True)
    raw_key: Mapped[str]


class Activity(Base):
    """One thing a person did in the asset library (reviewed, transferred, deleted, downloaded, ...),
    on a target: a batch key or an asset id. History, not an index of storage: kept in the catalog
    only, and not tied to the batches and assets it names, so it outlives them."""

    __tablename__ = "activity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    user: Mapped[str] = mapped_column(index=True)
    action: Mapped[str]
    target: Mapped[str] = mapped_column(index=True)
    detail: Mapped[str] = mapped_column(Text)


class Download(Base):
    """One download from the asset library: who took which asset or batch, in what form (original,
    compressed, zip, ...). Kept in the catalog only, like `Activity`."""

    __tablename__ = "downloads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    user: Mapped[str] = mapped_column(index=True)
    target: Mapped[str] = mapped_column(index=True)
    kind: Mapped[str]


# ---- plain entries the upserts take (dicts with the same keys work too) ----------------------

E = TypeVar("E")


def coerce_entry(cls: type[E], value: E | Mapping[str, Any]) -> E:
    """`value` as an instance of the entry dataclass `cls`; unknown or missing keys are errors."""
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        return cls(**value)
    raise TypeError(f"expected a {cls.__name__} or a mapping, got {type(value).__name__}")


def _score(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number or None, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class BatchEntry:
    key: str
    name: str = ""
    description: str = ""
    creator: str = ""
    status: str = "registered"
    images_planned: int = 0
    images_stored: int = 0
    images_failed: int = 0
    images_passed: int = 0
    images_review: int = 0
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    style_profile: str | None = None
    campaign: str | None = None
    registered_at: datetime | str | None = None  # None: now on first insert, kept after
    owner: str = ""


@dataclasses.dataclass(frozen=True)
class AssetEntry:
    image_id: str
    file_name: str
    current_version: int = 1
    raw_key: str = ""
    thumb_key: str = ""
    category: str = ""
    subcategory: str = ""
    category_source: str = "csv"
    style_score: float | None = None
    palette_score: float | None = None
    lighting_score: float | None = None
    composition_score: float | None = None
    texture_score: float | None = None
    embedding_score: float | None = None
    verdict: str = "unscored"
    width: int = 0
    height: int = 0
    file_size: int | None = None
    format: str = "png"
    prompt: str = ""
    negative_prompt: str = ""
    language: str = ""
    sku: str = ""
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    created_at: datetime | str | None = None  # None: now on first insert, kept after
    embedding: bytes | Sequence[float] | np.ndarray | None = None
    embedding_model: str | None = None
    review: str = ""  # approved, rejected, or "" while pending

    def metadata_text(self) -> str:
        """What full-text search finds besides prompt and tags."""
        parts = [self.image_id, self.file_name, self.category, self.subcategory, self.sku]
        parts += [str(v) for v in self.extra.values() if v is not None and str(v)]
        return " ".join(p for p in parts if p)

    def scores(self) -> dict[str, float | None]:
        names = ("style_score", *PARAMETER_SCORES)
        return {n: _score(getattr(self, n), n) for n in names}


@dataclasses.dataclass(frozen=True)
class VersionEntry:
    image_id: str
    version: int
    seed: int
    prompt: str = ""
    style_score: float | None = None
    verdict: str = "unscored"
    reason: str = "initial"
    storage_key: str = ""
    thumb_key: str = ""
    created_at: datetime | str | None = None  # None: now on first insert, kept after


@dataclasses.dataclass(frozen=True)
class AliasEntry:
    image_id: str
    file_name: str  # the old file name, e.g. "sword-01.png"
    raw_key: str = ""


@dataclasses.dataclass(frozen=True)
class ActivityEntry:
    user: str
    action: str  # e.g. review.approved, owner.transfer, batch.delete
    target: str  # a batch key or an asset id
    detail: str = ""
    at: datetime | str | None = None  # None: now


@dataclasses.dataclass(frozen=True)
class DownloadEntry:
    user: str
    target: str  # a batch key or an asset id
    kind: str  # e.g. original, compressed, zip
    at: datetime | str | None = None  # None: now


@dataclasses.dataclass(frozen=True)
class TagEntry:
    label: str
    group: str
    confidence: float = 1.0
    source: str = "analysis"

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError(f"tag label must be a non-empty string, got {self.label!r}")
        if not 0.0 <= float(self.confidence) <= 1.0:
            raise ValueError(f"tag confidence must be in [0, 1], got {self.confidence}")
