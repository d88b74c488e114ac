import dagster as dg

from assetql_dagster.defs.metadata import markdown_table
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.domain.records import BatchInput, ImagePlan, StyleProfile
from assetql_dagster.domain.style_prompt import style_modifiers
from assetql_dagster.pipeline.names import load_names
from assetql_dagster.pipeline.planning import (
    describe_sources,
    fit_to_encoder,
    plan_images,
    preview,
    registered_on,
    row_prompts,
    translator,
)
from resources.generator import ImageGenerator
from resources.storage import AssetStorage
from resources.translator import AwsTranslate

PREVIEW_ROWS = 10
PREVIEW_LANGUAGE_ROWS = 5


@dg.asset(partitions_def=batches_partitions, group_name="batch")
def prompts(
    context: dg.AssetExecutionContext,
    storage: AssetStorage,
    batch_input: BatchInput,
    style_profile: StyleProfile,
    generator: ImageGenerator,
    aws_translate: AwsTranslate,
) -> dg.Output[ImagePlan]:
    """Rendered prompt, seed and file name for every image of the batch."""
    # Only the tokenizer loads here (and only for long prompts): the manifest records what the
    # text encoder actually read.
    model, locks = batch_input.settings.model, batch_input.settings.lock_weights
    # Locked palette, lighting and texture become weighted words in every prompt, so the model is
    # asked for the style rather than only corrected toward it afterwards.
    style = style_modifiers(style_profile.parameters, locks) if style_profile.parameters is not None else ""
    # Names a rename gave images are kept in storage, so this run plans them under those names.
    renamed = load_names(storage, batch_input.batch)
    settings = batch_input.settings
    # Amazon Translate is asked here, once per non-English text (network calls).
    translate = translator(settings, aws_translate.translate)
    rows = row_prompts(settings, batch_input.rows, registered_on(batch_input), style, translate)
    plan = fit_to_encoder(plan_images(batch_input, style, renamed, rows), lambda: generator.prompt_tokenizer(model))
    cut = {j.variant_id: j.prompt_tokens_dropped for j in plan.jobs if j.prompt_tokens_dropped}
    if cut:
        listed = ", ".join(f"{variant} ({dropped})" for variant, dropped in list(cut.items())[:PREVIEW_ROWS])
        context.log.warning(
            f"{len(cut)} prompt(s) are longer than the text encoder reads; tokens dropped per variant: {listed}. "
            "The manifest's model_prompt column holds what the model read."
        )
    planned = markdown_table(
        ["file", "variant_id", "variation", "seed", "prompt"],
        [[j.file_name, j.variant_id, j.variation, j.seed, j.prompt] for j in plan.jobs[:PREVIEW_ROWS]],
    )
    # What `assetql preview` prints: per language, the first prompts and what each was made of.
    by_language = preview(rows, PREVIEW_LANGUAGE_ROWS)
    languages = markdown_table(
        ["language", "variant_id", "row's text", "prompt", "from"],
        [[language, p.row.variant_id, p.original, p.prompt, describe_sources(p)]
         for language, shown in by_language.items() for p in shown],
    )
    return dg.Output(
        plan,
        metadata={
            "images_planned": len(plan.jobs),
            "rows": len(batch_input.rows),
            "prompts_truncated": len(cut),
            "style_modifiers": style or "none (no locked palette, lighting or texture)",
            "preview": planned,
            "languages": languages,
        },
    )
