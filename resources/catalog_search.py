"""What catalog search can filter and sort by (one table each), and the in-process similarity index.

`FILTERS` is the one description of every search filter: its keyword in `AssetCatalog.search`, its
`assetql search` option, how text from the command line becomes its value, and the SQL condition it
adds. `SORTS` does the same for orders.

Visual similarity ranks by cosine between unit CLIP embeddings. The catalog stores them as float32
blobs (the same on SQLite and PostgreSQL, so no pgvector); `EmbeddingIndex` keeps each model's
vectors as one numpy matrix per process and refreshes it from the catalog when rows change. Exact
brute force was chosen by measurement (`bench/bench_catalog.py`, docs/benchmarks.md): at 100,000
images it answers a top-20 query in a few milliseconds, needs no build step, is never approximate,
and takes any filtered subset as a mask.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, exists, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from resources.catalog_models import Asset, Batch, CatalogChange, Tag, to_utc

# The change counter (`CatalogChange`) every write of images bumps.
ASSET_CHANGES = "assets"
MAX_TERMS = 20  # tags per filter, words per query: bounds the SQL a command line can build
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str) -> int:
    """Bytes from "2048", "500KB", "1.5MB" or "2MiB"."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"file size {str(text)[:40]!r} is not a size such as 2048, 500KB, 1.5MB or 2MiB")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])


def parse_day(text: str | date | datetime) -> datetime:
    """An aware UTC datetime from a date ("2026-11-26") or an ISO 8601 time."""
    if isinstance(text, datetime):
        return to_utc(text)
    if isinstance(text, date):
        return datetime.combine(text, time(), timezone.utc)
    try:
        return to_utc(datetime.fromisoformat(str(text)))
    except ValueError:
        raise ValueError(f"date {str(text)[:40]!r} is not a date (2026-11-26) or ISO 8601 time") from None


def _until(value: str | date | datetime) -> datetime:
    # A bare date means "up to the end of that day"; a time means that instant.
    moment = parse_day(value)
    bare = isinstance(value, date) and not isinstance(value, datetime) or len(str(value)) == 10
    return moment + timedelta(days=1) if bare else moment


def _category(path: str) -> ColumnElement[bool]:
    primary, _, sub = str(path).strip().strip("/").partition("/")
    if not primary:
        raise ValueError(f"category {path!r} must be a path such as weapon or weapon/sword")
    return and_(Asset.category == primary, Asset.subcategory == sub) if sub else Asset.category == primary


def _terms(values: str | Iterable[str]) -> list[str]:
    terms = [values] if isinstance(values, str) else list(values)
    if len(terms) > MAX_TERMS:
        raise ValueError(f"at most {MAX_TERMS} tags per filter, got {len(terms)}")
    return [str(t) for t in terms]


def _all_tags(labels: str | Iterable[str]) -> ColumnElement[bool]:
    return and_(*(exists().where(Tag.asset_id == Asset.id, Tag.label == label) for label in _terms(labels)))


def _any_tag(labels: str | Iterable[str]) -> ColumnElement[bool]:
    return exists().where(Tag.asset_id == Asset.id, Tag.label.in_(_terms(labels)))


REVIEWS = ("approved", "rejected", "pending")


def _review(value: str) -> ColumnElement[bool]:
    if value not in REVIEWS:
        raise ValueError(f"review {str(value)[:40]!r} is not one of {', '.join(REVIEWS)}")
    # Pending: nobody decided yet, stored as "".
    return Asset.review == ("" if value == "pending" else value)


def _batch_column(column: Any) -> Callable[[str], ColumnElement[bool]]:
    return lambda value: Asset.batch_key.in_(select(Batch.key).where(column == value))


def owned_by(user: str) -> ColumnElement[bool]:
    """Batches `user` owns: a batch catalogued before it had an owner ("") is its creator's, as the
    asset library shows it."""
    return or_(Batch.owner == user, and_(Batch.owner == "", Batch.creator == user))


def _owner(user: str) -> ColumnElement[bool]:
    return Asset.batch_key.in_(select(Batch.key).where(owned_by(user)))


@dataclasses.dataclass(frozen=True)
class Filter:
    """One search filter: `name` is its keyword and, with - for _, its command-line option."""

    name: str
    help: str
    where: Callable[[Any], ColumnElement[bool]]
    parse: Callable[[str], Any] = str
    metavar: str | None = None
    repeatable: bool = False  # the option may be given several times; the value is a list

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


FILTERS: tuple[Filter, ...] = (
    Filter("batch", "only this batch (partition key)", lambda v: Asset.batch_key == v, metavar="KEY"),
    Filter("category", "only this category: a primary (weapon) or primary/sub (weapon/sword)", _category,
           metavar="PATH"),
    Filter("tag", "only images with this tag; repeat it: images with every one", _all_tags, metavar="LABEL",
           repeatable=True),
    Filter("any_tag", "only images with at least one of these tags (repeatable)", _any_tag, metavar="LABEL",
           repeatable=True),
    Filter("verdict", "only images with this verdict: pass, review or unscored", lambda v: Asset.verdict == v),
    Filter("language", "only images of rows in this language (the CSV's language column)",
           lambda v: Asset.language == v, metavar="CODE"),
    Filter("style_profile", "only batches made with this style profile, e.g. brand-x@2",
           _batch_column(Batch.style_profile), metavar="PROFILE"),
    Filter("campaign", "only batches of this campaign", _batch_column(Batch.campaign), metavar="NAME"),
    Filter("owner", "only batches this person owns (their creator until an admin transferred them)", _owner,
           metavar="USER"),
    Filter("creator", "only batches this person (or process) registered", _batch_column(Batch.creator),
           metavar="USER"),
    Filter("since", "only images created on or after this date (2026-11-01) or time",
           lambda v: Asset.created_at >= parse_day(v), metavar="DATE"),
    Filter("until", "only images created up to this date (inclusive) or time",
           lambda v: Asset.created_at < _until(v), metavar="DATE"),
    Filter("min_score", "only images whose style score is at least this", lambda v: Asset.style_score >= v,
           parse=float, metavar="SCORE"),
    Filter("max_score", "only images whose style score is at most this", lambda v: Asset.style_score <= v,
           parse=float, metavar="SCORE"),
    Filter("min_width", "only images at least this many pixels wide", lambda v: Asset.width >= v, parse=int,
           metavar="PX"),
    Filter("max_width", "only images at most this many pixels wide", lambda v: Asset.width <= v, parse=int,
           metavar="PX"),
    Filter("min_height", "only images at least this many pixels high", lambda v: Asset.height >= v, parse=int,
           metavar="PX"),
    Filter("max_height", "only images at most this many pixels high", lambda v: Asset.height <= v, parse=int,
           metavar="PX"),
    Filter("min_file_size", "only files of at least this size: 2048, 500KB, 1.5MB",
           lambda v: Asset.file_size >= parse_size(v), metavar="SIZE"),
    Filter("max_file_size", "only files of at most this size: 2048, 500KB, 1.5MB",
           lambda v: Asset.file_size <= parse_size(v), metavar="SIZE"),
    Filter("file_format", "only files of this format: png, jpeg, ...", lambda v: Asset.format == v, metavar="FORMAT"),
    Filter("review", "only images with this review decision: approved, rejected or pending (not decided yet)",
           _review, metavar="DECISION"),
)
FILTERS_BY_NAME = {f.name: f for f in FILTERS}


def conditions(filters: dict[str, Any]) -> list[ColumnElement[bool]]:
    """The SQL conditions of `filters` (keyword → value; None and empty lists are no filter)."""
    unknown = sorted(set(filters) - set(FILTERS_BY_NAME))
    if unknown:
        raise TypeError(f"unknown search filter(s) {unknown}; the filters are {sorted(FILTERS_BY_NAME)}")
    return [
        FILTERS_BY_NAME[name].where(value)
        for name, value in filters.items()
        if value is not None and not (isinstance(value, (list, tuple)) and not value)
    ]


@dataclasses.dataclass(frozen=True)
class Sort:
    name: str
    help: str
    columns: Callable[[bool], list[Any]]  # ORDER BY terms, given "descending"
    descending: bool  # the natural direction


def _direction(column: Any, descending: bool) -> Any:
    return column.desc() if descending else column.asc()


SORTS: dict[str, Sort] = {s.name: s for s in (
    # Unscored images last whichever way scores run.
    Sort("score", "best style score first", lambda d: [Asset.style_score.is_(None), _direction(Asset.style_score, d)],
         True),
    Sort("date", "newest first", lambda d: [_direction(Asset.created_at, d)], True),
    Sort("name", "file name, A to Z", lambda d: [_direction(Asset.file_name, d)], False),
    Sort("category", "category, subcategory, then file name",
         lambda d: [_direction(Asset.category, d), _direction(Asset.subcategory, d), _direction(Asset.file_name, d)],
         False),
)}


def order_by(sort: str, reverse: bool = False) -> list[Any]:
    """ORDER BY terms of sort `sort` (see SORTS), flipped by `reverse`; ties go by id."""
    if sort not in SORTS:
        raise ValueError(f"sort {sort!r} is not one of {sorted(SORTS)}")
    spec = SORTS[sort]
    return [*spec.columns(spec.descending != reverse), Asset.id]


# ---- similarity -----------------------------------------------------------------------------


def unit_vector(values: Sequence[float] | np.ndarray, what: str = "query embedding") -> np.ndarray:
    """`values` as a float32 vector of length 1."""
    vector = np.asarray(values, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if vector.size == 0 or not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f"{what} must be a non-zero vector of finite numbers")
    return vector / norm


class EmbeddingIndex:
    """The unit embeddings of one model's catalogued images as a matrix, kept current by `refresh`."""

    def __init__(self, model: str):
        self.model = model
        self.ids: list[str] = []
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self._positions: dict[str, int] = {}
        self._stamp: tuple[int, Any] | None = None
        self._changes: int | None = None  # the catalog's image change counter when last refreshed
        self.lock = threading.Lock()

    def _scope(self) -> ColumnElement[bool]:
        # embedding_model is set exactly when there is an embedding (see `upsert_assets`), and
        # (embedding_model, updated_at) is indexed: the change check never reads the vectors.
        return Asset.embedding_model == self.model

    def refresh(self, conn: Connection) -> None:
        """Read what changed since the last refresh: nothing when the change counter stands still
        (one row read), else new or updated rows by `updated_at`, and everything again when rows
        went away (the count tells)."""
        changes = conn.execute(select(CatalogChange.counter).where(CatalogChange.name == ASSET_CHANGES)).scalar()
        if changes is not None and changes == self._changes:
            return
        count, newest = conn.execute(select(func.count(), func.max(Asset.updated_at)).where(self._scope())).one()
        if (count, newest) != self._stamp:
            query = select(Asset.id, Asset.embedding).where(self._scope())
            since = self._stamp[1] if self._stamp is not None and self.ids and count >= len(self.ids) else None
            if since is not None:
                self._merge(conn.execute(query.where(Asset.updated_at >= since)).all())
            if since is None or len(self.ids) != count:  # rows went away: read them all again
                self.ids, self._positions = [], {}
                self.matrix = np.zeros((0, 0), dtype=np.float32)
                self._merge(conn.execute(query).all())
            self._stamp = (count, newest)
        self._changes = changes

    def _merge(self, rows: Sequence[Any]) -> None:
        if not rows:
            return
        vectors = np.stack([np.frombuffer(blob, dtype="<f4") for _, blob in rows]).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms == 0, 1, norms)
        if self.matrix.size and vectors.shape[1] != self.matrix.shape[1]:
            raise ValueError(f"embeddings of model {self.model!r} have different lengths in the catalog")
        new = [(i, aid) for i, (aid, _) in enumerate(rows) if aid not in self._positions]
        for i, (aid, _) in enumerate(rows):
            if aid in self._positions:
                self.matrix[self._positions[aid]] = vectors[i]
        if new:
            self.matrix = np.concatenate([self.matrix.reshape(-1, vectors.shape[1]), vectors[[i for i, _ in new]]])
            for _, aid in new:
                self._positions[aid] = len(self.ids)
                self.ids.append(aid)

    def top(self, query: np.ndarray, k: int, allowed: set[str] | None = None,
            exclude: str | None = None) -> list[tuple[str, float]]:
        """The `k` ids most similar to `query` (cosine, best first; ties by id), among `allowed`."""
        return self.ranking(query, allowed, exclude)(k)

    def ranking(self, query: np.ndarray, allowed: set[str] | None = None,
                exclude: str | None = None) -> Callable[[int], list[tuple[str, float]]]:
        """`top` for any k, scoring every vector once: a filter checked on ever more candidates
        asks for a longer list without paying the matrix product again."""
        if not self.ids:
            return lambda k: []
        if query.shape[0] != self.matrix.shape[1]:
            raise ValueError(
                f"the query embedding has {query.shape[0]} values but model {self.model!r}'s catalogued "
                f"embeddings have {self.matrix.shape[1]}"
            )
        if allowed is None:
            rows = np.arange(len(self.ids))
            scores = self.matrix @ query
        else:  # score only the allowed rows
            rows = np.fromiter((self._positions[a] for a in allowed if a in self._positions), dtype=np.int64)
            scores = self.matrix[rows] @ query
        if exclude is not None and exclude in self._positions:
            scores[rows == self._positions[exclude]] = -np.inf

        def first(k: int) -> list[tuple[str, float]]:
            k = min(k, len(rows))
            if k <= 0:
                return []
            best = np.argpartition(-scores, k - 1)[:k]
            return sorted(((self.ids[rows[i]], float(scores[i])) for i in best if np.isfinite(scores[i])),
                          key=lambda item: (-item[1], item[0]))

        return first


_INDEXES: dict[tuple[str, str], EmbeddingIndex] = {}
_INDEXES_LOCK = threading.Lock()


def embedding_index(url: str, model: str) -> EmbeddingIndex:
    """This process's index of `model`'s embeddings in the catalog at `url`."""
    with _INDEXES_LOCK:
        index = _INDEXES.get((url, model))
        if index is None:
            index = _INDEXES[url, model] = EmbeddingIndex(model)
        return index
