import json
import tempfile
import time
from pathlib import Path

import dagster as dg

from assetql_dagster.defs.assets.tags import tags
from assetql_dagster.domain.export_writers import MANIFEST_COLUMNS, ZipPackage, gallery_html, manifest_json, write_manifest_csv
from assetql_dagster.domain.layout import export_key
from assetql_dagster.domain.links import links_rows, parse_expiry
from assetql_dagster.domain.settings import BatchSettings, settings_from_dict
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.records import read_record, write_record
from resources.storage import AssetStorage


LINK_COLUMNS = ["file_name", "url", "expires_at", "embed_html", "local"]


def write_links(batch: str, storage: AssetStorage, rows: list[dict], settings: BatchSettings) -> dict:
    """`links.csv` and `links.json`: a shareable URL and an <img> embed snippet per image."""
    expires_in_s = parse_expiry(settings.link_expiry)
    local = storage.links_are_local
    items = [{**row, "key": row["raw_key"], "alt": row["prompt"]} for row in rows]
    links = links_rows(items, lambda key: storage.link(key, expires_in_s), expires_in_s, local)
    document = {
        "batch": batch,
        "local": local,
        # Presigned URLs stop working after the expiry; local file URIs only work on this machine.
        "note": "file URIs on the machine holding the storage; they do not expire" if local
        else f"presigned URLs, valid for {expires_in_s} s after the export was written",
        "expires_in_s": expires_in_s,
        "links": links,
    }
    storage.write_bytes(export_key(batch, "links.csv"), write_manifest_csv(links, LINK_COLUMNS), "text/csv")
    uri = storage.write_text(
        export_key(batch, "links.json"), json.dumps(document, indent=2, ensure_ascii=False), "application/json"
    )
    return {"links": len(links), "links_local": local, "link_expiry_s": expires_in_s, "links_manifest": uri}


def manifest_rows(batch: str, storage: AssetStorage) -> tuple[dict, list[dict], BatchSettings]:
    """Batch metadata, one lineage row per image (joining prompts, images, scores and tags), settings."""
    inputs = read_record(storage, batch, "batch_input")
    settings = settings_from_dict(inputs["settings"])
    jobs = {j["image_id"]: j for j in read_record(storage, batch, "prompts")}
    scored = {s["image_id"]: s for s in read_record(storage, batch, "scores")["images"]}
    tagged = {t["image_id"]: t["tags"] for t in read_record(storage, batch, "tags")}
    rows = []
    for image in read_record(storage, batch, "images"):
        job, score = jobs[image["image_id"]], scored[image["image_id"]]
        rows.append(
            {
                "batch": batch,
                "variant_id": job["variant_id"],
                "variation": job["variation"],
                "file_name": image["file_name"],
                "prompt": job["prompt"],
                "negative_prompt": job["negative_prompt"],
                "seed": job["seed"],
                "model": settings.model,
                "width": image["width"],
                "height": image["height"],
                "steps": settings.steps,
                "guidance_scale": settings.guidance_scale,
                "style_score": score["style_score"],
                "clip_similarity": score["clip_similarity"],
                "color_similarity": score["color_similarity"],
                "verdict": score["verdict"],
                "tags": [f"{t['label']}:{t['confidence']:.2f}" for t in tagged[image["image_id"]]],
                "category": job["category"],
                "sku": job["sku"],
                "language": job["language"],
                "extra": job["extra"],
                "raw_key": image["raw_key"],
            }
        )
    meta = {
        "batch": batch,
        "name": inputs["name"],
        "registered_at": inputs["registered_at"],
        "content_hash": inputs["content_hash"],
        "settings": inputs["settings"],
        "images": len(rows),
        # Images that failed after all retries are left out of the package; say which.
        "failed_rows": read_record(storage, batch, "failed_rows"),
    }
    return meta, rows, settings


@dg.asset(partitions_def=batches_partitions, deps=[tags], group_name="batch", kinds={"zip"})
def exports(context: dg.AssetExecutionContext, storage: AssetStorage) -> dg.MaterializeResult:
    """The batch's package: ZIP of images with manifest CSV/JSON and an HTML gallery, plus links."""
    started = time.perf_counter()
    batch = context.partition_key
    meta, rows, settings = manifest_rows(batch, storage)
    columns = [c for c in MANIFEST_COLUMNS if c in rows[0]] if rows else list(MANIFEST_COLUMNS)
    manifest_csv = write_manifest_csv(rows, columns)
    manifest = manifest_json(rows, meta)

    summary: dict = {"images": len(rows)}
    if "zip" in settings.exports:
        with tempfile.TemporaryDirectory(prefix="assetql-export-") as tmp:
            zip_path = Path(tmp) / f"{batch}.zip"
            with ZipPackage(zip_path) as package:
                for row in rows:
                    package.add_bytes(f"images/{row['file_name']}", storage.read_bytes(row["raw_key"]))
                package.add_bytes("manifest.csv", manifest_csv)
                package.add_bytes("manifest.json", manifest)
                gallery = gallery_html(meta, rows, lambda r: f"images/{r['file_name']}")
                package.add_bytes("index.html", gallery.encode("utf-8"))
            summary["zip_bytes"] = zip_path.stat().st_size
            summary["zip"] = storage.write_file(export_key(batch, f"{batch}.zip"), zip_path, "application/zip")
    if "manifest" in settings.exports:
        storage.write_bytes(export_key(batch, "manifest.csv"), manifest_csv, "text/csv")
        summary["manifest"] = storage.write_bytes(export_key(batch, "manifest.json"), manifest, "application/json")
    if "gallery" in settings.exports:
        # Next to the raw images in storage, the gallery links to them relative to exports/{batch}/.
        summary["gallery"] = storage.write_text(
            export_key(batch, "gallery.html"),
            gallery_html(meta, rows, lambda r: f"../../{r['raw_key']}"),
            "text/html; charset=utf-8",
        )
    if "links" in settings.exports:
        summary.update(write_links(batch, storage, rows, settings))
    write_record(storage, batch, "exports", summary)
    context.log.info(f"{batch}: exported {', '.join(settings.exports)} under {export_key(batch, '')}")
    if meta["failed_rows"]:
        context.log.warning(
            f"{batch}: exported {len(rows)} images without {len(meta['failed_rows'])} failed one(s); "
            f"see failed_rows in manifest.json, or re-run them with: assetql retry-failed {batch}"
        )
    return dg.MaterializeResult(
        metadata={
            **summary,
            "exports": ", ".join(settings.exports),
            "failed_rows": len(meta["failed_rows"]),
            "manifest_columns": dg.MetadataValue.json(columns),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
