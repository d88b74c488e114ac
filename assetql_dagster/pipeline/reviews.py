"""The asset library's review workflow, batch ownership, activity log and download history.

Review decisions (`set_review`), ownership transfers (`transfer_ownership`) and deletions
(`delete_batch`) are written to storage first (`library_state`: `batches/{batch}/reviews.json`,
`owner.json`, `deleted.json`), the source of truth, then to the catalog at once (`assets.review`,
`batches.owner`, a deleted batch's rows removed); every later cataloguing applies them again, so
`assetql catalog rebuild` restores them. The activity log and the download history are history,
kept in the catalog only.

Each change made here is logged in the activity log by the function that makes it (who, what, on
which batch or asset, when); callers log their other actions with `record_activity`. Roles are the
caller's to check (in the asset library: reviewing needs a Creator, transfers and deletion an Admin).
The catalog must be migrated (`catalog.migrate()`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

from assetql_dagster.domain.records import BatchInput, ExportSummary
from assetql_dagster.domain.export_writers import EXPORT_FORMATS
from assetql_dagster.domain.settings import EXPORT_ONLY, exports_error
from assetql_dagster.pipeline.cataloguing import forget_batch
from assetql_dagster.pipeline.library_state import (
    APPROVED,
    DECISIONS,
    REJECTED,
    Deletion,
    Review,
    deletion,
    load_reviews,
    mark_deleted,
    save_owner,
    save_reviews,
    transferred_owner,
)
from assetql_dagster.pipeline.regeneration import now_iso
from assetql_dagster.pipeline.renaming import reexport
from assetql_dagster.pipeline.versions import listing, open_batch, stage
from resources.catalog import AssetCatalog
from resources.catalog_models import ActivityEntry, DownloadEntry
from resources.storage import AssetStorage

# What the activity log calls the changes made here.
REVIEW_ACTIONS = {APPROVED: "review.approved", REJECTED: "review.rejected", None: "review.cleared"}
TRANSFER = "owner.transfer"
DELETE = "batch.delete"
# Users are e-mail addresses (the proxy's X-Forwarded-Email), token names or local user names.
USER_MAX = 320
ACTION_MAX = 64
TARGET_MAX = 300  # a batch key or an asset id
KIND_MAX = 32
DETAIL_MAX = 2000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Decisions and owners are read, changed and written back whole: one change at a time per process
# (the library serves every request from one process), so two reviewers never drop each other's.
_LOCK = threading.Lock()


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or _CONTROL.search(value):
        shown = repr(value)[:60]
        raise ValueError(f"{what} must be 1 to {limit} characters of text on one line, got {shown}")
    return value


def split_asset_id(asset_id: str) -> tuple[str, str]:
    """(batch, image id) of a catalog asset id `{batch}/{image_id}`."""
    batch, _, image_id = str(asset_id).partition("/")
    if not batch or not image_id or "/" in image_id:
        raise ValueError(f"asset id {str(asset_id)[:80]!r} must be '{{batch}}/{{image_id}}' as `assetql search` lists it")
    return batch, image_id


def live_batch(storage: AssetStorage, batch: str) -> BatchInput:
    """The registered batch `batch`; LookupError when there is none or an admin deleted it."""
    registered = open_batch(storage, batch)
    deleted = deletion(storage, batch)
    if deleted is not None:
        raise LookupError(f"batch {batch!r} was deleted from the library by {deleted.by} at {deleted.at}")
    return registered


def set_review(storage: AssetStorage, catalog: AssetCatalog, asset_ids: Sequence[str], decision: str | None,
               user: str) -> int:
    """Approve (`decision` "approved"), reject ("rejected") or clear (None) the review of every image
    of `asset_ids` (catalog ids, `{batch}/{image_id}`, of any batches) as `user`; returns how many
    images. Everything is checked before anything is written: the decision, the user, and that each
    image is stored in a batch that is not deleted."""
    if decision is not None and decision not in DECISIONS:
        raise ValueError(f"review decision {decision!r} must be one of {', '.join(DECISIONS)}, or None to clear it")
    user = _text(user, "user", USER_MAX)
    if isinstance(asset_ids, str):
        raise TypeError(f"asset_ids must be a list of asset ids, got the text {asset_ids[:80]!r}")
    ids = list(dict.fromkeys(asset_ids))
    by_batch: dict[str, list[str]] = {}
    for aid in ids:
        batch, image_id = split_asset_id(aid)
        by_batch.setdefault(batch, []).append(image_id)
    for batch, image_ids in by_batch.items():
        live_batch(storage, batch)
        stored = [i.image_id for i in stage(storage, batch, "images", "has no generated images yet").stored]
        known = set(stored)
        unknown = [i for i in image_ids if i not in known]
        if unknown:
            raise LookupError(f"batch {batch!r} has no stored image {unknown[0]!r}; its images: {listing(stored)}")
    at = now_iso()
    with _LOCK:
        for batch, image_ids in by_batch.items():
            reviews = load_reviews(storage, batch)
            for image_id in image_ids:
                if decision is None:
                    reviews.pop(image_id, None)
                else:
                    reviews[image_id] = Review(f"{batch}/{image_id}", decision, user, at)
            save_reviews(storage, batch, reviews)
    catalog.set_reviews({aid: decision or "" for aid in ids})
    catalog.add_activity(ActivityEntry(user, REVIEW_ACTIONS[decision], aid) for aid in ids)
    return len(ids)


def export_approved(storage: AssetStorage, batch_key: str) -> ExportSummary:
    """Write the batch's package again from its stored records with only the images approved in
    review (whatever its `export_only` setting says), as the `exports` asset writes packages; its
    summary, which is also stored as the batch's `exports` record. A later export of the batch (a
    re-run, `rollback`, `rename`) follows the setting again."""
    return export_preset(storage, batch_key, None, APPROVED)


def export_preset(storage: AssetStorage, batch_key: str, exports: Sequence[str] | None, export_only: str) -> ExportSummary:
    """Write the batch's package again from its stored records in the formats `exports` (among the
    `exports` setting's; None: the batch's own) of the images `export_only` takes (`all`, or
    `approved` in review), whatever the batch's settings say; its summary, also stored as the batch's
    `exports` record. Files of formats left out are not written (an earlier export's stay in storage).
    A later export of the batch (a re-run, `rollback`, `rename`) follows its settings again."""
    if exports is not None:
        # The package's own formats: an exporter's package is its own asset (`assetql export`).
        problem = exports_error(exports) or next(
            (f"{name!r} is not a format of the package; expected among {', '.join(EXPORT_FORMATS)}"
             for name in exports if name not in EXPORT_FORMATS), None)
        if problem:
            raise ValueError(f"exports {problem}")
    if export_only not in EXPORT_ONLY:
        raise ValueError(f"export_only must be one of {', '.join(EXPORT_ONLY)}, got {str(export_only)[:40]!r}")
    live_batch(storage, batch_key)
    stage(storage, batch_key, "curated_images", "has no finished images yet")
    return reexport(storage, batch_key, export_only=export_only, exports=None if exports is None else tuple(exports))


def owner_of(storage: AssetStorage, batch: str) -> str:
    """Who owns the batch: its creator (who or what registered it) until an ownership transfer;
    LookupError when no such batch is registered."""
    return transferred_owner(storage, batch) or open_batch(storage, batch).creator


def transfer_ownership(storage: AssetStorage, catalog: AssetCatalog, batch: str, new_owner: str, by_user: str) -> None:
    """Make `new_owner` the owner of `batch`, as `by_user` (an admin); logged with both owners."""
    new_owner, by_user = _text(new_owner, "new owner", USER_MAX), _text(by_user, "user", USER_MAX)
    live_batch(storage, batch)
    at = now_iso()
    with _LOCK:
        previous = owner_of(storage, batch)
        if previous == new_owner:
            raise ValueError(f"batch {batch!r} is owned by {new_owner} already")
        save_owner(storage, batch, new_owner, previous, by_user, at)
    catalog.set_batch_owner(batch, new_owner)
    catalog.add_activity([ActivityEntry(by_user, TRANSFER, batch, f"from {previous} to {new_owner}")])


def delete_batch(storage: AssetStorage, catalog: AssetCatalog, batch: str, by_user: str) -> None:
    """Delete `batch` from the library as `by_user` (an admin): marked deleted in storage, so no
    cataloguing or rebuild brings it back, and its catalog rows removed. Its files (images, versions,
    records, package) stay in storage."""
    by_user = _text(by_user, "user", USER_MAX)
    live_batch(storage, batch)
    mark_deleted(storage, batch, Deletion(by_user, now_iso()))
    removed = forget_batch(catalog, batch).removed
    catalog.add_activity([ActivityEntry(by_user, DELETE, batch, f"{removed} image(s) left out; files kept")])


def record_activity(catalog: AssetCatalog, user: str, action: str, target: str, detail: str = "") -> None:
    """Log that `user` did `action` (e.g. batch.submit, export.approved) on `target` (a batch key or an
    asset id), with an optional `detail`."""
    if not isinstance(detail, str) or len(detail) > DETAIL_MAX:
        raise ValueError(f"activity detail must be text of at most {DETAIL_MAX} characters, got {repr(detail)[:60]}")
    catalog.add_activity([ActivityEntry(_text(user, "user", USER_MAX), _text(action, "action", ACTION_MAX),
                                        _text(target, "activity target", TARGET_MAX), detail)])


def activity(catalog: AssetCatalog, target: str | None = None, user: str | None = None,
             limit: int = 100) -> list[dict[str, Any]]:
    """The activity log, newest first: entries on `target` (a batch key includes its assets) and/or by
    `user`; each a dict of id, at (aware UTC datetime), user, action, target and detail."""
    return catalog.activity(target=target, user=user, limit=limit)


def record_download(catalog: AssetCatalog, user: str, asset_or_batch_id: str, kind: str) -> None:
    """Log that `user` downloaded an asset or a batch in the form `kind` (original, compressed, zip, ...)."""
    catalog.add_download(DownloadEntry(
        _text(user, "user", USER_MAX), _text(asset_or_batch_id, "download target", TARGET_MAX),
        _text(kind, "download kind", KIND_MAX),
    ))


def downloads(catalog: AssetCatalog, user: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The download history, newest first (of `user` only when given); each a dict of id, at (aware
    UTC datetime), user, target and kind."""
    return catalog.downloads(user=user, limit=limit)
