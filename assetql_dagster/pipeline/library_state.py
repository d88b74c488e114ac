"""What people decided about a batch in the asset library, kept in storage beside its records:
review decisions (`batches/{batch}/reviews.json`), its owner (`owner.json`) and whether an admin
deleted it (`deleted.json`).

Storage stays the source of truth: every cataloguing mirrors these (`assets.review`,
`batches.owner`, a deleted batch left out), so a catalog rebuilt from storage has them, and the
exports stage reads the decisions of a batch that exports only approved images. This module only
reads and writes the records; the operations people perform, which also update the catalog and the
activity log, are in `reviews` (kept apart so that packaging and cataloguing can read the records
without importing those operations, which use them).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from assetql_dagster.domain.layout import record_key
from resources.storage import AssetStorage

REVIEWS, OWNER, DELETED = "reviews", "owner", "deleted"
APPROVED, REJECTED = "approved", "rejected"
DECISIONS = (APPROVED, REJECTED)


@dataclasses.dataclass(frozen=True)
class Review:
    """A person's decision on one image: `approved` or `rejected`, by whom and when (ISO 8601, UTC)."""

    asset_id: str  # {batch}/{image_id}
    decision: str
    user: str
    at: str


@dataclasses.dataclass(frozen=True)
class Deletion:
    """Who deleted a batch from the library, and when (ISO 8601, UTC)."""

    by: str
    at: str


@dataclasses.dataclass(frozen=True)
class LibraryState:
    """A batch's library records as cataloguing applies them: decisions by image id, the owner a
    transfer set (None: its creator) and its deletion (None: not deleted)."""

    reviews: Mapping[str, Review] = dataclasses.field(default_factory=dict)
    owner: str | None = None
    deleted: Deletion | None = None


def _read(storage: AssetStorage, batch: str, name: str) -> dict | None:
    key = record_key(batch, name)
    return json.loads(storage.read_text(key)) if storage.exists(key) else None


def _write(storage: AssetStorage, batch: str, name: str, document: dict) -> None:
    storage.write_text(record_key(batch, name), json.dumps(document, indent=1, ensure_ascii=False), "application/json")


def load_reviews(storage: AssetStorage, batch: str) -> dict[str, Review]:
    """The batch's review decisions by image id (none before the first review)."""
    document = _read(storage, batch, REVIEWS) or {"reviews": {}}
    return {image_id: Review(f"{batch}/{image_id}", **entry) for image_id, entry in document["reviews"].items()}


def save_reviews(storage: AssetStorage, batch: str, reviews: Mapping[str, Review]) -> None:
    """Make `reviews` (by image id) the batch's review decisions in storage."""
    document = {"reviews": {
        image_id: {"decision": r.decision, "user": r.user, "at": r.at} for image_id, r in sorted(reviews.items())
    }}
    _write(storage, batch, REVIEWS, document)


def approved_images(storage: AssetStorage, batch: str) -> set[str]:
    """Ids of the batch's images a reviewer approved."""
    return {image_id for image_id, r in load_reviews(storage, batch).items() if r.decision == APPROVED}


def transferred_owner(storage: AssetStorage, batch: str) -> str | None:
    """The owner the latest ownership transfer set (None before any)."""
    document = _read(storage, batch, OWNER)
    return document["owner"] if document else None


def save_owner(storage: AssetStorage, batch: str, owner: str, previous: str, by: str, at: str) -> None:
    """Record the transfer of the batch from `previous` to `owner` by `by`, keeping earlier ones."""
    transfers = (_read(storage, batch, OWNER) or {"transfers": []})["transfers"]
    transfers.append({"from": previous, "to": owner, "by": by, "at": at})
    _write(storage, batch, OWNER, {"owner": owner, "transfers": transfers})


def deletion(storage: AssetStorage, batch: str) -> Deletion | None:
    """Who deleted the batch and when, or None while it is in the library."""
    document = _read(storage, batch, DELETED)
    return Deletion(**document) if document else None


def mark_deleted(storage: AssetStorage, batch: str, deleted: Deletion) -> None:
    _write(storage, batch, DELETED, dataclasses.asdict(deleted))


def load_state(storage: AssetStorage, batch: str) -> LibraryState:
    """The batch's reviews, transferred owner and deletion, as cataloguing applies them."""
    return LibraryState(load_reviews(storage, batch), transferred_owner(storage, batch), deletion(storage, batch))
