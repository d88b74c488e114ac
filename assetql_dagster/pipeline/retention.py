"""Retention (design 2.6, NFR-4): how long a batch's working files are kept, on local storage
(`assetql gc`) and on S3 (a bucket lifecycle configuration, `assetql s3-lifecycle`).

A batch's raw images, thumbnails and image versions are working files: once the retention has
passed since the batch was registered they are deleted. Its records, sources, style references and
exports (the delivered packages) stay; on S3 exports move to Glacier after ARCHIVE_DAYS instead.
The catalog keeps the batch (status `expired`) and its package, without the deleted images.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from assetql_dagster.pipeline.cataloguing import EXPIRED, catalog_batch
from assetql_dagster.pipeline.registration import registered_batch
from assetql_dagster.pipeline.versions import registered_batches
from resources.catalog import AssetCatalog
from resources.storage import AssetStorage

RETENTION_ENV = "ASSETQL_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30
# Exports are rarely read after a quarter; Glacier keeps them at a fraction of the price.
ARCHIVE_DAYS = 90
# The folders whose files expire with the retention (domain/layout.py names them).
EXPIRING_FOLDERS = ("raw", "thumbnails", "versions")
ARCHIVED_FOLDERS = ("exports",)
REGISTERED_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
RULE_PREFIX = "assetql-"


def check_days(days: object, what: str) -> int:
    """`days` as a whole number of days, at least 1; ValueError naming `what` otherwise."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"{what} {days!r} must be a whole number of days, at least 1")
    return days


def retention_days(env: Mapping[str, str] = os.environ) -> int:
    """The deployment's retention: $ASSETQL_RETENTION_DAYS, else DEFAULT_RETENTION_DAYS."""
    text = env.get(RETENTION_ENV)
    if text is None or not text.strip():
        return DEFAULT_RETENTION_DAYS
    days = int(text) if text.strip().lstrip("-").isdigit() else None
    if days is None or days < 1:
        raise ValueError(f"{RETENTION_ENV}={text!r} must be a whole number of days, at least 1")
    return days


@dataclasses.dataclass(frozen=True)
class ExpiredBatch:
    """A batch past the retention and the working files of it that are still stored."""

    key: str
    registered_at: datetime
    sizes: dict[str, int]

    @property
    def bytes(self) -> int:
        return sum(self.sizes.values())

    def describe(self, verb: str) -> str:
        """One line for `gc` and the nightly job: the batch, when it was registered, what `verb` happened."""
        return f"{self.key} (registered {self.registered_at:%Y-%m-%d}): {verb} {len(self.sizes)} file(s), {self.bytes} bytes"


def past_retention(storage: AssetStorage, days: int, now: datetime | None = None) -> list[tuple[str, datetime]]:
    """(key, registration time) of the batches registered more than `days` days before `now`."""
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=check_days(days, "retention"))
    past = []
    for key in registered_batches(storage):
        registered_at = datetime.strptime(registered_batch(storage, key).registered_at, REGISTERED_AT_FORMAT)
        registered_at = registered_at.replace(tzinfo=timezone.utc)
        if registered_at < cutoff:
            past.append((key, registered_at))
    return past


def expired_batches(storage: AssetStorage, past: list[tuple[str, datetime]]) -> list[ExpiredBatch]:
    """Of the batches `past` the retention (`past_retention`), those that still hold working files."""
    found = (ExpiredBatch(key, registered_at,
                          {k: size for folder in EXPIRING_FOLDERS for k, size in storage.sizes(f"{folder}/{key}/").items()})
             for key, registered_at in past)
    return [batch for batch in found if batch.sizes]


def collect_garbage(storage: AssetStorage, days: int, dry_run: bool = False, now: datetime | None = None,
                    catalog: AssetCatalog | None = None) -> list[ExpiredBatch]:
    """Delete the working files of every batch past the retention (none with `dry_run`); what was found.

    With `catalog`, every batch past the retention whose catalog rows still list images is catalogued
    again, which leaves its images out (the batch stays, `expired`, with its package): those deleted
    now, and those whose files an S3 lifecycle rule expired without gc."""
    past = past_retention(storage, days, now)
    expired = expired_batches(storage, past)
    if dry_run:
        return expired
    for batch in expired:
        storage.delete(batch.sizes)
    if catalog is not None:
        catalog.migrate()
        for key, _ in past:
            row = catalog.get_batch(key)
            if row is not None and row["status"] != EXPIRED and row["images_stored"]:
                catalog_batch(catalog, storage, key)
    return expired


def lifecycle_rules(days: int, archive_days: int = ARCHIVE_DAYS, prefix: str = "") -> list[dict]:
    """S3 lifecycle rules: working files expire after `days`, exports move to Glacier after `archive_days`."""
    check_days(days, "retention")
    check_days(archive_days, "archive after")
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    rules = []
    for folder in EXPIRING_FOLDERS:
        rule = {"ID": f"{RULE_PREFIX}expire-{folder}", "Filter": {"Prefix": f"{base}{folder}/"}, "Status": "Enabled",
                "Expiration": {"Days": days},
                # Versioned buckets keep a deleted object's older versions; let them go a day later.
                "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}
        if days > archive_days:
            # S3 refuses a transition on or after the expiry day, so only longer retentions archive first.
            rule["Transitions"] = [{"Days": archive_days, "StorageClass": "GLACIER"}]
        rules.append(rule)
    for folder in ARCHIVED_FOLDERS:
        rules.append({"ID": f"{RULE_PREFIX}archive-{folder}", "Filter": {"Prefix": f"{base}{folder}/"},
                      "Status": "Enabled", "Transitions": [{"Days": archive_days, "StorageClass": "GLACIER"}]})
    return rules


def merged_rules(current: list[dict], ours: list[dict]) -> list[dict]:
    """The bucket's rules with AssetQL's replaced by `ours`; rules others added are kept."""
    return [rule for rule in current if not rule.get("ID", "").startswith(RULE_PREFIX)] + ours
