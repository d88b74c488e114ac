import time

import dagster as dg
import numpy as np

from assetql_dagster.defs.assets.images import contact_sheet, images
from assetql_dagster.defs.assets.style_profile import NO_REFERENCE, style_profile
from assetql_dagster.domain.palette import color_histogram, histogram_similarity
from assetql_dagster.domain.scoring import STYLE_WEIGHTS, pass_rate, style_score, verdict
from assetql_dagster.pipeline.images_io import iter_image_chunks
from assetql_dagster.defs.partitions import batches_partitions
from gpu_executor import GPU_TAG
from assetql_dagster.pipeline.records import read_array, read_record, read_settings, write_array, write_record
from resources.clip import ClipEmbedder
from resources.storage import AssetStorage

UNSCORED = "unscored"


@dg.asset(
    partitions_def=batches_partitions,
    deps=[images, style_profile],
    group_name="batch",
    kinds={"pytorch"},
    op_tags={GPU_TAG: "true"},
)
def scores(context: dg.AssetExecutionContext, storage: AssetStorage, clip: ClipEmbedder) -> dg.MaterializeResult:
    """Style score per image: CLIP similarity and colour-histogram similarity to the style profile."""
    started = time.perf_counter()
    batch = context.partition_key
    threshold = read_settings(storage, batch).style_threshold
    profile = read_record(storage, batch, "style_profile")
    records = read_record(storage, batch, "images")
    loaded = clip.load()
    reference = read_array(storage, batch, "style_embedding") if profile["has_reference"] else None
    reference_hist = np.asarray(profile["histogram"]) if profile["has_reference"] else None

    results, embeddings = [], []
    for part, imgs in iter_image_chunks(storage, records):
        emb = loaded.embed_images(imgs)
        embeddings.append(emb)
        for record, img, vec in zip(part, imgs, emb):
            row = {"image_id": record["image_id"], "file_name": record["file_name"]}
            if reference is None:
                row.update(style_score=None, clip_similarity=None, color_similarity=None,
                           verdict=UNSCORED, note=NO_REFERENCE)
            else:
                cos = float(np.dot(vec, reference))
                hist = histogram_similarity(color_histogram(img), reference_hist)
                score = style_score(cos, hist)
                row.update(style_score=round(score, 4), clip_similarity=round(cos, 4),
                           color_similarity=round(hist, 4), verdict=verdict(score, threshold))
            results.append(row)
    # Tags reuse these embeddings for zero-shot labels instead of encoding every image twice.
    write_array(storage, batch, "image_embeddings", np.concatenate(embeddings) if embeddings else np.zeros((0, 0)))
    write_record(storage, batch, "scores", {"threshold": threshold, "weights": STYLE_WEIGHTS, "images": results})

    scored = [r["style_score"] for r in results if r["style_score"] is not None]
    metadata = {
        "images": len(results),
        "threshold": threshold,
        "weights": dg.MetadataValue.json(STYLE_WEIGHTS),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if scored:
        metadata.update(
            mean_style_score=round(float(np.mean(scored)), 4),
            min_style_score=round(float(np.min(scored)), 4),
            pass_rate=round(pass_rate([r["verdict"] for r in results]), 4),
        )
    else:
        metadata["note"] = NO_REFERENCE
    captions = {
        r["image_id"]: f"{r['file_name']} {r['verdict']}"
        + (f" {r['style_score']:.2f}" if r["style_score"] is not None else "")
        for r in results
    }
    metadata["contact_sheet"] = dg.MetadataValue.md(contact_sheet(storage, records, captions))
    return dg.MaterializeResult(metadata=metadata)
