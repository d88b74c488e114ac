"""The style loop as a stage of the graph: `curated_images`, between `scores` and `tags`."""

import time

import dagster as dg

from assetql_dagster.defs.assets.images import SHARD_RETRY_POLICY
from assetql_dagster.defs.gpu import GPU_OP_TAGS, GPU_POOL
from assetql_dagster.defs.metadata import contact_sheet, markdown_table
from assetql_dagster.defs.partitions import batch_check_spec, batches_partitions
from assetql_dagster.defs.quality import flag_failed_check
from assetql_dagster.domain.records import BatchInput, Curation, ImagePlan, ImageSet, ScoreSet, StyleProfile
from assetql_dagster.domain.scoring import PASS, pass_rate
from assetql_dagster.domain.style_report import (
    MAX_CENTROID_DISTANCE,
    MAX_SCORE_DELTA,
    MAX_STYLE_CV,
    Drift,
    StyleReport,
    report_markdown,
    spread_passes,
)
from assetql_dagster.pipeline.analysis import UNSCORED
from assetql_dagster.pipeline.drift import batch_style
from assetql_dagster.pipeline.regeneration import (
    final_scores,
    load_histories,
    loop_functions,
    regeneration_budget,
    run_loop,
    save_histories,
)
from resources.clip import ClipEmbedder
from resources.generator import ImageGenerator
from resources.storage import AssetStorage

STYLE_PASS_RATE = batch_check_spec(
    "style_pass_rate",
    "curated_images",
    "Share of images whose style score meets the batch threshold after the style loop (default at least 85%).",
)
STYLE_SPREAD = batch_check_spec(
    "style_spread",
    "curated_images",
    f"Style scores vary by less than {MAX_STYLE_CV:.0%} across the batch (coefficient of variation, after "
    "the style loop).",
)
STYLE_DRIFT = batch_check_spec(
    "style_drift",
    "curated_images",
    f"Mean style score within {MAX_SCORE_DELTA} and CLIP embedding centroid within cosine distance "
    f"{MAX_CENTROID_DISTANCE} of the latest earlier batches of the same style profile.",
)


@dg.asset(
    partitions_def=batches_partitions,
    group_name="batch",
    kinds={"pytorch"},
    op_tags=GPU_OP_TAGS,
    pool=GPU_POOL,
    retry_policy=SHARD_RETRY_POLICY,
    check_specs=[STYLE_PASS_RATE, STYLE_SPREAD, STYLE_DRIFT],
)
def curated_images(
    context: dg.AssetExecutionContext,
    storage: AssetStorage,
    generator: ImageGenerator,
    clip: ClipEmbedder,
    batch_input: BatchInput,
    prompts: ImagePlan,
    images: ImageSet,
    scores: ScoreSet,
    style_profile: StyleProfile,
):
    """The best version of every image: those below the style threshold regenerated, new seed first, then stronger style."""
    batch, settings = batch_input.batch, batch_input.settings
    histories = load_histories(storage, batch)
    budget = regeneration_budget(settings.regeneration_budget, images.planned)
    has_scores = any(s.style_score is not None for s in scores.images)
    below = [s for s in scores.images if s.verdict != PASS and s.style_score is not None]
    report = None
    if below and settings.max_attempts > 1 and budget > 0:
        generate, score = loop_functions(storage, batch_input, style_profile, generator, clip)
        started = time.perf_counter()
        report = run_loop(
            storage, batch, {j.image_id: j for j in prompts.jobs}, images.stored, scores, histories,
            settings.max_attempts, budget, generate, score, lambda h: save_histories(storage, batch, h),
        )
        context.log.info(
            f"{batch}: regenerated {report.regenerated} image(s) in {report.rounds} round(s), "
            f"{time.perf_counter() - started:.1f} s; budget left {report.budget_left} of {budget}"
        )
    final = final_scores(scores, histories)
    curation = Curation(
        images=images,
        scores=final,
        pass_rate_before=pass_rate([s.verdict for s in scores.images]) if has_scores else 0.0,
        regenerated=report.regenerated if report else 0,
        budget=budget,
        seconds_generating=round(report.seconds_generating, 3) if report else 0.0,
    )
    style, drift = batch_style(storage, batch_input, curation, clip.model_name, clip.load)
    yield dg.Output(curation, metadata=curation_metadata(storage, curation, style, drift))
    yield flag_failed_check(context, pass_rate_check(final, settings.min_pass_rate))
    yield flag_failed_check(context, spread_check(style))
    yield flag_failed_check(context, drift_check(drift))


def curation_metadata(storage: AssetStorage, curation: Curation, style: StyleReport, drift: Drift) -> dict:
    """The loop's numbers, the style report (table and distribution plot) and a contact sheet."""
    final = curation.scores.images
    metadata = {
        "images": len(final),
        "regenerated": curation.regenerated,
        "regeneration_budget": curation.budget,
        "regeneration_seconds": curation.seconds_generating,
        "pass_rate_before": round(curation.pass_rate_before, 4),
        "attempts": markdown_table(["attempts", "images"], sorted(style.attempts.items())),
        "style_report": dg.MetadataValue.md(report_markdown(style, drift)),
    }
    if style.seconds_per_regenerated_image is not None:
        metadata["regeneration_seconds_per_image"] = round(style.seconds_per_regenerated_image, 3)
    if style.scored:
        metadata.update(
            pass_rate_after=round(style.pass_rate_after, 4),
            mean_style_score=round(style.mean, 4),
            style_score_std=round(style.std, 4),
        )
    if style.cv is not None:
        # The requirement: style scores within a batch vary by less than 15 % (the style_spread check).
        metadata["style_score_cv"] = round(style.cv, 4)
    if drift.score_delta is not None:
        metadata.update(drift_score_delta=drift.score_delta, drift_centroid_distance=drift.centroid_distance)
    captions = {
        s.image_id: f"{s.file_name} v{s.version} {s.verdict}" + (f" {s.style_score:.2f}" if s.style_score is not None else "")
        for s in final
    }
    metadata["contact_sheet"] = contact_sheet(storage, curation.images.stored, captions)
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
        description=f"{rate:.1%} of images pass the style threshold after the style loop (minimum {minimum:.0%})",
        metadata={"pass_rate": rate, "minimum": minimum, "review": verdicts.count("review")},
        **common,
    )


def _check(spec: dg.AssetCheckSpec, passed: bool, description: str, metadata: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=spec.name,
        asset_key=spec.asset_key,
        severity=dg.AssetCheckSeverity.WARN,
        passed=passed,
        description=description,
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


def spread_check(style: StyleReport) -> dg.AssetCheckResult:
    """Passes while the style score's coefficient of variation is under MAX_STYLE_CV."""
    passed = spread_passes(style)
    if passed is None:
        return _check(STYLE_SPREAD, True, "no style reference: style spread not applicable", {"images": style.images})
    if style.cv is None:
        description = "the mean style score is 0, so the spread (coefficient of variation) is undefined"
    else:
        description = (
            f"style scores vary by {style.cv:.1%} across the batch (coefficient of variation, "
            f"must be under {MAX_STYLE_CV:.0%}): mean {style.mean:.3f}, standard deviation {style.std:.3f}"
        )
    metadata = {
        "coefficient_of_variation": style.cv, "maximum": MAX_STYLE_CV, "mean_style_score": style.mean,
        "standard_deviation": style.std, "images": style.scored,
    }
    return _check(STYLE_SPREAD, passed, description, metadata)


def drift_check(drift: Drift) -> dg.AssetCheckResult:
    """Passes while the batch stays within MAX_SCORE_DELTA and MAX_CENTROID_DISTANCE of its profile's earlier batches."""
    metadata = {
        "profile": drift.profile,
        "score_delta": drift.score_delta,
        "centroid_distance": drift.centroid_distance,
        "max_score_delta": MAX_SCORE_DELTA,
        "max_centroid_distance": MAX_CENTROID_DISTANCE,
        "compared_batches": ", ".join(drift.compared) or None,
    }
    return _check(STYLE_DRIFT, drift.passed, drift.description, metadata)
