"""Sensors that turn dropped batches into partitions and runs: a local inbox folder and S3 drops."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG

from assetql_dagster.domain.batch_loader import CSV_NAME, REFERENCES_DIR, SETTINGS_NAME
from assetql_dagster.domain.errors import BatchValidationError, Problem
from assetql_dagster.domain.priority import run_priority
from assetql_dagster.pipeline.registration import register_batch
from assetql_dagster.pipeline.s3_batches import download_s3_batch
from assetql_dagster.defs import run_tags
from assetql_dagster.defs.budget import queued_batch_tags
from assetql_dagster.defs.jobs import batch_job
from assetql_dagster.defs.partitions import batches_partitions
from resources.s3 import S3Bucket, S3Connection, S3Object, s3_uri
from resources.storage import AssetStorage, write_atomically

INBOX_ENV = "ASSETQL_INBOX"
DEFAULT_INBOX = "inbox"
DROP_BUCKET_ENV = "ASSETQL_DROP_BUCKET"
DROP_PREFIX_ENV = "ASSETQL_DROP_PREFIX"
DEFAULT_DROP_PREFIX = "drops/"
REJECTED_DIR = "rejected"
SETTLE_ENV = "ASSETQL_INBOX_SETTLE_S"
DEFAULT_SETTLE_S = 20.0
MAX_SETTLE_S = 30.0
READY_SUFFIX = ".ready"


def inbox_entries(inbox: Path) -> list[Path]:
    """Batch folders (holding a batch.csv) and loose CSV files directly inside the inbox."""
    if not inbox.is_dir():
        return []
    entries = []
    for entry in sorted(inbox.iterdir()):
        if entry.name.startswith(".") or entry.name == REJECTED_DIR:
            continue  # hidden files, and the rejection reports the sensor writes
        if entry.is_dir() and (entry / CSV_NAME).is_file():
            entries.append(entry)
        elif entry.is_file() and entry.suffix.lower() == ".csv":
            entries.append(entry)
    return entries


def ready_marker(entry: Path) -> Path:
    """The file a sender writes last to say an entry is complete: {folder}/.ready or {name}.csv.ready."""
    return entry / READY_SUFFIX if entry.is_dir() else entry.with_name(entry.name + READY_SUFFIX)


def _ctime(path: Path) -> float:
    try:
        return path.lstat().st_ctime
    except FileNotFoundError:
        return math.inf  # gone since it was listed: the entry is changing right now


def change_times(entry: Path) -> tuple[float, float | None]:
    """The newest st_ctime of the entry's files and sub-folders, and its ready marker's (None if absent).

    ctime, unlike mtime, cannot be carried over by `cp -p` or `rsync -a`, so a copy that keeps old
    mtimes still looks new. Links are not followed. The folder's own ctime is left out: writing
    the marker moves it, and every file copied in gets a fresh ctime of its own anyway.
    """
    marker = ready_marker(entry)
    if entry.is_dir():
        paths = [Path(root) / name for root, dirs, files in os.walk(entry) for name in [*dirs, *files]]
    else:
        paths = [entry]
    changed = max((_ctime(p) for p in paths if p != marker), default=_ctime(entry))
    try:
        return changed, marker.lstat().st_ctime
    except FileNotFoundError:
        return changed, None


def settle_seconds_left(changed: float, ready: float | None, now: float, window: float) -> float:
    """Seconds until an entry last changed at `changed` may be registered; 0 once it may.

    It may once unchanged for `window` seconds, or once its ready marker is written (at `ready`)
    no earlier than its last change: a marker left from an earlier drop does not vouch for a new
    copy. A change time ahead of `now` (another machine's clock) counts as `now`.
    """
    if ready is not None and ready >= changed:
        return 0.0
    return max(0.0, window - max(0.0, now - changed))


def settle_window() -> float:
    """Seconds an inbox entry must stay unchanged before it is registered: $ASSETQL_INBOX_SETTLE_S."""
    raw = os.environ.get(SETTLE_ENV, "").strip()
    if not raw:
        return DEFAULT_SETTLE_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MAX_SETTLE_S:  # false for nan too
        raise ValueError(
            f"${SETTLE_ENV} must be a number of seconds from 0 to {MAX_SETTLE_S:g}, got {_short(repr(raw), 60)}"
        )
    return seconds


def fingerprint(entry: Path) -> str:
    """Cheap change detector (names, sizes, mtimes) so unchanged batches are not re-read every tick."""
    files = sorted(p for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else [entry]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(entry.parent)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


MAX_LOGGED_CHARS = 300


def _short(text: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """`text` on one line, cut to `limit` characters: a weird name or error cannot flood the log."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def inbox_report_path(entry: Path) -> Path:
    """Where the rejection report of an inbox entry goes: {inbox}/rejected/{entry name}.json."""
    return entry.parent / REJECTED_DIR / f"{entry.name}.json"


def inbox_rejection_report(entry: Path, stamp: str | None, problems: list[Problem]) -> dict:
    return {
        "entry": str(entry),
        "fingerprint": stamp,
        "rejected_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "errors": [dataclasses.asdict(p) for p in problems],
    }


def _reported_fingerprint(report: Path) -> str | None:
    try:
        return json.loads(report.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def _write_inbox_report(entry: Path, stamp: str | None, problems: list[Problem]) -> Path:
    """Write the entry's report once per version (fingerprint) of the entry; return its path."""
    report = inbox_report_path(entry)
    if stamp is not None and _reported_fingerprint(report) == stamp:
        return report
    body = json.dumps(inbox_rejection_report(entry, stamp, problems), indent=2).encode()
    return write_atomically(report, lambda fh: fh.write(body))


def _reject_entry(
    context: dg.SensorEvaluationContext, entry: Path, stamp: str | None, problems: list[Problem], cause: str
) -> str:
    """Report the rejected entry beside it, log why, and return the reason for the skip message."""
    try:
        where = f"report at {_write_inbox_report(entry, stamp, problems)}"
    except Exception as err:  # an unwritable inbox must not hide the rejection itself
        where = f"no report written ({type(err).__name__}: {_short(err, 120)})"
    reasons = "; ".join(str(p) for p in problems)
    context.log.warning(_short(f"not starting {entry} ({cause}); {where}: {reasons}", 2 * MAX_LOGGED_CHARS))
    return f"{entry.name}: {reasons} ({where})"


@dg.sensor(job=batch_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def inbox_sensor(context: dg.SensorEvaluationContext, storage: AssetStorage) -> dg.SensorResult:
    """Starts one run per new content dropped into the inbox folder, once the drop has settled.

    An entry still being copied waits until nothing in it changed for $ASSETQL_INBOX_SETTLE_S
    seconds, or until its ready marker is written. Entries with the same content (the same
    partition) start one run, keyed by that partition.
    A rejected entry gets a JSON report in {inbox}/rejected/ and never stops the other entries.
    An invalid batch is not re-read until it changes; an entry that failed for another reason
    (an unreadable file, a storage error) is retried on the next tick, its report written once.
    """
    inbox = Path(os.environ.get(INBOX_ENV, DEFAULT_INBOX)).resolve()
    window = settle_window()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current, run_requests, rejected, waiting = {}, [], [], []
    requested: dict[str, Path] = {}  # partition key -> the entry whose run this tick requests
    now = time.time()
    for entry in inbox_entries(inbox):
        if str(entry) in seen:
            current[str(entry)] = seen[str(entry)]  # the last version handled, until this one is
        stamp = None
        try:
            left = settle_seconds_left(*change_times(entry), now=now, window=window)
            if left > 0:
                waiting.append(_wait(context, entry, left))
                continue
            stamp = fingerprint(entry)
            if seen.get(str(entry)) == stamp:
                continue
            registration = register_batch(storage, entry, creator="inbox")
        except BatchValidationError as err:
            current[str(entry)] = stamp  # fixed only by changing the entry
            rejected.append(_reject_entry(context, entry, stamp, err.problems, "invalid batch"))
            continue
        except Exception as err:  # one bad entry must not stop every other batch
            cause = type(err).__name__
            problem = Problem(file=entry.name, message=_short(f"could not register ({cause}): {err}"))
            rejected.append(_reject_entry(context, entry, stamp, [problem], cause))
            continue
        current[str(entry)] = stamp
        try:
            inbox_report_path(entry).unlink(missing_ok=True)  # a fixed entry's old report is stale
        except OSError as err:
            context.log.warning(_short(f"could not remove the old report of {entry}: {type(err).__name__}: {err}"))
        key = registration.key
        if key in requested:
            first = requested[key].name
            context.log.info(_short(f"batch {entry.name} duplicates {first}: same partition {key}, one run"))
            continue
        requested[key] = entry
        run_requests.append(
            dg.RunRequest(
                # Keyed by content, not path: Dagster then starts one run per content, however
                # often it is dropped, as a folder or as a loose CSV.
                run_key=f"inbox:{key}",
                partition_key=key,
                tags=queued_batch_tags(context.instance, key, str(entry),
                                       run_priority(registration.source.settings.priority)),
            )
        )
        context.log.info(f"batch {entry.name} -> partition {key}")
    return _sensor_result(context, run_requests, [*rejected, *waiting], json.dumps(current, sort_keys=True))


def _wait(context: dg.SensorEvaluationContext, entry: Path, left: float) -> str:
    """Log that `entry` waits for its drop to settle, and return the reason for the skip message."""
    note = _short(
        f"{entry.name}: waiting for the drop to settle, {math.ceil(left)} s left "
        f"(or create {ready_marker(entry).relative_to(entry.parent)} once the copy is complete)"
    )
    context.log.info(note)
    return note


def _sensor_result(
    context: dg.SensorEvaluationContext, run_requests: list[dg.RunRequest], rejected: list[str], cursor: str
) -> dg.SensorResult:
    """The tick's runs, with a request adding their partitions not yet known, and why it skipped."""
    new_keys = list(dict.fromkeys(
        r.partition_key for r in run_requests
        if not context.instance.has_dynamic_partition(batches_partitions.name, r.partition_key)
    ))
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[batches_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=cursor,
        skip_reason="; ".join(rejected) if rejected and not run_requests else None,
    )


@dataclasses.dataclass(frozen=True)
class Drop:
    """A CSV object under the drop prefix, with the batch.yaml and references/ of its folder."""

    bucket: str
    key: str
    etag: str
    changed: datetime  # newest LastModified of the CSV and its folder's batch files
    siblings: tuple[tuple[str, str], ...] = ()  # (key, ETag) of batch.yaml and references/*

    @property
    def uri(self) -> str:
        return s3_uri(self.bucket, self.key)

    @property
    def run_key(self) -> str:
        """`s3://bucket/key@etag`, plus a digest of the siblings' ETags when the folder has any."""
        if not self.siblings:
            return f"{self.uri}@{self.etag}"
        digest = hashlib.sha256("\n".join(f"{k}@{e}" for k, e in self.siblings).encode()).hexdigest()
        return f"{self.uri}@{self.etag}+{digest[:12]}"

    @property
    def report_key(self) -> str:
        folder, _, name = self.key.rpartition("/")
        report = f"{REJECTED_DIR}/{PurePosixPath(name).stem}.json"
        return f"{folder}/{report}" if folder else report


def _batch_folder(key: str) -> str | None:
    """The drop folder whose batch.yaml or references/ `key` belongs to, or None."""
    parts = key.split("/")
    if parts[-1] == SETTINGS_NAME:
        return "/".join(parts[:-1])
    if REFERENCES_DIR in parts[:-1]:
        return "/".join(parts[: parts.index(REFERENCES_DIR)])
    return None


def find_drops(bucket: str, objects: Iterable[S3Object]) -> list[Drop]:
    """The drops among listed objects: every *.csv outside references/ and rejected/ folders."""
    siblings: dict[str, list[S3Object]] = defaultdict(list)
    csvs = []
    for obj in objects:
        key = obj.key
        if key.endswith("/"):
            continue  # an empty "folder" marker
        parts = key.split("/")
        folder = _batch_folder(key)
        if folder is not None:
            siblings[folder].append(obj)
        elif parts[-1].lower().endswith(".csv") and REJECTED_DIR not in parts[:-1]:
            csvs.append(obj)
    drops = []
    for obj in csvs:
        batch_files = sorted(siblings[obj.key.rpartition("/")[0]], key=lambda o: o.key)
        drops.append(Drop(
            bucket=bucket,
            key=obj.key,
            etag=obj.etag,
            changed=max(o.last_modified for o in [obj, *batch_files]),
            siblings=tuple((o.key, o.etag) for o in batch_files),
        ))
    return sorted(drops, key=lambda d: (d.changed, d.key))


def list_drops(bucket: S3Bucket, prefix: str) -> list[Drop]:
    """Every drop under `prefix` in `bucket`, oldest change first."""
    return find_drops(bucket.name, bucket.list(prefix))


@dataclasses.dataclass(frozen=True)
class DropCursor:
    """The newest change handled, and the run keys of the drops changed at exactly that time.

    S3 times have a resolution of a second, so a drop written in the same second as the last
    one handled is told apart by its run key instead of being skipped.
    """

    changed: datetime | None = None
    run_keys: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | None) -> DropCursor:
        if not text:
            return cls()
        data = json.loads(text)
        changed = datetime.fromisoformat(data["changed"]) if data["changed"] else None
        return cls(changed, frozenset(data["run_keys"]))

    def dump(self) -> str:
        changed = self.changed.isoformat() if self.changed else None
        return json.dumps({"changed": changed, "run_keys": sorted(self.run_keys)})

    def is_new(self, drop: Drop) -> bool:
        if self.changed is None or drop.changed > self.changed:
            return True
        return drop.changed == self.changed and drop.run_key not in self.run_keys

    def advanced(self, drops: list[Drop]) -> DropCursor:
        latest = max((d.changed for d in drops), default=None)
        if latest is None or (self.changed is not None and latest < self.changed):
            return self
        return DropCursor(latest, frozenset(d.run_key for d in drops if d.changed == latest))


def rejection_report(drop: Drop, problems: list[Problem]) -> dict:
    return {
        "drop": drop.uri,
        "etag": drop.etag,
        "run_key": drop.run_key,
        "rejected_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "errors": [dataclasses.asdict(p) for p in problems],
    }


def _reported_run_key(bucket: S3Bucket, drop: Drop) -> str | None:
    """The run key recorded in the drop's rejection report, if it has one."""
    try:
        body = bucket.read(drop.report_key)
    except FileNotFoundError:
        return None
    return json.loads(body).get("run_key")


def _already_handled(instance: dg.DagsterInstance, bucket: S3Bucket, drop: Drop) -> bool:
    """Whether this version of the drop already has a run or a rejection report.

    Dagster would also drop a repeated run key, but skipping here keeps a reset cursor from
    downloading and re-registering every drop in the bucket.
    """
    if instance.get_run_records(dg.RunsFilter(tags={RUN_KEY_TAG: drop.run_key}), limit=1):
        return True
    return _reported_run_key(bucket, drop) == drop.run_key


def _reject(
    context: dg.SensorEvaluationContext, bucket: S3Bucket, drop: Drop, error: BatchValidationError
) -> str:
    """Write the drop's rejection report next to it, log why, and return a one-line reason."""
    report = json.dumps(rejection_report(drop, error.problems), indent=2).encode()
    bucket.put(drop.report_key, report, ContentType="application/json")
    context.log.warning(f"not starting {drop.uri}; report at {s3_uri(drop.bucket, drop.report_key)}: {error}")
    return f"{drop.uri}: {'; '.join(str(p) for p in error.problems)}"


def _drop_run(instance: dg.DagsterInstance, storage: AssetStorage, bucket: S3Bucket, drop: Drop) -> dg.RunRequest:
    """Download and register the drop (raising BatchValidationError) and request its run."""
    with tempfile.TemporaryDirectory(prefix="assetql-drop-") as tmp:
        # The listing already named the folder's batch files; downloading exactly those keeps
        # the registered content the one the run key describes.
        batch_files = [key for key, _ in drop.siblings]
        path = download_s3_batch(bucket, drop.key, Path(tmp), batch_files)
        registration = register_batch(storage, path, origin=drop.uri, creator="s3 drop")
    key, priority = registration.key, run_priority(registration.source.settings.priority)
    return dg.RunRequest(
        run_key=drop.run_key, partition_key=key, tags=queued_batch_tags(instance, key, drop.uri, priority)
    )


def build_s3_drop_sensor(
    bucket: str, prefix: str = DEFAULT_DROP_PREFIX, name: str = "s3_drop_sensor"
) -> dg.SensorDefinition:
    """A sensor that starts one run per new or changed CSV drop under s3://bucket/prefix."""
    # "drops" would also match "drops-old/..."; a drop prefix is a folder.
    prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    @dg.sensor(
        name=name,
        job=batch_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Starts a batch run for each new or changed *.csv under {s3_uri(bucket, prefix)}",
    )
    def s3_drop_sensor(
        context: dg.SensorEvaluationContext, storage: AssetStorage, s3: S3Connection
    ) -> dg.SensorResult:
        drop_bucket = s3.bucket(bucket)
        cursor = DropCursor.parse(context.cursor)
        drops = list_drops(drop_bucket, prefix)
        run_requests, rejected = [], []
        for drop in filter(cursor.is_new, drops):
            if _already_handled(context.instance, drop_bucket, drop):
                continue
            try:
                run_requests.append(_drop_run(context.instance, storage, drop_bucket, drop))
            except BatchValidationError as error:
                rejected.append(_reject(context, drop_bucket, drop, error))
                continue
            context.log.info(f"drop {drop.uri} -> partition {run_requests[-1].partition_key}")
        return _sensor_result(context, run_requests, rejected, cursor.advanced(drops).dump())

    return s3_drop_sensor


def drop_sensors() -> list[dg.SensorDefinition]:
    """The S3 drop sensor when $ASSETQL_DROP_BUCKET names a bucket, else none."""
    bucket = os.environ.get(DROP_BUCKET_ENV)
    if not bucket:
        return []
    return [build_s3_drop_sensor(bucket, os.environ.get(DROP_PREFIX_ENV, DEFAULT_DROP_PREFIX))]
