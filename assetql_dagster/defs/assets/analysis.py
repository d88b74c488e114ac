"""`scores` and `tags`: two assets computed in one step, so every image is read and embedded once."""

from collections import Counter

import dagster as dg
import numpy as np

from assetql_dagster.defs.gpu import GPU_OP_TAGS, GPU_POOL
from assetql_dagster.defs.metadata import contact_sheet, markdown_table
from assetql_dagster.defs.partitions import batch_check_spec, batches_partitions
from assetql_dagster.defs.quality import flag_failed_check
from assetql_dagster.domain.records import BatchInput, ImagePlan, ImageSet, ScoreSet, StyleProfile, TagSet
from assetql_dagster.domain.scoring import pass_rate
from assetql_dagster.pipeline.analysis import UNSCORED, analyse
from resources.clip import ClipEmbedder
from resources.storage import AssetStorage

STYLE_PASS_RATE = batch_check_spec(
    "style_pass_rate", "scores", "Share of images whose style score meets the batch threshold (default at least 85%)."
)


@dg.multi_asset(
    outs={
        "scores": dg.AssetOut(
            dagster_type=ScoreSet,
            description="Style score per image: palette, lighting, composition, texture and embedding scores "
            "against the style profile, combined with weights that follow the batch's locks.",
            group_name="batch",
            kinds={"pytorch"},
        ),
        "tags": dg.AssetOut(
            dagster_type=TagSet,
            description="At least five tags per image, each with a confidence: colours, mood, composition, "
            "category, CLIP labels.",
            group_name="batch",
            kinds={"pytorch"},
        ),
    },
    # What each record is computed from, so the UI's lineage is the data flow.
    internal_asset_deps={
        "scores": {dg.AssetKey(k) for k in ("batch_input", "images", "style_profile")},
        "tags": {dg.AssetKey(k) for k in ("images", "prompts")},
    },
    check_specs=[STYLE_PASS_RATE],
    partitions_def=batches_partitions,
    op_tags=GPU_OP_TAGS,
    pool=GPU_POOL,
)
def image_analysis(
    context: dg.AssetExecutionContext,
    storage: AssetStorage,
    clip: ClipEmbedder,
    batch_input: BatchInput,
    prompts: ImagePlan,
    images: ImageSet,
    style_profile: StyleProfile,
):
    """Scores and tags of every stored image, from one read and one CLIP pass per image."""
    loads = clip.loads()
    scores, tags = analyse(storage, images, prompts.jobs, style_profile, batch_input.settings, clip.load())
    model_loads = clip.loads() - loads
    yield dg.Output(scores, "scores", metadata=score_metadata(storage, images, scores, style_profile, model_loads))
    counts = Counter(t.label for image in tags.images for t in image.tags)
    yield dg.Output(
        tags,
        "tags",
        metadata={
            "images": len(tags.images),
            "min_tags_per_image": min((len(r.tags) for r in tags.images), default=0),
            "top_tags": markdown_table(["tag", "images"], counts.most_common(15)),
        },
    )
    yield flag_failed_check(context, pass_rate_check(scores, batch_input.settings.min_pass_rate))


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


def pass_rate_check(scores: ScoreSet, minimum: float) -> dg.AssetCheckResult:
    verdicts = [s.verdict for s in scores.images]
    common = {"check_name": STYLE_PASS_RATE.name, "asset_key": STYLE_PASS_RATE.asset_key, "severity": dg.AssetCheckSeverity.WARN}
    if verdicts and all(v == UNSCORED for v in verdicts):
        return dg.AssetCheckResult(
            passed=True,
            description="no style reference: style pass rate not applicable",
            metadata={"images": len(verdicts)},
            **common,
        )
    rate = pass_rate(verdicts)
    return dg.AssetCheckResult(
        passed=rate >= minimum,
        description=f"{rate:.1%} of images pass the style threshold (minimum {minimum:.0%})",
        metadata={"pass_rate": rate, "minimum": minimum, "review": verdicts.count("review")},
        **common,
    )
