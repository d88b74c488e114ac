import io
import time

import dagster as dg
import numpy as np
from PIL import Image

from assetql_dagster.defs.assets.batch_input import batch_input
from assetql_dagster.domain.contact_sheet import contact_sheet_markdown
from assetql_dagster.domain.palette import brightness, color_histogram, contrast, mean_histogram, palette_of_images
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.pipeline.records import read_record, write_array, write_record
from gpu_executor import GPU_TAG
from resources.clip import ClipEmbedder
from resources.storage import AssetStorage

NO_REFERENCE = "no style reference"


@dg.asset(partitions_def=batches_partitions, deps=[batch_input], group_name="batch", kinds={"pytorch"}, op_tags={GPU_TAG: "true"})
def style_profile(
    context: dg.AssetExecutionContext, storage: AssetStorage, clip: ClipEmbedder
) -> dg.MaterializeResult:
    """CLIP embedding, palette, brightness and contrast of the batch's style references."""
    started = time.perf_counter()
    batch = context.partition_key
    inputs = read_record(storage, batch, "batch_input")
    refs = [Image.open(io.BytesIO(storage.read_bytes(k))).convert("RGB") for k in inputs["references"]]
    if not refs:
        profile = {"has_reference": False, "reason": NO_REFERENCE, "references": []}
        write_record(storage, batch, "style_profile", profile)
        context.log.warning(f"batch {batch} has no style reference: images will be unscored")
        return dg.MaterializeResult(metadata={"has_reference": False, "reason": NO_REFERENCE})

    loaded = clip.load()
    embedding = loaded.embed_images(refs).mean(axis=0)
    embedding = (embedding / np.linalg.norm(embedding)).astype(np.float32)
    palette = palette_of_images(refs)
    profile = {
        "has_reference": True,
        "references": inputs["references"],
        "clip_model": clip.model_name,
        "embedding_dim": int(embedding.shape[0]),
        "palette": [{"hex": h, "share": round(s, 4)} for h, s in palette],
        "brightness": round(float(np.mean([brightness(r) for r in refs])), 4),
        "contrast": round(float(np.mean([contrast(r) for r in refs])), 4),
        "histogram": mean_histogram([color_histogram(r) for r in refs]).round(6).tolist(),
    }
    write_array(storage, batch, "style_embedding", embedding)
    write_record(storage, batch, "style_profile", profile)
    swatches = " ".join(f"`{p['hex']}` {p['share']:.0%}" for p in profile["palette"])
    return dg.MaterializeResult(
        metadata={
            "has_reference": True,
            "references": len(refs),
            "palette": swatches,
            "brightness": profile["brightness"],
            "contrast": profile["contrast"],
            "references_preview": dg.MetadataValue.md(
                contact_sheet_markdown([(k.rsplit("/", 1)[-1], r) for k, r in zip(inputs["references"], refs)])
            ),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
