"""The style loop as a stage of the graph: `curated_images`, between `scores` and `tags`."""

import time

import dagster as dg
import numpy as np

from assetql_dagster.defs.assets.images import SHARD_RETRY_POLICY
from assetql_dagster.defs.gpu import GPU_OP_TAGS, GPU_POOL
from assetql_dagster.defs.metadata import contact_sheet, markdown_table
from assetql_dagster.defs.partitions import batch_check_spec, batches_partitions
from assetql_dagster.defs.quality import flag_failed_check
from assetql_dagster.domain.records import BatchInput, Curation, ImageJob, ImagePlan, ImageSet, ScoreSet, StyleProfile
from assetql_dagster.domain.scoring import PASS, pass_rate
from assetql_dagster.pipeline.analysis import UNSCORED, scorer
from assetql_dagster.pipeline.generation import (
    adapter_style,
    job_generator,
    micro_batch_size,
    palette_hold,
    render_settings,
)
from assetql_dagster.pipeline.regeneration import (
    final_scores,
    load_histories,
    regeneration_budget,
    run_loop,
    save_histories,
)
from assetql_dagster.pipeline.style import ip_adapter_references
from resources.clip import ClipEmbedder
from resources.generator import ImageGenerator
from resources.storage import AssetStorage

STYLE_PASS_RATE = batch_check_spec(
    "style_pass_rate",
    "curated_images",
    "Share of images whose style score meets the batch threshold after the style loop (default at least 85%).",
)


@dg.asset(
    partitions_def=batches_partitions,
    group_name="batch",
    kinds={"pytorch"},
    op_tags=GPU_OP_TAGS,
    pool=GPU_POOL,
    retry_policy=SHARD_RETRY_POLICY,
    check_specs=[STYLE_PASS_RATE],
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
        pipe = generator.load(settings.model, settings.ip_adapter, settings.lora)
        references = ip_adapter_references(storage, batch_input)
        render = render_settings(settings, pipe)
        micro = micro_batch_size(settings.micro_batch, pipe.device.type, render.width, render.height)
        _, score = scorer(style_profile, settings, clip.load())
        palette_lock = settings.lock_weights.get("palette", 0)

        def generate(jobs: list[ImageJob], boost: float) -> list:
            run = job_generator(
                pipe,
                render,
                palette_hold(style_profile, palette_lock, boost),
                adapter_style(pipe, references, settings.style_strength, boost),
            )
            return [img for start in range(0, len(jobs), micro) for img in run(jobs[start : start + micro])]

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
    yield dg.Output(curation, metadata=curation_metadata(storage, curation))
    yield flag_failed_check(context, pass_rate_check(final, settings.min_pass_rate))


def curation_metadata(storage: AssetStorage, curation: Curation) -> dict:
    final = curation.scores.images
    scored = [s.style_score for s in final if s.style_score is not None]
    attempts = {}
    for s in final:
        attempts[s.attempts] = attempts.get(s.attempts, 0) + 1
    metadata = {
        "images": len(final),
        "regenerated": curation.regenerated,
        "regeneration_budget": curation.budget,
        "regeneration_seconds": curation.seconds_generating,
        "pass_rate_before": round(curation.pass_rate_before, 4),
        "attempts": markdown_table(["attempts", "images"], sorted(attempts.items())),
    }
    if scored:
        mean = float(np.mean(scored))
        metadata.update(
            pass_rate_after=round(pass_rate([s.verdict for s in final]), 4),
            mean_style_score=round(mean, 4),
            # The requirement: style scores within a batch vary by less than 15 % (coefficient of variation).
            style_score_cv=round(float(np.std(scored)) / mean, 4) if mean else 0.0,
        )
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
