import time
from collections import Counter

import dagster as dg
import numpy as np

from assetql_dagster.defs.assets.scores import scores
from assetql_dagster.domain.palette import brightness, contrast, dominant_palette
from assetql_dagster.domain.tagging import (
    ZERO_SHOT_VOCABULARY,
    category_tag,
    color_tags,
    composition_tags,
    merge_tags,
    mood_tags,
    zero_shot_prompt,
    zero_shot_tags,
)
from assetql_dagster.pipeline.images_io import iter_image_chunks
from assetql_dagster.defs.metadata import markdown_table
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.records import read_array, read_record, write_record
from gpu_executor import GPU_TAG
from resources.clip import ClipEmbedder
from resources.storage import AssetStorage


def zero_shot_probabilities(loaded, embeddings: np.ndarray) -> dict[str, np.ndarray]:
    """Per vocabulary kind, a [n_images, n_labels] matrix of CLIP zero-shot probabilities."""
    return {
        kind: loaded.zero_shot(embeddings, labels, [zero_shot_prompt(label, kind) for label in labels])
        for kind, labels in ZERO_SHOT_VOCABULARY.items()
    }


@dg.asset(partitions_def=batches_partitions, deps=[scores], group_name="batch", kinds={"pytorch"}, op_tags={GPU_TAG: "true"})
def tags(context: dg.AssetExecutionContext, storage: AssetStorage, clip: ClipEmbedder) -> dg.MaterializeResult:
    """At least five tags per image, each with a confidence: colours, mood, composition, category, CLIP labels."""
    started = time.perf_counter()
    batch = context.partition_key
    records = read_record(storage, batch, "images")
    categories = {j["image_id"]: j["category"] for j in read_record(storage, batch, "prompts")}
    probs = zero_shot_probabilities(clip.load(), read_array(storage, batch, "image_embeddings"))

    results, counts, index = [], Counter(), 0
    for part, imgs in iter_image_chunks(storage, records):
        for record, img in zip(part, imgs):
            labelled = {
                kind: list(zip(ZERO_SHOT_VOCABULARY[kind], (float(p) for p in matrix[index])))
                for kind, matrix in probs.items()
            }
            merged = merge_tags(
                color_tags(dominant_palette(img, k=5)),
                mood_tags(brightness(img), contrast(img)),
                composition_tags(record["width"], record["height"]),
                category_tag(categories[record["image_id"]]),
                zero_shot_tags(labelled),
            )
            counts.update(t.label for t in merged)
            results.append(
                {
                    "image_id": record["image_id"],
                    "file_name": record["file_name"],
                    "tags": [{"label": t.label, "kind": t.kind, "confidence": round(t.confidence, 4)} for t in merged],
                }
            )
            index += 1
    write_record(storage, batch, "tags", results)
    return dg.MaterializeResult(
        metadata={
            "images": len(results),
            "min_tags_per_image": min((len(r["tags"]) for r in results), default=0),
            "top_tags": dg.MetadataValue.md(markdown_table(["tag", "images"], counts.most_common(15))),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
