"""Bulk rename (`assetql rename`): new file names for a batch's images from a pattern, given to the
stored files, the batch's records, its package and the catalog together.

A pattern is rendered by the batch's own naming code (domain/naming.py), with the fields of
`RENAME_FIELDS` and the batch's extra CSV columns. `plan_rename` makes every check and changes
nothing: a pattern with an unknown field, a character no file name may hold (a path separator, a
space) or a name that is empty or too long is refused, and so is any name that would refer to two
images (two images renamed alike, or a name or old name another image has), each such name listed.
`rename` then applies the plan:

1. each stored image's PNG and thumbnail are copied to the keys of its new name; the old keys stay,
   so links to them keep working (showing the image as it was when it was renamed);
2. the records of the batch's stages (prompts, images, scores, curated_images, tags, versions)
   take the new names, so every later stage and command reads them;
3. the package (ZIP, manifests, gallery, links) is written again, when the batch has one;
4. `names.json` records each image's name and old names (see pipeline/names.py): planning reads
   it, so later runs keep the names. It is written after the rest: until then planning still gives
   the old names, and running the rename again completes it;
5. the catalog is updated from storage, old names as aliases of their asset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from assetql_dagster.domain.layout import raw_image_key, record_key, thumbnail_key
from assetql_dagster.domain.naming import (
    BUILTIN_PLACEHOLDERS,
    check_literal_text,
    image_identity,
    placeholder_values,
    render_name,
    validate_pattern,
)
from assetql_dagster.domain.records import BatchInput, ExportSummary, ImageJob, StoredImage
from assetql_dagster.pipeline.cataloguing import CatalogCounts, catalog_batch
from assetql_dagster.pipeline.names import ImageName, load_names, save_names
from assetql_dagster.pipeline.packaging import package
from assetql_dagster.pipeline.records import read_record, write_record
from assetql_dagster.pipeline.regeneration import load_histories, save_histories
from assetql_dagster.pipeline.versions import listing, open_batch, stage
from resources.catalog import AssetCatalog
from resources.storage import AssetStorage

# Besides the batch naming pattern's placeholders: the CSV line of the image's row, its id (its
# first name), its name now and its current version.
RENAME_FIELDS = BUILTIN_PLACEHOLDERS | {"row", "image_id", "name", "version"}
# The stage records that name images; `versions.json` is renamed with them.
NAMED_STAGES = ("prompts", "images", "scores", "curated_images", "tags")
SEARCH_PAGE = 500


@dataclasses.dataclass(frozen=True)
class Rename:
    """One image's file name before and after; `label` names it by variant and variation."""

    image_id: str
    label: str
    old: str
    new: str

    @property
    def new_stem(self) -> str:
        return self.new.removesuffix(".png")


@dataclasses.dataclass(frozen=True)
class RenamePlan:
    """What renaming images of `batch` by `pattern` does, checked and not yet applied."""

    batch: str
    pattern: str
    renames: tuple[Rename, ...]

    @property
    def changed(self) -> tuple[Rename, ...]:
        return tuple(r for r in self.renames if r.new != r.old)


class NameCollision(ValueError):
    """A rename refused because names would refer to more than one image; `lines` lists every such name."""

    def __init__(self, batch: str, lines: list[str]):
        self.batch, self.lines = batch, lines
        super().__init__(
            f"rename of batch {batch} refused, nothing was changed: {len(lines)} name(s) would each refer to "
            "more than one image (a name, even an old one, stays with one image); choose a pattern that tells "
            "them apart, e.g. with {variation} or {seq}:" + "".join(f"\n  {line}" for line in lines)
        )


def rename_fields(batch: BatchInput) -> set[str]:
    """The fields a rename pattern may use for `batch`: RENAME_FIELDS and its extra CSV columns."""
    return RENAME_FIELDS | {column for row in batch.rows for column in row.extra}


def label(job: ImageJob) -> str:
    return f"{job.variant_id}#{job.variation}"


def field_values(batch: BatchInput, job: ImageJob, seq: int, name: str, version: int) -> dict[str, str]:
    """Every field's value for one image: the naming pattern's placeholders as planning made them
    (the same {seq}, {timestamp} and {hash}), then the rename's own fields."""
    values = placeholder_values(
        batch=batch.name,
        variant_id=job.variant_id,
        variation=job.variation,
        identity=image_identity(batch.batch, job.variant_id, job.variation, job.seed),
        created_at=datetime.fromisoformat(batch.registered_at),
        seq=seq,
        category=job.category,
        sku=job.sku,
        extra=job.extra,
    )
    return {**values, "row": str(job.row), "image_id": job.image_id, "name": name, "version": str(version)}


def plan_rename(storage: AssetStorage, key: str, pattern: str, image_ids: Collection[str] | None = None) -> RenamePlan:
    """The new names of batch `key`'s images by `pattern` (of those in `image_ids`, default every
    planned image, generated or not); ValueError or LookupError, with nothing changed, for a pattern
    or selection it cannot apply, NameCollision for names that would refer to more than one image."""
    batch = open_batch(storage, key)
    check_literal_text(pattern)
    validate_pattern(pattern, rename_fields(batch))
    jobs = stage(storage, key, "prompts", "has no planned images yet").jobs
    selected = {j.image_id for j in jobs} if image_ids is None else set(image_ids)
    unknown = sorted(selected - {j.image_id for j in jobs})
    if unknown:
        raise LookupError(
            f"batch {key!r} has no image(s) {listing(unknown)}; if they come from the catalog, it is out of "
            "date: run assetql catalog rebuild"
        )
    renamed, histories = load_names(storage, key), load_histories(storage, key)
    held = {j.image_id: renamed[j.image_id].held() if j.image_id in renamed else (j.image_id,) for j in jobs}
    renames = []
    for seq, job in enumerate(jobs, start=1):
        if job.image_id not in selected:
            continue
        name = held[job.image_id][0]
        version = histories[job.image_id].current if job.image_id in histories else 1
        try:
            new = render_name(pattern, field_values(batch, job, seq, name, version), strict=True)
        except ValueError as err:
            raise ValueError(f"image {name}.png ({label(job)}) of batch {key}: {err}") from None
        renames.append(Rename(job.image_id, label(job), f"{name}.png", f"{new}.png"))
    labels = {j.image_id: label(j) for j in jobs}
    problems = collisions(renames, held, labels)
    if problems:
        raise NameCollision(key, problems)
    return RenamePlan(key, pattern, tuple(renames))


def collisions(renames: list[Rename], held: Mapping[str, tuple[str, ...]], labels: Mapping[str, str]) -> list[str]:
    """A line per new name that would refer to more than one image, compared as file systems that
    ignore case do: taken by two renamed images, or the name or an old name of another image.
    `held` is every image's name and old names (by image id)."""
    owners = {stem.casefold(): image_id for image_id, stems in held.items() for stem in stems}
    by_name: dict[str, list[Rename]] = {}
    for r in renames:
        by_name.setdefault(r.new_stem.casefold(), []).append(r)
    lines = []
    for group in (by_name[name] for name in sorted(by_name)):
        owner = owners.get(group[0].new_stem.casefold())
        other = owner is not None and owner not in {r.image_id for r in group}
        if len(group) < 2 and not other:
            continue
        line = f"{group[0].new} for {listing([r.label for r in group])}"
        if other:
            what = "the name" if held[owner][0].casefold() == group[0].new_stem.casefold() else "an old name"
            line += f", but it is {what} of {labels[owner]}"
        lines.append(line)
    return lines


def select_by_query(catalog: AssetCatalog, query: str, batch: str | None = None) -> dict[str, list[str]]:
    """The image ids the catalog finds for `query` (its full-text search, as `assetql search`), by batch."""
    if not query.strip():
        raise ValueError("--query needs words to search for; to rename every image of a batch give --batch alone")
    if catalog.current_revision() is None:
        raise LookupError("the catalog is empty or not created yet: run assetql catalog rebuild first")
    found: dict[str, list[str]] = {}
    offset = 0
    while True:
        rows = catalog.search(query, batch=batch, limit=SEARCH_PAGE, offset=offset)
        for row in rows:
            found.setdefault(row["batch_key"], []).append(row["image_id"])
        if len(rows) < SEARCH_PAGE:
            break
        offset += SEARCH_PAGE
    if not found:
        where = f" in batch {batch}" if batch else ""
        raise LookupError(
            f"no catalogued image matches {query!r}{where}; if the catalog is out of date: assetql catalog rebuild"
        )
    return found


def renamed(value: Any, stems: Mapping[str, str], batch: str) -> Any:
    """`value` (a stage record or part of one) with the images of `stems` (image id -> file stem)
    under those names: their file name, and for a stored image its raw/ and thumbnails/ keys."""
    if isinstance(value, tuple):
        items = tuple(renamed(v, stems, batch) for v in value)
        return value if all(a is b for a, b in zip(items, value)) else items
    if not dataclasses.is_dataclass(value):
        return value
    changes = {}
    for field in dataclasses.fields(value):
        before = getattr(value, field.name)
        after = renamed(before, stems, batch)
        if after is not before:
            changes[field.name] = after
    stem = stems.get(getattr(value, "image_id", None))
    if stem is not None and hasattr(value, "file_name") and value.file_name != f"{stem}.png":
        changes["file_name"] = f"{stem}.png"
        if isinstance(value, StoredImage):
            changes.update(raw_key=raw_image_key(batch, stem), thumb_key=thumbnail_key(batch, stem))
    return dataclasses.replace(value, **changes) if changes else value


def reexport(storage: AssetStorage, key: str, export_only: str | None = None,
             exports: tuple[str, ...] | None = None) -> ExportSummary:
    """The batch's package written again from its stored records, as the `exports` asset writes it;
    `export_only` (all, approved) and `exports` (formats) replace the batch's own settings for this
    package."""
    curation = read_record(storage, key, "curated_images")
    batch = read_record(storage, key, "batch_input")
    changes = {k: v for k, v in (("export_only", export_only), ("exports", exports)) if v is not None}
    if changes:
        batch = dataclasses.replace(batch, settings=dataclasses.replace(batch.settings, **changes))
    summary, _ = package(
        storage, batch, read_record(storage, key, "prompts"), curation.images,
        curation.scores, read_record(storage, key, "tags"), read_record(storage, key, "style_profile"),
    )
    write_record(storage, record_key(key, "exports"), summary)
    return summary


def rename(
    storage: AssetStorage, catalog: AssetCatalog, plan: RenamePlan
) -> tuple[ExportSummary | None, CatalogCounts]:
    """Apply `plan` (see the module's steps): the package written again (None when the batch was
    not exported yet) and the catalog's rows of the batch."""
    key = plan.batch
    names = load_names(storage, key)
    images = read_record(storage, key, "images") if storage.exists(record_key(key, "images")) else None
    stored = {r.image_id: r for r in images.stored} if images else {}
    for r in plan.changed:
        if r.image_id in stored:
            record = stored[r.image_id]
            storage.write_bytes(raw_image_key(key, r.new_stem), storage.read_bytes(record.raw_key), "image/png")
            storage.write_bytes(thumbnail_key(key, r.new_stem), storage.read_bytes(record.thumb_key), "image/jpeg")
        before = names.get(r.image_id, ImageName(r.image_id))
        # The name it leaves becomes an old name; taking back an old name makes it the name again.
        aliases = [a for a in (*before.aliases, before.name) if a != r.new_stem]
        names[r.image_id] = ImageName(r.new_stem, tuple(dict.fromkeys(aliases)))
    # Every renamed image, not only this plan's: a rename cut short before is completed too.
    stems = {image_id: n.name for image_id, n in names.items()}
    for name in NAMED_STAGES:
        if storage.exists(record_key(key, name)):
            write_record(storage, record_key(key, name), renamed(read_record(storage, key, name), stems, key))
    histories = load_histories(storage, key)
    if histories:
        save_histories(storage, key, {i: renamed(h, stems, key) for i, h in histories.items()})
    summary = reexport(storage, key) if storage.exists(record_key(key, "exports")) else None
    save_names(storage, key, names)
    catalog.migrate()
    return summary, catalog_batch(catalog, storage, key)
