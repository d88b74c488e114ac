"""What a finished batch run tells, read from the partition's stored records: the `BatchNotice` that
the `Notifier` posts, the activity log's `batch.completed` / `batch.failed` entry, and the summary
`assetql run` prints."""

from __future__ import annotations

import posixpath
import re

from assetql_dagster.domain.layout import record_key
from assetql_dagster.domain.records import DistributionPackage, ExportSummary
from assetql_dagster.pipeline.distribution import PACKAGE_SUFFIX
from assetql_dagster.pipeline.launching import batch_pass_rate
from assetql_dagster.pipeline.records import read_record, read_record_at
from assetql_dagster.pipeline.registration import registered_batch
from assetql_dagster.pipeline.reviews import DETAIL_MAX, record_activity
from resources.catalog import AssetCatalog
from resources.notifier import FAILED, SUCCEEDED, BatchNotice, ExportedPackage
from resources.storage import AssetStorage

# The exported files worth a link, by label, and the `ExportSummary.files` kind each is.
EXPORT_FILES = (("package", "zip"), ("gallery", "gallery"), ("manifest", "manifest"), ("links", "links_manifest"))
# Who the activity log says finished the batch: the run status sensors, not a person.
ACTIVITY_USER = "dagster"
ERROR_MAX = 500  # characters of a failed run's error kept: its first lines say what went wrong
# The record of exporter NAME's `{NAME}_export` asset, which the IO manager stores with the others.
PACKAGE_RECORD = re.compile(rf"[^/]+{PACKAGE_SUFFIX}\.json")


def exported_files(storage: AssetStorage, summary: ExportSummary) -> dict[str, str]:
    """The URIs of the package, gallery, manifest and links manifest the export wrote, by label."""
    return {label: storage.uri(summary.files[kind]) for label, kind in EXPORT_FILES if kind in summary.files}


def distribution_packages(storage: AssetStorage, batch: str) -> tuple[ExportedPackage, ...]:
    """The distribution packages exporters wrote for `batch`, by exporter name, with their main files' URIs."""
    folder = posixpath.dirname(record_key(batch, "any")) + "/"
    found = []
    # One listing rather than a look-up per installed exporter: it also finds the packages of
    # exporters (plugins) that were installed when the batch ran and no longer are.
    for key in storage.list_keys(folder):
        if not PACKAGE_RECORD.fullmatch(key[len(folder):]):
            continue
        package = read_record_at(storage, key, "it was removed while being read")
        if isinstance(package, DistributionPackage):
            found.append(ExportedPackage(exporter=package.exporter, uri=storage.uri(package.main),
                                         images=package.images, files=len(package.files), valid=not package.problems))
    return tuple(sorted(found, key=lambda p: p.exporter))


def batch_notice(storage: AssetStorage, batch: str, run_id: str, succeeded: bool, error: str = "") -> BatchNotice:
    """The notice of run `run_id` of batch partition `batch`, which `succeeded` or failed with `error`.

    Images, failed rows and the pass rate are the batch's as stored after the run (a failed run
    keeps what earlier runs stored); exported images, files and distribution packages only after a
    success, since a failed run's export, if any, is an earlier run's.
    """
    try:
        registered = registered_batch(storage, batch)
        name, planned = registered.name, len(registered.rows) * registered.settings.variations
    except FileNotFoundError:  # a run that failed before registration was stored
        name, planned = batch, 0
    try:
        images = read_record(storage, batch, "images")
        done, planned, failed_rows = len(images.stored), images.planned, len(images.failed)
    except FileNotFoundError:  # failed before generation stored anything
        done, failed_rows = 0, 0
    exported, files, packages = None, {}, ()
    if succeeded:
        packages = distribution_packages(storage, batch)
        try:
            summary = read_record(storage, batch, "exports")
        except FileNotFoundError:  # a run of some stages only (e.g. re-tagging)
            summary = None
        if summary is not None:
            exported, files = summary.images, exported_files(storage, summary)
    return BatchNotice(
        batch=batch, name=name, status=SUCCEEDED if succeeded else FAILED, images_stored=done,
        images_planned=planned, images_exported=exported, failed_rows=failed_rows,
        pass_rate=batch_pass_rate(storage, batch), run_id=run_id, error=_first_chars(error, ERROR_MAX), files=files,
        packages=packages,
    )


def log_outcome(catalog: AssetCatalog, notice: BatchNotice) -> None:
    """Write the activity log's `batch.completed` or `batch.failed` entry of `notice`, by "dagster"."""
    catalog.migrate()  # a run that failed early may be the first thing to touch the catalog
    detail = f"run {notice.run_id}: {notice.headline()}" + (f"; error: {notice.error}" if notice.error else "")
    record_activity(catalog, ACTIVITY_USER, notice.event, notice.batch, _first_chars(detail, DETAIL_MAX))


def _first_chars(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
