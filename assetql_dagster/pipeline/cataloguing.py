"""The asset catalog filled from a batch's records: as the pipeline passes them (`catalog_records`),
or read back from storage for one batch (`catalog_batch`) or every registered one (`rebuild`).

Storage stays the source of truth: the records (`batch_input`, `prompts`, `curated_images`, `tags`,
`exports` and `versions.json`) are upserted, so cataloguing a batch again gives the same rows, and a
lost catalog is rebuilt from storage alone. Stages a batch has not reached yet are left out (a
registered batch is catalogued without images).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from assetql_dagster.domain.layout import record_key
from assetql_dagster.domain.records import (
    BatchInput,
    Curation,
    ExportSummary,
    ImageHistory,
    ImagePlan,
    ImageScore,
    TagSet,
)
from assetql_dagster.domain.scoring import PARAMETERS
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.regeneration import load_histories
from assetql_dagster.pipeline.versions import registered_batches
from resources.catalog import AssetCatalog, asset_id
from resources.catalog_models import AssetEntry, BatchEntry, TagEntry, VersionEntry, to_utc
from resources.storage import AssetStorage

# Where each kind of tag comes from (see domain/tagging.py): the input row's category, zero-shot
# CLIP for object/scene/style, image statistics for colour/mood/composition.
TAG_SOURCES = {
    "category": "csv",
    "object": "clip",
    "scene": "clip",
    "style": "clip",
    "color": "pixels",
    "mood": "pixels",
    "composition": "pixels",
}
SCORE_FIELDS = ("style_score", *(f"{name}_score" for name in PARAMETERS))


@dataclass(frozen=True)
class CatalogCounts:
    """Rows one `catalog_batch` call upserted (or removed, for images no longer stored)."""

    batch: str
    assets: int = 0
    versions: int = 0
    tags: int = 0
    exports: int = 0
    removed: int = 0

    @property
    def rows(self) -> int:
        return 1 + self.assets + self.versions + self.tags + self.exports


def _optional(storage: AssetStorage, batch: str, stage: str):
    return read_record(storage, batch, stage) if storage.exists(record_key(batch, stage)) else None


def _style(value: str | list[str] | tuple[str, ...] | None) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else ", ".join(value) or None


def catalog_batch(catalog: AssetCatalog, storage: AssetStorage, batch_key: str) -> CatalogCounts:
    """`catalog_records` with the records stored for batch `batch_key` (those of stages it reached)."""
    return catalog_records(
        catalog,
        read_record(storage, batch_key, "batch_input"),
        _optional(storage, batch_key, "prompts"),
        _optional(storage, batch_key, "curated_images"),
        _optional(storage, batch_key, "tags"),
        _optional(storage, batch_key, "exports"),
        load_histories(storage, batch_key),
    )


def catalog_records(
    catalog: AssetCatalog,
    batch: BatchInput,
    plan: ImagePlan | None,
    curation: Curation | None,
    tag_set: TagSet | None,
    summary: ExportSummary | None,
    histories: dict[str, ImageHistory],
) -> CatalogCounts:
    """Upsert the batch with its images, versions, tags and exports; idempotent. The catalog must
    be migrated (`catalog.migrate()`)."""
    batch_key = batch.batch
    stored = curation.images.stored if curation else ()
    scores: dict[str, ImageScore] = {s.image_id: s for s in curation.scores.images} if curation else {}
    verdicts = [scores[i.image_id].verdict for i in stored if i.image_id in scores]
    settings = batch.settings
    status = "exported" if summary else "curated" if curation else "planned" if plan else "registered"
    catalog.upsert_batch(BatchEntry(
        key=batch_key,
        name=batch.name,
        description=settings.description or "",
        status=status,
        images_planned=curation.images.planned if curation else len(plan.jobs) if plan else 0,
        images_stored=len(stored),
        images_failed=len(curation.images.failed) if curation else 0,
        images_passed=verdicts.count("pass"),
        images_review=verdicts.count("review"),
        settings=settings.to_dict(),
        style_profile=_style(settings.style),
        registered_at=batch.registered_at,
    ))

    jobs = {j.image_id: j for j in plan.jobs} if plan else {}
    assets, versions = [], []
    for image in stored:
        job, score, history = jobs.get(image.image_id), scores.get(image.image_id), histories.get(image.image_id)
        current = history.current if history else (score.version if score else 1)
        created = next((v.created_at for v in history.versions if v.version == 1), None) if history else None
        assets.append(AssetEntry(
            image_id=image.image_id,
            file_name=image.file_name,
            current_version=current,
            raw_key=image.raw_key,
            thumb_key=image.thumb_key,
            category=job.category if job else "",
            category_source="csv",
            **{f: getattr(score, f) for f in SCORE_FIELDS if score is not None},
            verdict=score.verdict if score else "unscored",
            width=image.width,
            height=image.height,
            prompt=job.prompt if job else "",
            negative_prompt=job.negative_prompt if job else "",
            language=job.language if job else "",
            sku=job.sku if job else "",
            extra=dict(job.extra) if job else {},
            # Deterministic, so a rebuilt catalog holds the same rows.
            created_at=created or batch.registered_at,
        ))
        if history:
            versions += [
                VersionEntry(
                    image_id=image.image_id, version=v.version, seed=v.seed, prompt=v.prompt,
                    style_score=v.score.style_score, verdict=v.score.verdict, reason=v.reason,
                    storage_key=v.key, thumb_key=v.thumb_key, created_at=v.created_at,
                )
                for v in history.versions
            ]
        else:  # never regenerated: the stored image is version 1
            versions.append(VersionEntry(
                image_id=image.image_id, version=1, seed=image.seed, prompt=job.prompt if job else "",
                style_score=score.style_score if score else None, verdict=score.verdict if score else "unscored",
                reason="initial", storage_key=image.raw_key, thumb_key=image.thumb_key,
                created_at=batch.registered_at,
            ))
    removed = catalog.delete_assets_except(batch_key, [a.image_id for a in assets])
    n_assets = catalog.upsert_assets(batch_key, assets)
    n_versions = catalog.upsert_versions(batch_key, versions)

    tags_by_image = {t.image_id: t.tags for t in tag_set.images} if tag_set else {}
    tag_rows = {
        asset_id(batch_key, a.image_id): [
            TagEntry(label=t.label, group=t.kind, confidence=t.confidence, source=TAG_SOURCES.get(t.kind, "analysis"))
            for t in tags_by_image.get(a.image_id, ())
        ]
        for a in assets
    }
    n_tags = sum(catalog.replace_tags_many(tag_rows).values()) if tag_rows else 0
    # Storage keeps no file times: an export is dated by the batch's latest known event (its
    # registration or newest image version), so a rebuilt catalog holds the same rows.
    exported_at = max([to_utc(batch.registered_at)] + [to_utc(v.created_at) for h in histories.values() for v in h.versions])
    n_exports = catalog.upsert_exports(batch_key, summary.files, created_at=exported_at) if summary else 0
    return CatalogCounts(batch_key, n_assets, n_versions, n_tags, n_exports, removed)


def rebuild(catalog: AssetCatalog, storage: AssetStorage, batches: Iterable[str] | None = None) -> list[CatalogCounts]:
    """Migrate the catalog, then catalog every batch registered in storage (`batches/*/source.json`)."""
    catalog.migrate()
    keys = registered_batches(storage) if batches is None else list(batches)
    return [catalog_batch(catalog, storage, key) for key in keys]
