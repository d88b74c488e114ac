"""The batch's package: manifest rows joining every stage's record, ZIP, gallery and shareable links."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

from PIL import Image

from assetql_dagster.domain.contact_sheet import thumbnail_bytes
from assetql_dagster.domain.export_writers import (
    EXPORT_FORMATS,
    MANIFEST_COLUMNS,
    ZipPackage,
    gallery_html,
    manifest_json,
    write_manifest_csv,
)
from assetql_dagster.domain.languages import DEFAULT_LANGUAGE
from assetql_dagster.domain.layout import export_key
from assetql_dagster.domain.localization import localize_category, localize_tags
from assetql_dagster.domain.links import links_rows, parse_expiry
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.domain.records import (
    BatchInput,
    ExportSummary,
    ImagePlan,
    ImageSet,
    ImageVersion,
    ScoreSet,
    StyleProfile,
    TagSet,
)
from assetql_dagster.domain.scoring import PARAMETERS
from assetql_dagster.domain.style_report import Drift, StyleReport, style_report
from assetql_dagster.pipeline.categorizing import load_overrides, with_overrides
from assetql_dagster.pipeline.drift import load_style_report
from assetql_dagster.pipeline.library_state import APPROVED, approved_images
from assetql_dagster.pipeline.regeneration import load_histories
from resources.storage import CDN_PUBLIC, CLOUDFRONT_SIGNED, LOCAL_LINKS, S3_PRESIGNED, AssetStorage

LINK_COLUMNS = ["file_name", "url", "expires_at", "embed_html", "local"]


def manifest_rows(
    batch: BatchInput, plan: ImagePlan, images: ImageSet, scores: ScoreSet, tags: TagSet,
    current: Mapping[str, ImageVersion] | None = None,
) -> list[dict]:
    """One lineage row per stored image, joining its plan, score and tags; `current` holds the current
    version of the images the style loop or a person regenerated, whose seed and prompt it used."""
    current = current or {}
    settings = batch.settings
    jobs = {j.image_id: j for j in plan.jobs}
    scored = {s.image_id: s for s in scores.images}
    tagged = {t.image_id: t for t in tags.images}
    rows = []
    for image in images.stored:
        job, score = jobs[image.image_id], scored[image.image_id]
        rows.append(
            {
                "batch": batch.batch,
                "variant_id": job.variant_id,
                "variation": job.variation,
                "file_name": image.file_name,
                "prompt": current[image.image_id].prompt if image.image_id in current else job.prompt,
                "model_prompt": job.prompt if job.model_prompt is None else job.model_prompt,
                "prompt_tokens_dropped": job.prompt_tokens_dropped,
                "negative_prompt": job.negative_prompt,
                "seed": current[image.image_id].seed if image.image_id in current else job.seed,
                "model": settings.model,
                "width": image.width,
                "height": image.height,
                "steps": settings.steps,
                "guidance_scale": settings.guidance_scale,
                "style_score": score.style_score,
                "clip_similarity": score.clip_similarity,
                **{f"{name}_score": getattr(score, f"{name}_score") for name in PARAMETERS},
                "verdict": score.verdict,
                "version": score.version,
                "attempts": score.attempts,
                "tags": [f"{t.label}:{t.confidence:.2f}" for t in tagged[image.image_id].tags],
                # The category path the tags stage found (or a person set); the CSV's value before
                # tags recorded paths.
                "category": tagged[image.image_id].category or job.category,
                # The same in the row's language, for the people (and alt texts) the batch is for.
                "tags_localized": localize_tags(tagged[image.image_id].tags, job.language or DEFAULT_LANGUAGE),
                "category_localized": localize_category(
                    tagged[image.image_id].category or job.category, job.language or DEFAULT_LANGUAGE),
                "category_source": tagged[image.image_id].category_source or "csv",
                "sku": job.sku,
                "language": job.language,
                # The row's own words before translation ("" when the prompt is the row's text).
                "original_prompt": job.original_prompt,
                "season": job.season,
                "campaign": batch.campaign,
                "extra": job.extra,
                # Its generation and a month of storage (None for batches generated before costing).
                "cost_usd": images.costs.get(image.image_id),
                "raw_key": image.raw_key,
            }
        )
    return rows


def batch_meta(batch: BatchInput, images: ImageSet) -> dict:
    return {
        "batch": batch.batch,
        "name": batch.name,
        "registered_at": batch.registered_at,
        "content_hash": batch.content_hash,
        "settings": dataclasses.asdict(batch.settings),
        "images": len(images.stored),
        # Images that failed after all retries are left out of the package; say which.
        "failed_rows": [dataclasses.asdict(f) for f in images.failed],
    }


def _links_note(signing: str, expires_in_s: int | None) -> str:
    """What the links manifest's readers need to know about its URLs: where they work and for how long."""
    notes = {
        LOCAL_LINKS: "file URIs on the machine holding the storage; they do not expire",
        S3_PRESIGNED: f"S3 presigned URLs, valid for {expires_in_s} s after the export was written",
        CLOUDFRONT_SIGNED: f"CloudFront signed CDN URLs, valid for {expires_in_s} s after the export was written",
        CDN_PUBLIC: "unsigned CDN URLs that do not expire; they work while the CDN distribution allows "
                    "public reads of the images",
    }
    return notes[signing]


def write_links(batch: str, storage: AssetStorage, rows: list[dict], settings: BatchSettings) -> dict:
    """`links.csv` and `links.json`: a shareable URL and an <img> embed snippet per image."""
    expires_in_s = parse_expiry(settings.link_expiry)
    # Asked before any link is made, so a lifetime the storage cannot sign fails with its reason.
    signing = storage.link_signing(expires_in_s)
    local = storage.links_are_local
    items = [{**row, "key": row["raw_key"], "alt": row["prompt"]} for row in rows]
    links = links_rows(items, lambda key: storage.link(key, expires_in_s), expires_in_s, local)
    document = {
        "batch": batch,
        "local": local,
        "signing": signing,
        "note": _links_note(signing, expires_in_s),
        "expires_in_s": expires_in_s,  # null for permanent links
        "links": links,
    }
    storage.write_bytes(export_key(batch, "links.csv"), write_manifest_csv(links, LINK_COLUMNS), "text/csv")
    uri = storage.write_text(
        export_key(batch, "links.json"), json.dumps(document, indent=2, ensure_ascii=False), "application/json"
    )
    # ExportSummary keeps a number: 0 stands for permanent links.
    return {"links": len(links), "links_local": local, "link_expiry_s": expires_in_s or 0, "links_manifest": uri}


def gallery_report(storage: AssetStorage, batch: str, scores: ScoreSet) -> tuple[StyleReport, Drift | None]:
    """The gallery's style report: figures of the exported scores, with the loop's numbers and the
    drift `curated_images` stored (without them when it stored none)."""
    stored = load_style_report(storage, batch)
    if stored is None:
        return style_report(scores), None
    loop, drift = stored
    report = style_report(scores, loop.pass_rate_before, loop.regenerated, loop.budget, loop.regeneration_seconds)
    return report, drift


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def exported_rows(
    storage: AssetStorage, batch: BatchInput, plan: ImagePlan, images: ImageSet, scores: ScoreSet, tags: TagSet,
    export_only: str,
) -> tuple[ImageSet, list[dict]]:
    """The images an export takes (`export_only`: all stored ones, or those approved in review) and
    their manifest rows, with the current versions and the categories people set."""
    key = batch.batch
    if export_only == APPROVED:
        # Read at export time, so approving more and exporting again takes them in.
        approved = approved_images(storage, key)
        images = dataclasses.replace(images, stored=tuple(i for i in images.stored if i.image_id in approved))
    current = {image_id: h.current_version for image_id, h in load_histories(storage, key).items()}
    tags = with_overrides(tags, load_overrides(storage, key))
    return images, manifest_rows(batch, plan, images, scores, tags, current)


def package(
    storage: AssetStorage,
    batch: BatchInput,
    plan: ImagePlan,
    images: ImageSet,
    scores: ScoreSet,
    tags: TagSet,
    profile: StyleProfile,
) -> tuple[ExportSummary, list[str]]:
    """Write what the batch's `exports` setting asks for, of the images its `export_only` setting
    takes (every stored one, or those approved in review); the summary and the manifest's columns."""
    key, exports = batch.batch, batch.settings.exports
    images, rows = exported_rows(storage, batch, plan, images, scores, tags, batch.settings.export_only)
    meta = batch_meta(batch, images)
    palette = [(c.hex, c.share) for c in profile.palette]
    # The galleries show the references small and embedded: a reference may be megabytes.
    references = [
        data_uri(thumbnail_bytes(Image.open(io.BytesIO(storage.read_bytes(ref))), size=128)) for ref in batch.references
    ]
    columns = [c for c in MANIFEST_COLUMNS if c in rows[0]] if rows else list(MANIFEST_COLUMNS)
    report, drift = gallery_report(storage, key, scores)
    manifest_csv = write_manifest_csv(rows, columns)
    manifest = manifest_json(rows, meta)
    files: dict[str, str] = {}
    summary = {}
    if "zip" in exports:
        with tempfile.TemporaryDirectory(prefix="assetql-export-") as tmp:
            zip_path = Path(tmp) / f"{key}.zip"
            with ZipPackage(zip_path) as zipped:
                for row in rows:
                    zipped.add_bytes(f"images/{row['file_name']}", storage.read_bytes(row["raw_key"]))
                zipped.add_bytes("manifest.csv", manifest_csv)
                zipped.add_bytes("manifest.json", manifest)
                index = gallery_html(
                    meta, rows, lambda r: f"images/{r['file_name']}", palette=palette, references=references,
                    style_report=report, drift=drift,
                )
                zipped.add_bytes("index.html", index.encode("utf-8"))
            summary["zip_bytes"] = zip_path.stat().st_size
            files["zip"] = export_key(key, f"{key}.zip")
            storage.write_file(files["zip"], zip_path, "application/zip")
    if "manifest" in exports:
        storage.write_bytes(export_key(key, "manifest.csv"), manifest_csv, "text/csv")
        files["manifest"] = export_key(key, "manifest.json")
        storage.write_bytes(files["manifest"], manifest, "application/json")
    if "gallery" in exports:
        # The standalone gallery embeds every thumbnail, so it still shows the batch when copied or
        # mailed on its own; next to the raw images in storage, each links to its full image.
        thumbs = {i.raw_key: data_uri(storage.read_bytes(i.thumb_key)) for i in images.stored}
        files["gallery"] = export_key(key, "gallery.html")
        page = gallery_html(
            meta, rows, lambda r: f"../../{r['raw_key']}", lambda r: thumbs[r["raw_key"]], palette, references,
            style_report=report, drift=drift,
        )
        storage.write_text(files["gallery"], page, "text/html; charset=utf-8")
    if "links" in exports:
        links = write_links(key, storage, rows, batch.settings)
        files["links_manifest"] = export_key(key, "links.json")
        summary.update({k: v for k, v in links.items() if k != "links_manifest"})
    # The package's own formats; the exporters' packages are assets of their own.
    package_formats = tuple(e for e in exports if e in EXPORT_FORMATS)
    return ExportSummary(len(rows), len(images.failed), package_formats, files, **summary), columns
