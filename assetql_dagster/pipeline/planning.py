"""Planning a batch: one generation job per row × variation, with its prompt, seed and file name.

A row's prompt is its language's template (or its prompt column) rendered in the row's language,
turned into the model's English by the batch's translator, then the batch's modifiers, the season's
modifiers (unless the template placed them with {season_modifier}) and the locked style words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime

from assetql_dagster.domain.batch_loader import BatchSource
from assetql_dagster.domain.csv_schema import SEASON_VARIABLE, BatchRow, BatchTemplates, batch_template
from assetql_dagster.domain.errors import Problem
from assetql_dagster.domain.glossary import translate_with_glossary
from assetql_dagster.domain.languages import DEFAULT_LANGUAGE
from assetql_dagster.domain.layout import image_seed
from assetql_dagster.domain.naming import NameAllocator, image_identity, placeholder_values, render_name
from assetql_dagster.domain.records import BatchInput, ImageJob, ImagePlan, Shard
from assetql_dagster.domain.seasons import AUTO, SEASONS, Season, season_for
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.domain.templating import collapse_whitespace
from assetql_dagster.pipeline.names import ImageName
from resources.prompt_tokens import PromptTokenizer

# No text encoder keeps fewer prompt tokens than this, and every token spans at least one
# character: a prompt this short fits without asking a tokenizer (which takes seconds to load).
MIN_ENCODER_TOKENS = 75

# texts of one language -> the model's English, in order.
Translate = Callable[[Sequence[str], str], list[str]]


def batch_season(settings: BatchSettings, day: date) -> Season | None:
    """The batch's seasonal context: the one it names, or for `auto` the one of `day` in its region."""
    if settings.season is None:
        return None
    return season_for(day, settings.region) if settings.season == AUTO else SEASONS[settings.season]


def target_palette(batch: BatchInput) -> tuple[str, ...]:
    """The colours the batch's `palette` setting names (its season's for `season`), () for the references'."""
    palette = batch.settings.palette
    if palette == "season":
        season = batch_season(batch.settings, registered_on(batch))
        return season.palette if season else ()
    return palette or ()


def glossary_translator(settings: BatchSettings) -> Translate:
    """The `glossary` translator: each language's terms of the batch's `glossary` setting."""

    def translate(texts: Sequence[str], language: str) -> list[str]:
        terms = settings.glossary_of(language)
        return [translate_with_glossary(text, terms)[0] for text in texts]

    return translate


def keep(texts: Sequence[str], language: str) -> list[str]:
    """The `none` translator: the text as the row wrote it (for multilingual models)."""
    return list(texts)


def translator(settings: BatchSettings, aws: Translate | None = None) -> Translate:
    """The batch's translator: `none` keeps the text, `glossary` uses its terms, `aws-translate`
    asks Amazon Translate through `aws` (the deployment's translator resource)."""
    if settings.translator == "glossary":
        return glossary_translator(settings)
    if settings.translator == "aws-translate":
        if aws is None:
            raise ValueError("translator: aws-translate needs the translator resource (Amazon Translate)")
        return aws
    return keep


def offline_translator(settings: BatchSettings) -> Translate:
    """The batch's translator where no service may be asked (validation, previews): Amazon
    Translate's English is only known when the batch runs, so its rows stay as written."""
    return keep if settings.translator == "aws-translate" else translator(settings)


@dataclasses.dataclass(frozen=True)
class RowPrompt:
    """A row's prompt and where its parts came from (what `assetql preview` shows)."""

    row: BatchRow
    template: str  # which template rendered it: "" (the only one), a language, "default", or "prompt column"
    original: str  # the rendered text in the row's language
    prompt: str  # what the model is asked: translated, with the modifiers
    parts: tuple[tuple[str, str], ...]  # (where from, text) of every modifier appended or placed
    translated: bool  # the row is not in English and the translator changed its language


def registered_on(batch: BatchInput) -> date:
    """The day the batch was registered: what `season: auto` is chosen by (so re-runs agree)."""
    return datetime.fromisoformat(batch.registered_at).date()


def row_prompts(settings: BatchSettings, rows: Sequence[BatchRow], day: date, style: str = "",
                translate: Translate = keep) -> list[RowPrompt]:
    """Every row's prompt: rendered in its language, translated, then the modifiers appended."""
    templates = batch_template(settings)
    season = batch_season(settings, day)
    season_words = season.modifiers if season else ""
    rendered = [_render(row, templates, season_words) for row in rows]
    english = [text for _, text in rendered]
    for language in {row.language or DEFAULT_LANGUAGE for row in rows} - {DEFAULT_LANGUAGE}:
        indexes = [i for i, row in enumerate(rows) if (row.language or DEFAULT_LANGUAGE) == language]
        for i, text in zip(indexes, translate([english[i] for i in indexes], language)):
            english[i] = text
    prompts = []
    for row, (key, original), text in zip(rows, rendered, english):
        placed = templates is not None and SEASON_VARIABLE in templates.for_language(row.language).variables
        parts = [
            ("batch modifiers", settings.modifiers.strip()),
            (f"season {season.name}" if season else "", "" if placed else season_words),
            ("style locks", style),
        ]
        if placed and season:
            parts.insert(0, (f"season {season.name} (in the template)", season_words))
        appended = [words for source, words in parts if words and "(in the template)" not in source]
        prompt = collapse_whitespace(", ".join([text.rstrip(" ,"), *appended]))
        translated = translate is not keep and (row.language or DEFAULT_LANGUAGE) != DEFAULT_LANGUAGE
        prompts.append(RowPrompt(row, key, original, prompt, tuple((s, w) for s, w in parts if w), translated))
    return prompts


def preview(prompts: Sequence[RowPrompt], rows: int) -> dict[str, list[RowPrompt]]:
    """The first `rows` prompts of each language, languages in their order of first appearance."""
    by_language: dict[str, list[RowPrompt]] = {}
    for planned in prompts:
        shown = by_language.setdefault(planned.row.language or DEFAULT_LANGUAGE, [])
        if len(shown) < rows:
            shown.append(planned)
    return by_language


def describe_sources(planned: RowPrompt) -> str:
    """Where a prompt's parts came from, e.g. "template es; translated; season christmas: …"."""
    parts = [f"template {planned.template}" if planned.template != "prompt column" else "prompt column"]
    if planned.template == "":
        parts = ["template"]
    if planned.translated:
        parts.append("translated")
    return "; ".join(parts + [f"{source}: {words}" for source, words in planned.parts])


def _render(row: BatchRow, templates: BatchTemplates | None, season_words: str) -> tuple[str, str]:
    if templates is None:
        return "prompt column", collapse_whitespace(row.prompt)
    values = {**row.template_values(), SEASON_VARIABLE: season_words}
    return templates.key_for(row.language), templates.for_language(row.language).render(values)


def plan_images(batch: BatchInput, style: str = "", renamed: Mapping[str, ImageName] | None = None,
                prompts: Sequence[RowPrompt] | None = None) -> ImagePlan:
    """Every image of `batch`, each with its seed and collision-free file stem; `style` (the locked
    parameters' weighted modifiers) is appended to every prompt. The images of `renamed` (by image
    id, see `load_names`) get the names a rename gave them. `prompts` are the rows' prompts when
    already made (`row_prompts`, with the deployment's translator), else made here."""
    settings = batch.settings
    # Names carry the registration time, not the run time, so a retried or resumed run
    # produces the same file names and finds the images it already stored.
    registered_at = datetime.fromisoformat(batch.registered_at)
    season = batch_season(settings, registered_at.date())
    if prompts is None:
        prompts = row_prompts(settings, batch.rows, registered_at.date(), style, translator(settings))
    prompts = {p.row.line: p for p in prompts}
    renamed = renamed or {}
    # An image added later (`assetql more`) must not get a name a renamed image has or had; the
    # renamed images' own ids are left free, so each is still planned under its id.
    names = NameAllocator(reserved={n for r in renamed.values() for n in r.held()} - set(renamed))
    jobs: list[ImageJob] = []
    # Round by round (see `variation_rounds`): every row's images of a round before the next round's.
    for row, variations in ((row, v) for v in variation_rounds(batch) for row in batch.rows):
        planned = prompts[row.line]
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
                    prompt=planned.prompt,
                    negative_prompt=settings.negative_prompt_for(row.language),
                    category=row.category,
                    sku=row.sku,
                    language=row.language,
                    extra=row.extra,
                    row=row.line,
                    original_prompt=planned.original if planned.translated else "",
                    season=season.name if season else "",
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


def untranslated_words(source: BatchSource) -> list[Problem]:
    """For the `glossary` translator: per non-English row and column the template reads (or its
    prompt), the words its language's terms do not translate; they reach the model as written."""
    settings = source.settings
    if settings.translator != "glossary":
        return []
    templates = batch_template(settings)
    warnings = []
    for row in source.rows:
        language = row.language or DEFAULT_LANGUAGE
        if language == DEFAULT_LANGUAGE:
            continue
        values = row.template_values()
        columns = ["prompt"] if templates is None else sorted(templates.for_language(row.language).variables)
        for column in (c for c in columns if values.get(c)):
            _, missing = translate_with_glossary(values[column], settings.glossary_of(language))
            if missing:
                listed = ", ".join(repr(w) for w in missing[:10]) + (" …" if len(missing) > 10 else "")
                message = (f"{len(missing)} word(s) have no {language} entry in the glossary and reach the model "
                           f"untranslated: {listed}")
                warnings.append(Problem(source.csv_path.name, message, row.line, column))
    return warnings


def overlong_prompts(source: BatchSource, tokenizer: Callable[[], PromptTokenizer]) -> list[Problem]:
    """A warning per row whose prompt is longer than the model's text encoder reads."""
    warnings = []
    for planned in row_prompts(source.settings, source.rows, date.today(), translate=offline_translator(source.settings)):
        row, prompt = planned.row, planned.prompt
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
