"""Planning a batch: one generation job per row × variation, with its prompt, seed and file name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime

from assetql_dagster.domain.batch_loader import BatchSource
from assetql_dagster.domain.csv_schema import batch_template, build_prompt
from assetql_dagster.domain.errors import Problem
from assetql_dagster.domain.layout import image_seed
from assetql_dagster.domain.naming import NameAllocator, image_identity, placeholder_values, render_name
from assetql_dagster.domain.records import BatchInput, ImageJob, ImagePlan, Shard
from assetql_dagster.pipeline.names import ImageName
from resources.prompt_tokens import PromptTokenizer

# No text encoder keeps fewer prompt tokens than this, and every token spans at least one
# character: a prompt this short fits without asking a tokenizer (which takes seconds to load).
MIN_ENCODER_TOKENS = 75


def plan_images(batch: BatchInput, style: str = "", renamed: Mapping[str, ImageName] | None = None) -> ImagePlan:
    """Every image of `batch`, each with its seed and collision-free file stem; `style` (the locked
    parameters' weighted modifiers) is appended to every prompt. The images of `renamed` (by image
    id, see `load_names`) get the names a rename gave them."""
    settings = batch.settings
    template = batch_template(settings)
    # Names carry the registration time, not the run time, so a retried or resumed run
    # produces the same file names and finds the images it already stored.
    registered_at = datetime.fromisoformat(batch.registered_at)
    renamed = renamed or {}
    # An image added later (`assetql more`) must not get a name a renamed image has or had; the
    # renamed images' own ids are left free, so each is still planned under its id.
    names = NameAllocator(reserved={n for r in renamed.values() for n in r.held()} - set(renamed))
    jobs: list[ImageJob] = []
    # Round by round (see `variation_rounds`): every row's images of a round before the next round's.
    for row, variations in ((row, v) for v in variation_rounds(batch) for row in batch.rows):
        prompt = build_prompt(row, settings, template)
        prompt = f"{prompt}, {style}" if style else prompt
        for variation in variations:
            seed = image_seed(settings.seed, row.variant_id, variation)
            values = placeholder_values(
                batch=batch.name,
                variant_id=row.variant_id,
                variation=variation,
                identity=image_identity(batch.batch, row.variant_id, variation, seed),
                created_at=registered_at,
                seq=len(jobs) + 1,
                category=row.category,
                sku=row.sku,
                extra=row.extra,
            )
            stem = names.allocate(render_name(settings.naming_pattern, values))
            jobs.append(
                ImageJob(
                    image_id=stem,
                    file_name=f"{renamed[stem].name if stem in renamed else stem}.png",
                    variant_id=row.variant_id,
                    variation=variation,
                    seed=seed,
                    prompt=prompt,
                    negative_prompt=settings.negative_prompt,
                    category=row.category,
                    sku=row.sku,
                    language=row.language,
                    extra=row.extra,
                    row=row.line,
                )
            )
    return ImagePlan(tuple(jobs))


def variation_rounds(batch: BatchInput) -> list[range]:
    """The batch's variations in planning order: those it was registered with, then those of each
    `assetql more`. Every row's images of one round are planned before the next round's, so adding
    variations never changes the sequence number or name of an image planned before."""
    rounds, start = [], 1
    for count in (batch.settings.variations - sum(batch.added_variations), *batch.added_variations):
        rounds.append(range(start, start + count))
        start += count
    return rounds


def shards(plan: ImagePlan, size: int) -> list[Shard]:
    """Consecutive slices of the plan, `size` jobs each."""
    return [
        Shard(index=i, offset=start, planned=len(plan.jobs), jobs=plan.jobs[start : start + size])
        for i, start in enumerate(range(0, len(plan.jobs), size))
    ]


def fit_to_encoder(plan: ImagePlan, tokenizer: Callable[[], PromptTokenizer]) -> ImagePlan:
    """`plan` with what the text encoder keeps of each prompt it cannot read whole."""
    long = {job.prompt for job in plan.jobs if len(job.prompt) > MIN_ENCODER_TOKENS}
    if not long:
        return plan
    fits = {prompt: tokenizer().fit(prompt) for prompt in long}
    return ImagePlan(tuple(
        dataclasses.replace(job, model_prompt=fits[job.prompt].kept, prompt_tokens_dropped=fits[job.prompt].dropped)
        if job.prompt in fits and fits[job.prompt].dropped else job
        for job in plan.jobs
    ))


def overlong_prompts(source: BatchSource, tokenizer: Callable[[], PromptTokenizer]) -> list[Problem]:
    """A warning per row whose prompt is longer than the model's text encoder reads."""
    template = batch_template(source.settings)
    prompts = [(row, build_prompt(row, source.settings, template)) for row in source.rows]
    warnings = []
    for row, prompt in prompts:
        if len(prompt) <= MIN_ENCODER_TOKENS:
            continue
        fit = tokenizer().fit(prompt)
        if fit.dropped:
            tail = prompt[len(fit.kept):] if prompt.lower().startswith(fit.kept.lower()) else ""
            lost = f" (about {tail.strip()[:80]!r})" if tail.strip() else ""
            message = (
                f"variant {row.variant_id!r}: the prompt is {fit.dropped} token(s) longer than the model reads "
                f"({tokenizer().limit}); its end is dropped{lost}. Shorten the template or the row's text"
            )
            warnings.append(Problem(source.csv_path.name, message, row.line))
    return warnings
