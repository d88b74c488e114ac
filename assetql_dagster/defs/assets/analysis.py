"""`scores` (of every image's first generation, which the style loop starts from) and `tags` (of the
images the loop leaves current)."""

from collections import Counter

import dagster as dg
import numpy as np

from assetql_dagster.defs.gpu import GPU_OP_TAGS, GPU_POOL
from assetql_dagster.defs.metadata import contact_sheet, markdown_table
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.domain.records import BatchInput, Curation, ImagePlan, ImageSet, ScoreSet, StyleProfile, TagSet
from assetql_dagster.domain.scoring import pass_rate
from assetql_dagster.pipeline.analysis import score_images, tag_images
from resources.clip import ClipEmbedder
from resources.storage import AssetStorage
from resources.vision_tagger import VisionTagger


@dg.asset(
    partitions_def=batches_partitions,
    group_name="batch",
    kinds={"pytorch"},
    op_tags=GPU_OP_TAGS,
    pool=GPU_POOL,
)
def scores(
    storage: AssetStorage, clip: ClipEmbedder, batch_input: BatchInput, images: ImageSet, style_profile: StyleProfile
) -> dg.Output[ScoreSet]:
    """Style scores of the first generation of every image: per parameter and combined."""
    loads = clip.loads()
    result = score_images(storage, images, style_profile, batch_input.settings, clip.load())
    return dg.Output(result, metadata=score_metadata(storage, images, result, style_profile, clip.loads() - loads))


@dg.asset(
    partitions_def=batches_partitions,
    group_name="batch",
    kinds={"pytorch"},
    op_tags=GPU_OP_TAGS,
    pool=GPU_POOL,
)
def tags(
    context: dg.AssetExecutionContext,
    storage: AssetStorage,
    clip: ClipEmbedder,
    vision_tagger: VisionTagger,
    batch_input: BatchInput,
    prompts: ImagePlan,
    curated_images: Curation,
) -> dg.Output[TagSet]:
    """At least five tags per current image, each with a confidence and a source (pixels, CSV, prompt
    keywords, CLIP or Bedrock), and its category path."""
    result = tag_images(
        storage, batch_input.settings, curated_images.images, prompts.jobs, clip.load(), vision_tagger,
        context.log.warning,
    )
    counts = Counter(t.label for image in result.images for t in image.tags)
    return dg.Output(
        result,
        metadata={
            "images": len(result.images),
            "tagger": batch_input.settings.tagger,
            "min_tags_per_image": min((len(r.tags) for r in result.images), default=0),
            "tag_sources": dg.MetadataValue.json(dict(Counter(t.source for r in result.images for t in r.tags))),
            "category_sources": dg.MetadataValue.json(
                dict(Counter(r.category_source or "uncategorised" for r in result.images))
            ),
            "top_tags": markdown_table(["tag", "images"], counts.most_common(15)),
        },
    )


def score_metadata(storage: AssetStorage, images: ImageSet, scores: ScoreSet, profile: StyleProfile, model_loads: int) -> dict:
    scored = [r.style_score for r in scores.images if r.style_score is not None]
    metadata = {
        "images": len(scores.images),
        "threshold": scores.threshold,
        "weights": dg.MetadataValue.json(scores.weights),
        "model_loads": model_loads,
    }
    if scored:
        metadata.update(
            mean_style_score=round(float(np.mean(scored)), 4),
            min_style_score=round(float(np.min(scored)), 4),
            pass_rate=round(pass_rate([r.verdict for r in scores.images]), 4),
        )
    else:
        metadata["note"] = profile.reason
    captions = {
        r.image_id: f"{r.file_name} {r.verdict}" + (f" {r.style_score:.2f}" if r.style_score is not None else "")
        for r in scores.images
    }
    metadata["contact_sheet"] = contact_sheet(storage, images.stored, captions)
    return metadata
