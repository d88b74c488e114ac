"""Distribution: one exporter's package of a batch, written and then read back to validate it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from assetql_dagster.domain.records import BatchInput, Curation, DistributionPackage, ImagePlan, TagSet
from assetql_dagster.pipeline.exporters.base import Exporter, ExportImage, ExportJob
from assetql_dagster.pipeline.library_state import APPROVED
from assetql_dagster.pipeline.packaging import exported_rows
from resources.storage import AssetStorage


# Exporter NAME's asset and the record the IO manager stores of it: `{NAME}_export`.
PACKAGE_SUFFIX = "_export"


def export_asset_name(exporter: str) -> str:
    return exporter + PACKAGE_SUFFIX


def in_categories(category: str, categories: Sequence[str]) -> bool:
    """Whether a category path is one of `categories` or below one ("weapons" takes "weapons/swords")."""
    return any(category == c or category.startswith(c.rstrip("/") + "/") for c in categories)


def export_images(
    storage: AssetStorage, batch: BatchInput, plan: ImagePlan, curation: Curation, tags: TagSet,
    approved_only: bool = False, categories: Sequence[str] = (),
) -> list[ExportImage]:
    """The images an exporter packages: those the batch's `export_only` takes (approved only when
    `approved_only`), of `categories` when given, as manifest rows."""
    export_only = APPROVED if approved_only else batch.settings.export_only
    _, rows = exported_rows(storage, batch, plan, curation.images, curation.scores, tags, export_only)
    return [ExportImage(row) for row in rows if not categories or in_categories(row["category"] or "", categories)]


def distribute(
    storage: AssetStorage, exporter: Exporter, batch: BatchInput, images: Sequence[ExportImage],
    approved_only: bool = False, categories: Sequence[str] = (), clients: Callable[[], Mapping[str, Any]] = dict,
) -> DistributionPackage:
    """Write `exporter`'s package of `images` under `exports/{batch}/{name}/` (replacing what an earlier
    export left there) and read it back; the
    record says what was written and what validation found wrong (nothing, when it is sound).
    `clients` makes the deployment's upload clients, asked for only by an exporter that uploads."""
    options = exporter.parse_options(batch.settings.options_of(exporter.name))
    job = ExportJob(batch.batch, exporter.name, images, options, storage, batch.settings)
    if exporter.wants_clients(options):
        # Only here: a half-configured CMS connection must not fail the exporters that do not upload.
        job.clients = clients()
    result = exporter.export(job)
    # The package folder holds this export only: files of an earlier one (images renamed, filtered out
    # or deleted since) would be shipped with it by anyone syncing the folder.
    storage.delete(k for k in storage.list_keys(job.prefix) if k not in job.written)
    problems = exporter.validate(job, result)
    return DistributionPackage(
        exporter=exporter.name,
        images=len(images),
        main=result.main,
        files=dict(job.written),
        approved_only=approved_only,
        categories=tuple(categories),
        metadata=dict(result.metadata),
        problems=tuple(problems),
    )
