"""The asset catalog filled from a batch's records: as the pipeline passes them (`catalog_records`),
or read back from storage for one batch (`catalog_batch`) or every registered one (`rebuild`).

Storage stays the source of truth: the records (`batch_input`, `prompts`, `curated_images`, `tags`,
`exports`, `versions.json` and `names.json`) are upserted, so cataloguing a batch again gives the same rows, and a
lost catalog is rebuilt from storage alone. Stages a batch has not reached yet are left out (a
registered batch is catalogued without images), and so are images whose file is no longer stored
(the retention deleted it). Hand-set categories are kept in storage too
(`category_overrides.json`); `categorize` sets one and catalogues its batch again. So are the asset
library's review decisions, owner and deletion (`library_state`): a batch an admin deleted is left
out of the catalog, its rows removed, however often it is catalogued.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from assetql_dagster.domain.categories import CategoryPath, parse_category_path, resolve_category
from assetql_dagster.domain.layout import image_prefixes, raw_image_key, record_key
from assetql_dagster.domain.records import (
    BatchInput,
    Curation,
    ExportSummary,
    ImageHistory,
    ImageJob,
    ImagePlan,
    ImageScore,
    ImageTags,
    TagSet,
)
from assetql_dagster.domain.scoring import PARAMETERS
from assetql_dagster.pipeline.categorizing import (
    ManualCategory,
    found_category,
    load_overrides,
    save_override,
    with_overrides,
)
from assetql_dagster.pipeline.library_state import LibraryState, deletion, load_state
from assetql_dagster.pipeline.names import ImageName, load_names
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.regeneration import load_histories, now_iso
from assetql_dagster.pipeline.registration import registered_batch
from assetql_dagster.pipeline.versions import listing, open_batch, registered_batches, stage
from resources.catalog import AssetCatalog, asset_id
from resources.catalog_models import AliasEntry, AssetEntry, BatchEntry, TagEntry, VersionEntry, to_utc
from resources.storage import AssetStorage

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
    aliases: int = 0
    deleted: bool = False  # deleted from the library: its rows were removed, none upserted

    @property
    def rows(self) -> int:
        return 0 if self.deleted else 1 + self.assets + self.versions + self.tags + self.exports + self.aliases


# The status of a batch whose images the retention deleted: it stays in the catalog with its package.
EXPIRED = "expired"


def _optional(storage: AssetStorage, batch: str, stage: str):
    return read_record(storage, batch, stage) if storage.exists(record_key(batch, stage)) else None


def _style(value: str | list[str] | tuple[str, ...] | None) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else ", ".join(value) or None


def file_sizes(storage: AssetStorage, batch_key: str) -> dict[str, int]:
    """Sizes in bytes of a batch's stored images by key (from listings, not reads)."""
    return {key: size for prefix in image_prefixes(batch_key) for key, size in storage.sizes(prefix).items()}


def _category(
    tags: ImageTags | None, job: ImageJob | None, manual: ManualCategory | None
) -> tuple[CategoryPath | None, str]:
    """An image's category path and source: set by hand, else as its tags record has it, else from
    its CSV row or prompt (a batch not tagged yet, or tagged before categories were recorded)."""
    if manual is not None:
        return resolve_category(manual.category), "override"
    if tags is not None and tags.category:
        return resolve_category(tags.category), tags.category_source
    found = found_category(job) if job is not None else None
    return (found[0], found[1]) if found else (None, "")


def catalog_batch(catalog: AssetCatalog, storage: AssetStorage, batch_key: str) -> CatalogCounts:
    """`catalog_records` with the records stored for batch `batch_key` (those of stages it reached)."""
    if deletion(storage, batch_key) is not None:  # its records need not be read
        return forget_batch(catalog, batch_key)
    return catalog_records(
        catalog,
        # A batch registered but not run yet has its registered source only.
        _optional(storage, batch_key, "batch_input") or registered_batch(storage, batch_key),
        _optional(storage, batch_key, "prompts"),
        _optional(storage, batch_key, "curated_images"),
        _optional(storage, batch_key, "tags"),
        _optional(storage, batch_key, "exports"),
        load_histories(storage, batch_key),
        file_sizes(storage, batch_key),
        load_names(storage, batch_key),
        load_overrides(storage, batch_key),
        load_state(storage, batch_key),
    )


def forget_batch(catalog: AssetCatalog, batch_key: str) -> CatalogCounts:
    """Remove a deleted batch's rows: the batch, its images (with their versions, tags and old names),
    exports and hand-set categories."""
    removed = catalog.delete_assets_except(batch_key, [])
    catalog.delete_batch(batch_key)
    catalog.replace_category_overrides(batch_key, {})
    return CatalogCounts(batch_key, removed=removed, deleted=True)


def catalog_records(
    catalog: AssetCatalog,
    batch: BatchInput,
    plan: ImagePlan | None,
    curation: Curation | None,
    tag_set: TagSet | None,
    summary: ExportSummary | None,
    histories: dict[str, ImageHistory],
    sizes: Mapping[str, int],
    renamed: Mapping[str, ImageName],
    overrides: Mapping[str, ManualCategory],
    state: LibraryState,
) -> CatalogCounts:
    """Upsert the batch with its images, versions, tags, exports and the old names of its renamed
    images (`renamed`, see `load_names`); idempotent. `sizes` are the stored files' sizes by key
    (`file_sizes`); `overrides` the hand-set categories by image id (`load_overrides`), which
    replace the found ones; `state` the review decisions and owner to show (`load_state`), or the
    deletion that removes the batch's rows instead. The catalog must be migrated (`catalog.migrate()`)."""
    batch_key = batch.batch
    if state.deleted is not None:
        return forget_batch(catalog, batch_key)
    tag_set = with_overrides(tag_set, overrides) if tag_set else None
    stored = curation.images.stored if curation else ()
    # Only images whose file is in storage: the retention (`assetql gc`, an S3 lifecycle rule) deletes
    # old batches' images, and a catalogued image must be one the library can show and serve.
    kept = tuple(i for i in stored if i.raw_key in sizes)
    scores: dict[str, ImageScore] = {s.image_id: s for s in curation.scores.images} if curation else {}
    verdicts = [scores[i.image_id].verdict for i in stored if i.image_id in scores]
    settings = batch.settings
    status = (EXPIRED if stored and not kept else "exported" if summary else "curated" if curation
              else "planned" if plan else "registered")
    catalog.upsert_batch(BatchEntry(
        key=batch_key,
        name=batch.name,
        description=settings.description or "",
        creator=batch.creator,
        status=status,
        images_planned=curation.images.planned if curation else len(plan.jobs) if plan else 0,
        images_stored=len(stored),
        images_failed=len(curation.images.failed) if curation else 0,
        images_passed=verdicts.count("pass"),
        images_review=verdicts.count("review"),
        settings=settings.to_dict(),
        style_profile=_style(settings.style),
        campaign=batch.campaign or None,
        registered_at=batch.registered_at,
        owner=state.owner or batch.creator,
    ))

    jobs = {j.image_id: j for j in plan.jobs} if plan else {}
    tagged = {t.image_id: t for t in tag_set.images} if tag_set else {}
    assets, versions = [], []
    for image in kept:
        job, score, history = jobs.get(image.image_id), scores.get(image.image_id), histories.get(image.image_id)
        embedding = tagged[image.image_id].embedding if image.image_id in tagged else ()
        category, category_source = _category(tagged.get(image.image_id), job, overrides.get(image.image_id))
        current = history.current if history else (score.version if score else 1)
        created = next((v.created_at for v in history.versions if v.version == 1), None) if history else None
        assets.append(AssetEntry(
            image_id=image.image_id,
            file_name=image.file_name,
            current_version=current,
            raw_key=image.raw_key,
            thumb_key=image.thumb_key,
            category=category.primary if category else "",
            subcategory=category.sub if category else "",
            category_source=category_source,
            **{f: getattr(score, f) for f in SCORE_FIELDS if score is not None},
            verdict=score.verdict if score else "unscored",
            width=image.width,
            height=image.height,
            file_size=sizes.get(image.raw_key),
            format=PurePosixPath(image.raw_key).suffix.lstrip(".").lower() or "png",
            prompt=job.prompt if job else "",
            negative_prompt=job.negative_prompt if job else "",
            language=job.language if job else "",
            sku=job.sku if job else "",
            extra=dict(job.extra) if job else {},
            # Deterministic, so a rebuilt catalog holds the same rows.
            created_at=created or batch.registered_at,
            embedding=embedding or None,
            embedding_model=tag_set.embedding_model if embedding and tag_set else None,
            review=state.reviews[image.image_id].decision if image.image_id in state.reviews else "",
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
    n_aliases = catalog.replace_aliases(batch_key, [
        AliasEntry(image_id=a.image_id, file_name=f"{old}.png", raw_key=raw_image_key(batch_key, old))
        for a in assets if a.image_id in renamed for old in renamed[a.image_id].aliases
    ])

    tags_by_image = {i: t.tags for i, t in tagged.items()}
    tag_rows = {
        asset_id(batch_key, a.image_id): [
            TagEntry(label=t.label, group=t.kind, confidence=t.confidence, source=t.source)
            for t in tags_by_image.get(a.image_id, ())
        ]
        for a in assets
    }
    n_tags = sum(catalog.replace_tags_many(tag_rows).values()) if tag_rows else 0
    catalog.replace_category_overrides(batch_key, {i: (o.category, o.set_at) for i, o in overrides.items()})
    # Storage keeps no file times: an export is dated by the batch's latest known event (its
    # registration or newest image version), so a rebuilt catalog holds the same rows.
    exported_at = max([to_utc(batch.registered_at)] + [to_utc(v.created_at) for h in histories.values() for v in h.versions])
    # The batch's exports are its latest package's files: a package written in fewer formats drops the others.
    n_exports = catalog.upsert_exports(batch_key, summary.files, created_at=exported_at, replace=True) if summary else 0
    catalog.analyze()
    return CatalogCounts(batch_key, n_assets, n_versions, n_tags, n_exports, removed, n_aliases)


def rebuild(catalog: AssetCatalog, storage: AssetStorage, batches: Iterable[str] | None = None) -> list[CatalogCounts]:
    """Migrate the catalog, then catalog every batch registered in storage (`batches/*/source.json`);
    the counts of those catalogued (deleted batches are only removed)."""
    catalog.migrate()
    keys = registered_batches(storage) if batches is None else list(batches)
    return [counts for counts in (catalog_batch(catalog, storage, key) for key in keys) if not counts.deleted]


def categorize(catalog: AssetCatalog, storage: AssetStorage, asset: str, category: str | None) -> CategoryPath | None:
    """Set the hand-set category of catalog asset `asset` (`{batch}/{image_id}`) to the path
    `category` (checked: `primary` or `primary/sub`), or clear it with None; returns the path set.

    The override is written to the batch's storage first (the source of truth, which every later
    cataloguing applies), then the batch is catalogued again so that the catalog shows it at once.
    """
    batch_key, _, image_id = asset.partition("/")
    if not batch_key or not image_id:
        raise ValueError(f"asset id {asset!r} must be '{{batch}}/{{image_id}}' as `assetql search` lists it")
    path = parse_category_path(category) if category is not None else None
    open_batch(storage, batch_key)
    planned = [j.image_id for j in stage(storage, batch_key, "prompts", "has no planned images yet").jobs]
    if image_id not in planned:
        raise LookupError(f"batch {batch_key!r} has no image {image_id!r}; its images: {listing(planned)}")
    save_override(storage, batch_key, image_id, ManualCategory(path.path, now_iso()) if path else None)
    catalog.migrate()
    catalog_batch(catalog, storage, batch_key)
    return path
