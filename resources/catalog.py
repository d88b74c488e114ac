"""The asset catalog: a SQL index of batches, images, versions, tags and exports, for search.

`AssetCatalog` is a Dagster resource over one SQLAlchemy URL: an SQLite file beside the local
storage by default (`sqlite:///data/catalog.sqlite3`), PostgreSQL in production
(`ASSETQL_CATALOG_URL`, e.g. `postgresql://user@host/assetql`). Storage stays the source of truth;
the catalog can always be rebuilt from it, so every write here is an idempotent upsert
(`INSERT ... ON CONFLICT DO UPDATE`) in one transaction per call, safe against concurrent writers.

Upsert rule: every column is overwritten by the newer upsert, except the key columns and a
`created_at`/`registered_at` left `None`, which keeps the stored time (now on first insert).

The schema comes from the Alembic migrations in `resources/catalog_migrations/` (`migrate()`),
including full-text search: an FTS5 index on SQLite, a generated `tsvector` column with a GIN index
on PostgreSQL, over prompt, tag labels and metadata (file name, category, SKU, extra values).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import numpy as np
from sqlalchemy import Connection, Engine, Table, bindparam, create_engine, delete, event, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from resources.catalog_models import (
    Activity,
    ActivityEntry,
    AliasEntry,
    Asset,
    AssetAlias,
    AssetEntry,
    AssetVersion,
    Base,
    Batch,
    BatchEntry,
    CatalogChange,
    CategoryOverride,
    Download,
    DownloadEntry,
    Export,
    StyleProfileVersion,
    Tag,
    TagEntry,
    VersionEntry,
    coerce_entry,
    embedding_from_bytes,
    embedding_to_bytes,
    to_utc,
)
from resources.catalog_search import (
    ASSET_CHANGES,
    MAX_TERMS,
    EmbeddingIndex,
    conditions,
    embedding_index,
    order_by,
    owned_by,
    unit_vector,
)

CATALOG_URL_ENV = "ASSETQL_CATALOG_URL"
CATALOG_FILE = "catalog.sqlite3"
DEFAULT_CATALOG_URL = f"sqlite:///data/{CATALOG_FILE}"
MIGRATIONS_DIR = Path(__file__).resolve().with_name("catalog_migrations")
DIALECTS = ("sqlite", "postgresql")
PG_DEFAULT_DRIVER = "postgresql+psycopg2"
SQLITE_BUSY_TIMEOUT_S = 30.0
# Similarity with filters: candidates checked per round (k × growth, then × growth again, ...), and
# where checking stops and the filter's ids are read instead.
POSTFILTER_GROWTH = 8
POSTFILTER_MAX = 4096
ANALYZE_CHANGE = 0.2  # statistics are taken again when the image count changed by more than this share
# Transient failures a write is retried on: PostgreSQL deadlock / serialization failure, a unique
# violation (ON CONFLICT arbitrates only the id, so a concurrent insert of the same image can trip the
# (batch, image) index first; the retry finds the row and updates it), and SQLite's lock when the
# busy timeout ran out.
RETRY_ATTEMPTS = 4
# Ids per IN (...) list: well under SQLite's variable limit, small enough for a quick plan.
IN_CHUNK = 500
RETRY_PGCODES = ("40P01", "40001", "23505")
# Entries one read of the activity log or download history returns at most.
HISTORY_MAX = 10_000
# One key to serialise concurrent `migrate()` calls on PostgreSQL (pg_advisory_xact_lock).
MIGRATION_LOCK_ID = 0x61737365_746C63  # "assetlc"

T = TypeVar("T")


def masked_url(url: str) -> str:
    """`url` with its password (if any) shown as ***, for logs and the UI."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: show nothing of it
        return "<unparsable catalog URL>"


def sqlite_url_beside(data_dir: str | os.PathLike[str]) -> str:
    """The default catalog URL for local storage rooted at `data_dir`: `{data_dir}/catalog.sqlite3`."""
    return f"sqlite:///{(Path(data_dir) / CATALOG_FILE).as_posix()}"


# ---- engines: one per process per URL ----------------------------------------------------------

_ENGINES: dict[tuple[int, str], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _reset_lock_after_fork() -> None:
    # A forked child must not inherit a lock held by another thread of its parent. The parent's
    # engines stay referenced (never closed here): closing inherited connections would close
    # the parent's sessions; the child's own engines are keyed by its pid.
    global _ENGINES_LOCK
    _ENGINES_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)


def engine_for(url: str) -> Engine:
    """The engine of `url` in this process, created on first use."""
    key = (os.getpid(), url)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = _create_engine(url)
    return engine


def dispose_engine(url: str) -> None:
    """Close this process's engine of `url` (if any); the next use creates a new one."""
    with _ENGINES_LOCK:
        engine = _ENGINES.pop((os.getpid(), url), None)
    if engine is not None:
        engine.dispose()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            raise ValueError(f"catalog URL {url!r} must name an SQLite file (an in-memory catalog is not shared)")
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            # A bare postgresql:// means psycopg2 (what dagster-postgres installs), not
            # SQLAlchemy 2.1's default psycopg 3; name `postgresql+psycopg://` to use that.
            parsed = parsed.set(drivername=PG_DEFAULT_DRIVER)
        # values_plus_batch: executemany UPDATEs (tag words of many assets) go in pages, not one
        # round trip per row.
        options = {"executemany_mode": "values_plus_batch"} if parsed.get_driver_name() == "psycopg2" else {}
        return create_engine(parsed, pool_pre_ping=True, **options)
    raise ValueError(f"catalog URL {parsed.render_as_string()!r}: the catalog supports {' and '.join(DIALECTS)}")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_begin): the driver's own transaction handling
    # would start write transactions lazily, which WAL turns into "database is locked" errors
    # that no busy timeout waits out when two writers race.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # Writers take the write lock up front (waiting up to the busy timeout); readers do not.
    write = connection.get_execution_options().get("catalog_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _is_transient(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "pgcode", None) in RETRY_PGCODES:
        return True
    return "database is locked" in str(exc.orig)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ---- the resource ------------------------------------------------------------------------------


class AssetCatalog(dg.ConfigurableResource):
    """The asset catalog at `url` (SQLAlchemy URL; bind `dg.EnvVar("ASSETQL_CATALOG_URL")` in production)."""

    url: str = DEFAULT_CATALOG_URL

    @property
    def engine(self) -> Engine:
        return engine_for(self.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- schema --

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to `revision` (default: the latest). Concurrent calls are safe."""
        self._alembic("upgrade", revision)

    def analyze(self) -> bool:
        """On SQLite, refresh the query planner's statistics when the number of images changed by more
        than a fifth since they were taken (as PostgreSQL's autovacuum does by itself); returns
        whether it did. Without statistics SQLite filters a category through the verdict index,
        reading a hundred times the rows. Called after a batch is catalogued."""
        if self.dialect != "sqlite":
            return False
        with self._transaction() as conn:
            count = conn.execute(select(func.count()).select_from(Asset)).scalar_one()
            stat = conn.execute(text(
                "SELECT stat FROM sqlite_stat1 WHERE tbl = 'assets' LIMIT 1")).scalar() if _has_stats(conn) else None
            counted = int(stat.split()[0]) if stat else 0
            if counted and abs(count - counted) <= counted * ANALYZE_CHANGE:
                return False
            # Whole tables, not `analysis_limit` samples: an index's first rows are one category.
            for table in ("assets", "tags", "asset_versions"):
                conn.exec_driver_sql(f"ANALYZE {table}")
            return True

    def downgrade(self, revision: str) -> None:
        """Downgrade the schema to `revision` (`base` removes every catalog table)."""
        self._alembic("downgrade", revision)

    def current_revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @staticmethod
    def head_revision() -> str:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        assert head is not None
        return head

    def _alembic(self, command_name: str, revision: str) -> None:
        from alembic import command

        config = _alembic_config()
        with self._transaction() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            config.attributes["connection"] = conn
            getattr(command, command_name)(config, revision)

    # -- writes --

    def upsert_batch(self, batch: BatchEntry | Mapping[str, Any]) -> None:
        """Insert or update one batch."""
        entry = coerce_entry(BatchEntry, batch)
        row = {
            "key": _required(entry.key, "batch key"),
            "name": entry.name,
            "description": entry.description,
            "creator": entry.creator,
            "status": entry.status,
            "images_planned": int(entry.images_planned),
            "images_stored": int(entry.images_stored),
            "images_failed": int(entry.images_failed),
            "images_passed": int(entry.images_passed),
            "images_review": int(entry.images_review),
            "settings": dict(entry.settings),
            "style_profile": entry.style_profile,
            "campaign": entry.campaign,
            "registered_at": to_utc(entry.registered_at),
            "updated_at": _now(),
            "owner": entry.owner,
        }
        self._write(lambda conn: _upsert(conn, Batch.__table__, [row], ("key",), ("registered_at",)))

    def upsert_assets(self, batch_key: str, rows: Iterable[AssetEntry | Mapping[str, Any]]) -> int:
        """Insert or update the images of batch `batch_key` (which must be catalogued); returns
        how many. The asset id is `{batch_key}/{image_id}`; tags are kept (see `replace_tags`)."""
        _required(batch_key, "batch key")
        now = _now()
        entries = _last_by(lambda e: e.image_id, (coerce_entry(AssetEntry, r) for r in rows))
        values = [_asset_row(batch_key, e, now) for e in entries]
        values.sort(key=lambda r: r["id"])
        def work(conn: Connection) -> None:
            _upsert(
                conn, Asset.__table__, values, ("id",), ("created_at",),
                # Derived from the id; left out of the update so PostgreSQL locks only "no key" rows.
                never_update=("batch_key", "image_id", "tags_text"),
            )
            bump_changes(conn, ASSET_CHANGES)

        self._write(work)
        return len(values)

    def upsert_versions(self, batch_key: str, rows: Iterable[VersionEntry | Mapping[str, Any]]) -> int:
        """Insert or update image versions of batch `batch_key` (their assets must be catalogued)."""
        _required(batch_key, "batch key")
        entries = _last_by(lambda e: (e.image_id, e.version), (coerce_entry(VersionEntry, r) for r in rows))
        values = [
            {
                "asset_id": asset_id(batch_key, e.image_id),
                "version": int(e.version),
                "seed": int(e.seed),
                "prompt": e.prompt,
                "style_score": None if e.style_score is None else float(e.style_score),
                "verdict": e.verdict,
                "reason": e.reason,
                "storage_key": e.storage_key,
                "thumb_key": e.thumb_key,
                "created_at": to_utc(e.created_at),
            }
            for e in entries
        ]
        values.sort(key=lambda r: (r["asset_id"], r["version"]))
        self._write(lambda conn: _upsert(conn, AssetVersion.__table__, values, ("asset_id", "version"), ("created_at",)))
        return len(values)

    def replace_tags(self, asset_id: str, tags: Iterable[TagEntry | Mapping[str, Any]]) -> int:
        """Make `tags` the tags of `asset_id`: upsert them, delete the others; returns how many."""
        return self.replace_tags_many({asset_id: tags})[asset_id]

    def replace_tags_many(self, tags_by_asset: Mapping[str, Iterable[TagEntry | Mapping[str, Any]]]) -> dict[str, int]:
        """`replace_tags` for several assets in one transaction."""
        prepared = {
            aid: _last_by(lambda t: (t.label, t.group), (coerce_entry(TagEntry, t) for t in tags))
            for aid, tags in tags_by_asset.items()
        }

        def work(conn: Connection) -> dict[str, int]:
            ids = sorted(prepared)  # one lock order for every writer
            for start in range(0, len(ids), IN_CHUNK):
                _replace_tags(conn, {aid: prepared[aid] for aid in ids[start:start + IN_CHUNK]})
            return {aid: len(tags) for aid, tags in prepared.items()}

        return self._write(work)

    def upsert_export(self, batch_key: str, kind: str, storage_key: str, *, created_at: datetime | str | None = None) -> None:
        """Insert or update the export file of `kind` of a batch."""
        self.upsert_exports(batch_key, {kind: storage_key}, created_at=created_at)

    def upsert_exports(self, batch_key: str, files: Mapping[str, str], *, created_at: datetime | str | None = None,
                       replace: bool = False) -> int:
        """`upsert_export` for every `kind: storage_key` of `files` (e.g. `ExportSummary.files`);
        with `replace`, the batch's other kinds are deleted (a package written again in fewer formats)."""
        _required(batch_key, "batch key")
        values = [
            {"batch_key": batch_key, "kind": _required(kind, "export kind"), "storage_key": key,
             "created_at": to_utc(created_at)}
            for kind, key in sorted(files.items())
        ]

        def work(conn: Connection) -> None:
            if replace:
                conn.execute(delete(Export).where(Export.batch_key == batch_key, Export.kind.not_in(list(files))))
            _upsert(conn, Export.__table__, values, ("batch_key", "kind"), ("created_at",))

        self._write(work)
        return len(values)

    def upsert_style_profile(self, name: str, version: int, spec: Mapping[str, Any], *,
                             created_at: datetime | str | None = None) -> None:
        """Insert or update one style profile version."""
        row = {"name": _required(name, "profile name"), "version": int(version), "spec": dict(spec),
               "created_at": to_utc(created_at)}
        self._write(lambda conn: _upsert(conn, StyleProfileVersion.__table__, [row], ("name", "version"), ("created_at",)))

    def set_category_override(self, asset_id: str, category: str, *, set_at: datetime | str | None = None) -> None:
        """Set (or replace) the hand-picked category path of an asset."""
        row = {"asset_id": _required(asset_id, "asset id"), "category": category,
               "set_at": to_utc(set_at) or _now()}
        self._write(lambda conn: _upsert(conn, CategoryOverride.__table__, [row], ("asset_id",)))

    def replace_category_overrides(self, batch_key: str, overrides: Mapping[str, tuple[str, datetime | str]]) -> int:
        """Make `overrides` ({image_id: (category path, set_at)}) the hand-set categories of batch
        `batch_key`'s assets, as its storage holds them: upsert them, delete the batch's others."""
        _required(batch_key, "batch key")
        values = [
            {"asset_id": asset_id(batch_key, image_id), "category": _required(category, "category path"),
             "set_at": to_utc(set_at)}
            for image_id, (category, set_at) in sorted(overrides.items())
        ]

        def work(conn: Connection) -> int:
            keep = {v["asset_id"] for v in values}
            # autoescape: '_' in a batch key is a LIKE wildcard otherwise.
            ids = conn.execute(select(CategoryOverride.asset_id).where(
                CategoryOverride.asset_id.startswith(f"{batch_key}/", autoescape=True))).scalars()
            stale = [aid for aid in ids if aid not in keep]
            if stale:
                conn.execute(delete(CategoryOverride).where(CategoryOverride.asset_id.in_(stale)))
            _upsert(conn, CategoryOverride.__table__, values, ("asset_id",))
            return len(values)

        return self._write(work)

    def set_reviews(self, decisions: Mapping[str, str]) -> int:
        """Set the review column of catalogued assets ({asset id: approved, rejected or "" for
        pending}); returns how many rows there were to set (assets not catalogued are left out)."""
        wanted = {_required(aid, "asset id"): review for aid, review in decisions.items()}
        ids = sorted(wanted)  # one lock order for every writer

        def work(conn: Connection) -> int:
            # The driver's row count of an executemany is not reliable (psycopg2's batches), so
            # the catalogued ones are read first.
            found = [aid for i in range(0, len(ids), IN_CHUNK)
                     for aid in conn.execute(select(Asset.id).where(Asset.id.in_(ids[i:i + IN_CHUNK]))).scalars()]
            if found:
                # Only the decision changes: no embedding moved, so no change counter is bumped.
                conn.execute(update(Asset).where(Asset.id == bindparam("aid")).values(review=bindparam("review"))
                             .execution_options(synchronize_session=False),
                             [{"aid": aid, "review": wanted[aid]} for aid in sorted(found)])
            return len(found)

        return self._write(work) if ids else 0

    def set_batch_owner(self, batch_key: str, owner: str) -> bool:
        """Set a catalogued batch's owner; False when the batch is not catalogued."""
        stmt = update(Batch).where(Batch.key == _required(batch_key, "batch key")).values(
            owner=_required(owner, "owner"), updated_at=_now())
        return self._write(lambda conn: conn.execute(stmt).rowcount > 0)

    def add_activity(self, entries: Iterable[ActivityEntry | Mapping[str, Any]]) -> int:
        """Append entries to the activity log (`at` None: now); returns how many."""
        now = _now()
        values = [
            {"at": to_utc(e.at) or now, "user": _required(e.user, "user"), "action": _required(e.action, "action"),
             "target": _required(e.target, "activity target"), "detail": e.detail}
            for e in (coerce_entry(ActivityEntry, entry) for entry in entries)
        ]
        if values:
            self._write(lambda conn: conn.execute(Activity.__table__.insert(), values))
        return len(values)

    def add_download(self, entry: DownloadEntry | Mapping[str, Any]) -> None:
        """Record one download (`at` None: now)."""
        e = coerce_entry(DownloadEntry, entry)
        row = {"at": to_utc(e.at) or _now(), "user": _required(e.user, "user"),
               "target": _required(e.target, "download target"), "kind": _required(e.kind, "download kind")}
        self._write(lambda conn: conn.execute(Download.__table__.insert(), [row]))

    def activity(self, *, target: str | None = None, user: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The activity log, newest first: of `target` (a batch key takes in its assets' entries,
        `{batch}/...`) and/or of `user`, at most `limit` entries."""
        stmt = select(Activity.__table__)
        if target is not None:
            stmt = stmt.where(_target_or_below(Activity.target, target))
        if user is not None:
            stmt = stmt.where(Activity.user == user)
        return self._history(stmt.order_by(Activity.at.desc(), Activity.id.desc()), limit)

    def downloads(self, *, user: str | None = None, target: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The download history, newest first: of `user` and/or `target` (a batch key takes in its
        assets), at most `limit` entries."""
        stmt = select(Download.__table__)
        if user is not None:
            stmt = stmt.where(Download.user == user)
        if target is not None:
            stmt = stmt.where(_target_or_below(Download.target, target))
        return self._history(stmt.order_by(Download.at.desc(), Download.id.desc()), limit)

    def _history(self, stmt: Any, limit: int) -> list[dict[str, Any]]:
        if not isinstance(limit, int) or not 1 <= limit <= HISTORY_MAX:
            raise ValueError(f"limit must be a whole number from 1 to {HISTORY_MAX}, got {limit!r}")
        with self._read() as conn:
            return [dict(row) for row in conn.execute(stmt.limit(limit)).mappings()]

    def delete_batch(self, batch_key: str) -> bool:
        """Remove a batch with its assets, versions, tags and exports (category overrides stay)."""
        def work(conn: Connection) -> bool:
            bump_changes(conn, ASSET_CHANGES)
            return conn.execute(delete(Batch).where(Batch.key == batch_key)).rowcount > 0

        return self._write(work)

    def delete_assets_except(self, batch_key: str, image_ids: Iterable[str]) -> int:
        """Remove the assets of `batch_key` whose image id is not in `image_ids` (with their
        versions and tags), so re-cataloguing drops images storage no longer holds; returns how many."""
        keep = set(image_ids)

        def work(conn: Connection) -> int:
            stale = [i for i in conn.execute(select(Asset.image_id).where(Asset.batch_key == batch_key)).scalars()
                     if i not in keep]
            for chunk in range(0, len(stale), IN_CHUNK):
                conn.execute(delete(Asset).where(Asset.batch_key == batch_key,
                                                 Asset.image_id.in_(stale[chunk:chunk + IN_CHUNK])))
            if stale:
                bump_changes(conn, ASSET_CHANGES)
            return len(stale)

        return self._write(work)

    def replace_aliases(self, batch_key: str, aliases: Iterable[AliasEntry | Mapping[str, Any]]) -> int:
        """Make `aliases` the old file names of batch `batch_key`'s assets (which must be catalogued):
        upsert them, delete the batch's others; returns how many."""
        _required(batch_key, "batch key")
        entries = _last_by(lambda e: e.file_name, (coerce_entry(AliasEntry, a) for a in aliases))
        values = sorted((
            {"asset_id": asset_id(batch_key, e.image_id), "batch_key": batch_key,
             "file_name": _required(e.file_name, "alias file name"), "raw_key": e.raw_key}
            for e in entries
        ), key=lambda r: r["file_name"])

        def work(conn: Connection) -> int:
            keep = {v["file_name"] for v in values}
            stale = [alias_id for alias_id, name in conn.execute(
                select(AssetAlias.id, AssetAlias.file_name).where(AssetAlias.batch_key == batch_key)) if name not in keep]
            for chunk in range(0, len(stale), 500):
                conn.execute(delete(AssetAlias).where(AssetAlias.id.in_(stale[chunk:chunk + 500])))
            _upsert(conn, AssetAlias.__table__, values, ("batch_key", "file_name"))
            return len(values)

        return self._write(work)

    # -- reads --

    def get_asset(self, asset_id: str) -> dict[str, Any] | None:
        """One asset row as a dict (embedding as float32 bytes; `embedding_from_bytes` decodes it)."""
        with self._read() as conn:
            row = conn.execute(select(Asset.__table__).where(Asset.id == asset_id)).mappings().first()
        return None if row is None else dict(row)

    def list_batches(self, *, limit: int = 100, offset: int = 0, owner: str | None = None) -> list[dict[str, Any]]:
        """Batches, most recently registered first (ties by key), each its row as a dict; only those
        `owner` owns when given."""
        stmt = select(Batch.__table__).order_by(Batch.registered_at.desc(), Batch.key)
        if owner is not None:
            stmt = stmt.where(owned_by(owner))
        with self._read() as conn:
            return [dict(r) for r in conn.execute(stmt.limit(int(limit)).offset(int(offset))).mappings()]

    def get_batch(self, batch_key: str) -> dict[str, Any] | None:
        """One batch row as a dict."""
        with self._read() as conn:
            row = conn.execute(select(Batch.__table__).where(Batch.key == batch_key)).mappings().first()
        return None if row is None else dict(row)

    def asset_tags(self, asset_id: str) -> list[dict[str, Any]]:
        """An asset's tags (label, group, confidence, source), most confident first."""
        stmt = (select(Tag.label, Tag.group, Tag.confidence, Tag.source).where(Tag.asset_id == asset_id)
                .order_by(Tag.confidence.desc(), Tag.label, Tag.group))
        with self._read() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def asset_versions(self, asset_id: str) -> list[dict[str, Any]]:
        """An asset's versions, oldest first."""
        columns = [c for c in AssetVersion.__table__.c if c.name not in ("id", "asset_id")]
        stmt = select(*columns).where(AssetVersion.asset_id == asset_id).order_by(AssetVersion.version)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def batch_exports(self, batch_key: str) -> dict[str, str]:
        """The export files of a batch: kind → storage key."""
        stmt = select(Export.kind, Export.storage_key).where(Export.batch_key == batch_key).order_by(Export.kind)
        with self._read() as conn:
            return dict(conn.execute(stmt).all())

    def batch_facets(self, batch_key: str | None = None) -> dict[str, list[str]]:
        """The category paths and tag labels present (in one batch, or everywhere), sorted: what a
        filter form offers to pick from."""
        categories = select(Asset.category, Asset.subcategory).where(Asset.category != "").distinct()
        labels = select(Tag.label).distinct()
        if batch_key is not None:
            categories = categories.where(Asset.batch_key == batch_key)
            labels = labels.join(Asset, Asset.id == Tag.asset_id).where(Asset.batch_key == batch_key)
        with self._read() as conn:
            found = conn.execute(categories).all()
            # Each primary on its own too: a filter by `weapon` takes every weapon subcategory.
            paths = {c for c, _ in found} | {f"{c}/{s}" for c, s in found if s}
            return {"categories": sorted(paths), "tags": sorted(conn.execute(labels).scalars())}

    def known_file(self, key: str) -> bool:
        """Whether storage key `key` is a file the catalog lists: an image or thumbnail (now, of a
        version, or under an old name) or an export. The key's second part names its batch
        (`raw/{batch}/…`, `versions/{batch}/…`, `exports/{batch}/…`), which narrows each lookup to an index."""
        parts = key.split("/")
        if len(parts) < 3:
            return False
        batch = parts[1]
        prefix = f"{batch}/"
        checks = [
            select(Asset.id).where(Asset.batch_key == batch, (Asset.raw_key == key) | (Asset.thumb_key == key)),
            # Version ids start with "{batch}/": a range on the (asset_id, version) index.
            select(AssetVersion.id).where(
                AssetVersion.asset_id >= prefix, AssetVersion.asset_id < f"{batch}0",
                (AssetVersion.storage_key == key) | (AssetVersion.thumb_key == key)),
            select(AssetAlias.id).where(AssetAlias.batch_key == batch, AssetAlias.raw_key == key),
            select(Export.id).where(Export.batch_key == batch, Export.storage_key == key),
        ]
        with self._read() as conn:
            return any(conn.execute(check.limit(1)).first() is not None for check in checks)

    def resolve_file_name(self, file_name: str, *, batch: str | None = None) -> list[str]:
        """Ids of the assets called `file_name` (e.g. "sword-01.png"), in `batch` or any batch: those
        with that name now first, then those that had it before a rename (an alias); each by id."""
        now = select(Asset.id).where(Asset.file_name == file_name).order_by(Asset.id)
        before = select(AssetAlias.asset_id).where(AssetAlias.file_name == file_name).order_by(AssetAlias.asset_id)
        if batch is not None:
            now, before = now.where(Asset.batch_key == batch), before.where(AssetAlias.batch_key == batch)
        with self._read() as conn:
            found = [*conn.execute(now).scalars(), *conn.execute(before).scalars()]
        return list(dict.fromkeys(found))

    def row_counts(self) -> dict[str, int]:
        """Rows per catalog table."""
        with self._read() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in Base.metadata.sorted_tables}

    def search_ids(self, query: str, *, batch_key: str | None = None, limit: int = 50) -> list[str]:
        """Ids of the assets whose prompt, tags or metadata hold every word of `query`, best first.

        Words are letters and digits (punctuation separates them, so "SKU-42" is sku and 42),
        matched whole, without stemming and case-insensitively, the same on both dialects
        (PostgreSQL folds non-ASCII case by the database's LC_CTYPE).
        """
        words = _words(query)
        if not words:
            return []
        params: dict[str, Any] = {"limit": int(limit), "batch": batch_key}
        if self.dialect == "sqlite":
            params["q"] = " ".join(f'"{w}"' for w in words)
            sql = (
                "SELECT s.asset_id FROM assets_fts JOIN assets_search AS s ON s.id = assets_fts.rowid"
                + (" JOIN assets AS a ON a.id = s.asset_id" if batch_key is not None else "")
                + " WHERE assets_fts MATCH :q"
                + (" AND a.batch_key = :batch" if batch_key is not None else "")
                + " ORDER BY bm25(assets_fts, 3.0, 2.0, 1.0), s.asset_id LIMIT :limit"
            )
        else:
            params["q"] = " ".join(words)
            sql = (
                "SELECT id FROM assets, plainto_tsquery('simple', :q) AS q WHERE search_vector @@ q"
                + (" AND batch_key = :batch" if batch_key is not None else "")
                + " ORDER BY ts_rank(search_vector, q) DESC, id LIMIT :limit"
            )
        with self._read() as conn:
            return list(conn.execute(text(sql), params).scalars())

    def search(self, query: str | None = None, *, sort: str = "score", reverse: bool = False,
               like: Sequence[float] | np.ndarray | None = None, like_model: str | None = None,
               exclude: str | None = None, limit: int = 50, offset: int = 0, **filters: Any) -> list[dict[str, Any]]:
        """Assets matching `query` and every filter given, in `sort` order or by similarity to `like`.

        `query` is full text (every word in the prompt, tags or metadata, as in `search_ids`);
        `filters` are the keywords of `catalog_search.FILTERS` (batch, category, tag, any_tag,
        verdict, language, style_profile, campaign, since, until, min/max_score, min/max_width,
        min/max_height, min/max_file_size, file_format, review). `sort` is a key of `SORTS` (score, date, name,
        category), `reverse` flips it. With `like` (a CLIP embedding of model `like_model`) results
        are the most similar images of that model instead, best first, each with its `similarity`
        (cosine); `exclude` leaves one asset id out (the one the query came from).

        Each result is the asset's row without its embedding, plus `tags` (its tag labels, sorted).
        """
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must not be negative, got {limit} and {offset}")
        where = conditions(filters)
        if query is not None and query.strip():
            words = _words(query)
            if not words:
                return []
            where.append(self._text_match(words))
        columns = [c for c in Asset.__table__.c if c.name not in ("embedding", "tags_text", "metadata_text")]
        with self._read() as conn:
            if like is None:
                stmt = select(*columns).where(*where).order_by(*order_by(sort, reverse))
                rows = [dict(r) for r in conn.execute(stmt.limit(int(limit)).offset(int(offset))).mappings()]
            else:
                if not like_model:
                    raise ValueError("a similarity search needs `like_model`, the model of the `like` embedding")
                index = embedding_index(self.url, like_model)
                with index.lock:
                    index.refresh(conn)
                    ranked = _nearest(conn, index, unit_vector(like), offset + limit, where, exclude)[offset:]
                found = {r["id"]: dict(r) for r in conn.execute(
                    select(*columns).where(Asset.id.in_([aid for aid, _ in ranked]))).mappings()}
                rows = [{**found[aid], "similarity": round(sim, 6)} for aid, sim in ranked if aid in found]
            tags = self._tag_labels(conn, [r["id"] for r in rows])
        for row in rows:
            row["tags"] = tags[row["id"]]
        return rows

    def embedding(self, asset_id: str) -> tuple[np.ndarray, str] | None:
        """An asset's stored CLIP embedding and the model it comes from (None when it has none)."""
        with self._read() as conn:
            row = conn.execute(select(Asset.embedding, Asset.embedding_model).where(Asset.id == asset_id)).first()
        if row is None or row.embedding is None or not row.embedding_model:
            return None
        return embedding_from_bytes(row.embedding), row.embedding_model

    def embedding_models(self) -> dict[str, int]:
        """How many catalogued images have embeddings of each model."""
        with self._read() as conn:
            return dict(conn.execute(
                select(Asset.embedding_model, func.count()).where(Asset.embedding_model.is_not(None))
                .group_by(Asset.embedding_model)).all())

    def _text_match(self, words: list[str]) -> Any:
        if self.dialect == "sqlite":
            return text(
                "assets.id IN (SELECT s.asset_id FROM assets_fts JOIN assets_search AS s "
                "ON s.id = assets_fts.rowid WHERE assets_fts MATCH :q)"
            ).bindparams(q=" ".join(f'"{w}"' for w in words))
        return text("assets.search_vector @@ plainto_tsquery('simple', :q)").bindparams(q=" ".join(words))

    @staticmethod
    def _tag_labels(conn: Connection, ids: list[str]) -> dict[str, list[str]]:
        tags: dict[str, list[str]] = {i: [] for i in ids}
        for chunk in range(0, len(ids), IN_CHUNK):
            for aid, label in conn.execute(
                    select(Tag.asset_id, Tag.label).where(Tag.asset_id.in_(ids[chunk:chunk + IN_CHUNK]))
                    .order_by(Tag.asset_id, Tag.label)):
                if label not in tags[aid]:
                    tags[aid].append(label)
        return tags

    # -- transactions --

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(catalog_write=True)
            with conn.begin():
                yield conn

    def _write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one write transaction, again (from the start) after a transient failure."""
        for attempt in range(RETRY_ATTEMPTS):
            try:
                with self._transaction() as conn:
                    return work(conn)
            except DBAPIError as exc:
                if attempt + 1 == RETRY_ATTEMPTS or not _is_transient(exc):
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")


# ---- helpers -----------------------------------------------------------------------------------


def asset_id(batch_key: str, image_id: str) -> str:
    """The catalog id of an image: `{batch}/{image_id}`."""
    return f"{_required(batch_key, 'batch key')}/{_required(image_id, 'image id')}"


def _target_or_below(column: Any, target: str) -> Any:
    # autoescape: '_' in a batch key is a LIKE wildcard otherwise.
    return column.startswith(f"{_required(target, 'target')}/", autoescape=True) | (column == target)


def _has_stats(conn: Connection) -> bool:
    return conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first() is not None


def _words(query: str) -> list[str]:
    # Letters and digits; the first MAX_TERMS bound the query a command line can build.
    return re.findall(r"[^\W_]+", query.lower())[:MAX_TERMS]


def _required(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


K = TypeVar("K")
V = TypeVar("V")


def _last_by(key: Callable[[V], K], items: Iterable[V]) -> list[V]:
    """`items` with one per key, the last given winning (one statement cannot update a row twice)."""
    return list({key(item): item for item in items}.values())


def _asset_row(batch_key: str, entry: AssetEntry, now: datetime) -> dict[str, Any]:
    return {
        "id": asset_id(batch_key, entry.image_id),
        "batch_key": batch_key,
        "image_id": entry.image_id,
        "file_name": entry.file_name,
        "current_version": int(entry.current_version),
        "raw_key": entry.raw_key,
        "thumb_key": entry.thumb_key,
        "category": entry.category,
        "subcategory": entry.subcategory,
        "category_source": entry.category_source,
        **entry.scores(),
        "verdict": entry.verdict,
        "width": int(entry.width),
        "height": int(entry.height),
        "file_size": None if entry.file_size is None else int(entry.file_size),
        "format": entry.format,
        "prompt": entry.prompt,
        "negative_prompt": entry.negative_prompt,
        "language": entry.language,
        "sku": entry.sku,
        "extra": dict(entry.extra),
        "created_at": to_utc(entry.created_at),
        "updated_at": now,
        "embedding": None if entry.embedding is None else embedding_to_bytes(entry.embedding),
        "embedding_model": entry.embedding_model if entry.embedding is not None else None,
        "tags_text": "",
        "metadata_text": entry.metadata_text(),
        "review": entry.review,
    }


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"the catalog supports {' and '.join(DIALECTS)}, not {conn.dialect.name}")


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: tuple[str, ...],
            kept_when_none: tuple[str, ...] = (), never_update: tuple[str, ...] = ()) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE of `rows` (all with the same columns, in a fixed
    order so concurrent writers lock rows in the same order).

    A column of `kept_when_none` that is None in a row is filled with now on insert and left
    as stored on update; `never_update` columns are written on insert only.
    """
    if not rows:
        return
    now = _now()
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        missing = tuple(c for c in kept_when_none if row[c] is None)
        groups.setdefault(missing, []).append({**row, **{c: now for c in missing}})
    for missing, group in groups.items():
        stmt = _insert(conn, table)
        skip = set(keys) | set(missing) | set(never_update) | {c.name for c in table.primary_key}
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={c: stmt.excluded[c] for c in group[0] if c not in skip},
        )
        conn.execute(stmt, group)


def _nearest(conn: Connection, index: EmbeddingIndex, query: np.ndarray, k: int, where: list[Any],
             exclude: str | None) -> list[tuple[str, float]]:
    """The `k` images nearest `query` that meet every condition of `where`.

    Filters are checked on the nearest candidates first, widening by POSTFILTER_GROWTH while too few
    pass; a selective filter (under one candidate in POSTFILTER_MAX passes) gets its matching ids
    from the database instead and ranks only those. Reading a broad filter's ids (a category: an
    eighth of the catalog) costs more than the ranking itself.
    """
    if not where:
        return index.top(query, k, None, exclude)
    wanted, ranked = k * POSTFILTER_GROWTH, index.ranking(query, None, exclude)
    while wanted <= POSTFILTER_MAX:
        near = ranked(wanted)
        ids = [aid for aid, _ in near]
        passed = {aid for start in range(0, len(ids), IN_CHUNK) for aid in conn.execute(
            select(Asset.id).where(Asset.id.in_(ids[start:start + IN_CHUNK]), *where)).scalars()}
        if len([aid for aid in ids if aid in passed]) >= k or len(near) < wanted:
            return [(aid, sim) for aid, sim in near if aid in passed][:k]
        wanted *= POSTFILTER_GROWTH
    allowed = set(conn.execute(select(Asset.id).where(*where)).scalars())
    return index.top(query, k, allowed, exclude)


def bump_changes(conn: Connection, name: str) -> None:
    """Count one more change of kind `name` (see `CatalogChange`), in the writer's transaction."""
    stmt = _insert(conn, CatalogChange.__table__).values(name=name, counter=1)
    conn.execute(stmt.on_conflict_do_update(index_elements=["name"],
                                            set_={"counter": CatalogChange.__table__.c.counter + 1}))


def _replace_tags(conn: Connection, tags_by_asset: dict[str, list[TagEntry]]) -> None:
    """Make these the tags of each asset, a few statements for all of them (ids sorted, at most IN_CHUNK)."""
    ids = list(tags_by_asset)
    # Lock the asset rows first: two concurrent replacements of the same asset then run one after
    # the other, so the later one's set wins whole (SQLite writers are serial anyway).
    locked = set(conn.execute(
        select(Asset.id).where(Asset.id.in_(ids)).order_by(Asset.id).with_for_update(key_share=True)).scalars())
    missing = [aid for aid in ids if aid not in locked]
    if missing:
        raise LookupError(f"asset {missing[0]!r} is not in the catalog: upsert it before its tags")
    wanted = {(aid, t.label, t.group) for aid, tags in tags_by_asset.items() for t in tags}
    stale = [tag_id for tag_id, aid, label, group in conn.execute(
        select(Tag.id, Tag.asset_id, Tag.label, Tag.group).where(Tag.asset_id.in_(ids)))
        if (aid, label, group) not in wanted]
    if stale:
        conn.execute(delete(Tag).where(Tag.id.in_(stale)))
    _upsert(conn, Tag.__table__, [
        {"asset_id": aid, "label": t.label, "group": t.group, "confidence": float(t.confidence), "source": t.source}
        for aid in ids for t in sorted(tags_by_asset[aid], key=lambda t: (t.label, t.group))
    ], ("asset_id", "label", "group"))
    # The tags' words become searchable with the asset (FTS trigger / generated column).
    conn.execute(
        update(Asset).where(Asset.id == bindparam("aid")).values(tags_text=bindparam("words"))
        .execution_options(synchronize_session=False),
        [{"aid": aid, "words": " ".join(t.label for t in tags_by_asset[aid])} for aid in ids],
    )


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config
