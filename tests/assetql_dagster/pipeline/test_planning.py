from assetql_dagster.domain.batch_loader import load_batch
from assetql_dagster.pipeline.planning import MIN_ENCODER_TOKENS, fit_to_encoder, overlong_prompts, plan_images
from assetql_dagster.pipeline.registration import register_batch, registered_batch
from resources.prompt_tokens import load_prompt_tokenizer
from resources.storage import LocalStorage

LONG = "with intricate golden filigree and glowing runes along the blade " * 3


def long_prompt_batch(batch_factory):
    folder = batch_factory(rows=3)
    lines = (folder / "batch.csv").read_text().splitlines()
    lines[2] = lines[2].replace("a curved scimitar", f"a curved scimitar {LONG}", 1)
    (folder / "batch.csv").write_text("\n".join(lines) + "\n")
    return folder


def never_loaded():
    raise AssertionError("no prompt is long enough to need the tokenizer")


def test_long_prompts_record_what_the_text_encoder_reads(tmp_path, batch_factory):
    storage = LocalStorage(root=str(tmp_path / "data"))
    batch = registered_batch(storage, register_batch(storage, long_prompt_batch(batch_factory)).key)
    tokenizer = load_prompt_tokenizer("tiny")

    plan = fit_to_encoder(plan_images(batch), lambda: tokenizer)

    [cut] = [j for j in plan.jobs if j.prompt_tokens_dropped]
    assert cut.variant_id == "sword-02" and LONG in cut.prompt
    assert cut.prompt_tokens_dropped == len(tokenizer._tokenizer(cut.prompt, add_special_tokens=False).input_ids) - 75
    assert " ".join(cut.prompt.lower().split()).startswith(" ".join(cut.model_prompt.split()))
    assert len(cut.model_prompt) < len(cut.prompt)
    assert all(j.model_prompt is None for j in plan.jobs if j is not cut)


def test_short_prompts_need_no_tokenizer(tmp_path, batch_factory):
    storage = LocalStorage(root=str(tmp_path / "data"))
    folder = batch_factory(rows=2)
    (folder / "batch.yaml").write_text("steps: 2\n")
    (folder / "batch.csv").write_text("variant_id,prompt\na1,a red fox\na2,an old sailor\n")
    batch = registered_batch(storage, register_batch(storage, folder).key)
    plan = plan_images(batch)
    assert all(len(j.prompt) <= MIN_ENCODER_TOKENS for j in plan.jobs)
    assert fit_to_encoder(plan, never_loaded) == plan
    assert overlong_prompts(load_batch(folder), never_loaded) == []


def test_validation_warns_with_row_variant_and_dropped_tokens(batch_factory):
    [warning] = overlong_prompts(load_batch(long_prompt_batch(batch_factory)), lambda: load_prompt_tokenizer("tiny"))
    assert (warning.file, warning.row) == ("batch.csv", 3)
    assert warning.message.startswith("variant 'sword-02': the prompt is ")
    assert "token(s) longer than the model reads (75); its end is dropped" in warning.message


def test_a_remote_models_long_prompts_are_sent_whole_and_not_warned_about(tmp_path, batch_factory):
    folder = long_prompt_batch(batch_factory)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text().replace("model: tiny", "model: sagemaker:sd-endpoint"))
    storage = LocalStorage(root=str(tmp_path / "data"))
    batch = registered_batch(storage, register_batch(storage, folder).key)
    plan = plan_images(batch)
    assert any(LONG in j.prompt for j in plan.jobs)
    # The service reads the prompt itself; no local tokenizer is looked for.
    assert fit_to_encoder(plan, lambda: load_prompt_tokenizer(batch.settings.model)) == plan
    assert overlong_prompts(load_batch(folder), lambda: load_prompt_tokenizer("bedrock:stability.sd3-5-large-v1:0")) == []


def test_renamed_images_keep_their_names_and_images_added_later_never_take_one(tmp_path, batch_factory):
    import dataclasses

    from assetql_dagster.pipeline.names import ImageName
    from assetql_dagster.pipeline.versions import extended

    storage = LocalStorage(root=str(tmp_path / "data"))
    folder = batch_factory(rows=2)
    settings = (folder / "batch.yaml").read_text()
    (folder / "batch.yaml").write_text(settings + "naming_pattern: '{variant_id}-{variation}'\n")
    batch = registered_batch(storage, register_batch(storage, folder).key)
    first = plan_images(batch)
    assert [j.image_id for j in first.jobs] == ["sword-01-1", "sword-02-1"]
    # sword-01-1 is now "hero" (and was "sword-02-2" in between): a second variation of sword-02
    # would be planned as sword-02-2, which must keep referring to sword-01-1.
    renamed = {"sword-01-1": ImageName("hero", ("sword-01-1", "sword-02-2"))}

    plan = plan_images(extended(batch, 1), renamed=renamed)

    jobs = {j.image_id: j for j in plan.jobs}
    assert jobs["sword-01-1"].file_name == "hero.png" and jobs["sword-01-1"].stem == "hero"
    assert jobs["sword-02-1"] == first.jobs[1]
    assert [j.file_name for j in plan.jobs[2:]] == ["sword-01-2.png", "sword-02-2-2.png"]
    assert dataclasses.replace(jobs["sword-01-1"], file_name=first.jobs[0].file_name) == first.jobs[0]


def multilingual_batch(batch_factory, settings: str):
    """Four sample rows in en, es, ja and de, with `settings` appended to batch.yaml."""
    folder = batch_factory(rows=4)
    lines = (folder / "batch.csv").read_text().splitlines()
    rows = [lines[0], lines[1],
            "sword-02,una espada curva,weapon,SKU-1002,acero,un mercado,es",
            "shield-01,丸い盾,armor,SKU-1003,鋼,城,ja",
            "helmet-01,ein Helm,armor,SKU-1004,Bronze,Berge,de"]
    (folder / "batch.csv").write_text("\n".join(rows) + "\n")
    text = (folder / "batch.yaml").read_text()
    template_start = text.index("template:")
    template_end = text.index("negative_prompt:")
    (folder / "batch.yaml").write_text(text[:template_start] + text[template_end:] + settings)
    return folder


LANGUAGE_SETTINGS = """\
template:
  en: "{subject} made of {material}, game icon"
  es: "{subject} de {material}"
  ja: "{subject} {material}製"
  default: "{subject}, {material}"
translator: glossary
glossary:
  es: {"una espada curva": "a curved sword", "de": "made of", "acero": "steel"}
  ja: {"丸い盾": "a round shield", "鋼": "steel", "製": ""}
"""


def test_each_row_takes_its_language_template_and_the_glossary_makes_it_english(tmp_path, batch_factory):
    from assetql_dagster.pipeline.planning import untranslated_words

    folder = multilingual_batch(batch_factory, LANGUAGE_SETTINGS)
    storage = LocalStorage(root=str(tmp_path / "data"))
    batch = registered_batch(storage, register_batch(storage, folder).key)
    jobs = {j.variant_id: j for j in plan_images(batch).jobs}
    assert jobs["sword-01"].prompt.startswith("a longsword made of steel, game icon") and jobs["sword-01"].original_prompt == ""
    assert jobs["sword-02"].original_prompt == "una espada curva de acero"
    assert jobs["sword-02"].prompt.startswith("a curved sword made of steel")
    assert jobs["shield-01"].original_prompt == "丸い盾 鋼製"
    assert jobs["shield-01"].prompt == "a round shield steel"
    # German has no template of its own: `default`; and no glossary terms, so it stays as written.
    assert jobs["helmet-01"].prompt.startswith("ein Helm, Bronze") and jobs["helmet-01"].original_prompt == "ein Helm, Bronze"
    # validate's warnings name the row and column of every word the glossary lacks.
    warnings = {(w.row, w.column): w.message for w in untranslated_words(load_batch(folder))}
    assert set(warnings) == {(5, "material"), (5, "subject")}
    assert "'ein', 'Helm'" in warnings[(5, "subject")] and "no de entry" in warnings[(5, "subject")]


def test_a_language_without_a_template_nor_default_is_a_row_problem(batch_factory):
    import pytest

    from assetql_dagster.domain.errors import BatchValidationError

    folder = multilingual_batch(batch_factory, 'template: {es: "{subject}", ja: "{subject}"}\n')
    with pytest.raises(BatchValidationError) as error:
        load_batch(folder)
    assert [(p.row, p.column) for p in error.value.problems] == [(2, "language"), (5, "language")]
    assert "no entry for language 'de' nor a 'default' or 'en' one" in error.value.problems[1].message


def test_a_prompt_without_template_is_its_column_with_the_modifiers_appended():
    from datetime import date

    from assetql_dagster.domain.csv_schema import BatchRow
    from assetql_dagster.domain.settings import BatchSettings
    from assetql_dagster.pipeline.planning import row_prompts

    row = BatchRow(2, "a1", "a fox,\n  running ", "", "", "", {})
    [planned] = row_prompts(BatchSettings(modifiers="autumn palette, soft light"), [row], date(2026, 1, 1))
    assert planned.prompt == "a fox, running, autumn palette, soft light"
    assert planned.parts == (("batch modifiers", "autumn palette, soft light"),)
    assert row_prompts(BatchSettings(), [row], date(2026, 1, 1))[0].prompt == "a fox, running"


def test_a_template_sees_every_column_and_inserts_values_literally():
    from datetime import date

    from assetql_dagster.domain.csv_schema import BatchRow
    from assetql_dagster.domain.settings import BatchSettings
    from assetql_dagster.pipeline.planning import row_prompts

    row = BatchRow(2, "a1", "fox", "character", "S-9", "de", {"style": "{0.__class__}"})
    settings = BatchSettings(
        template="{prompt} [{variant_id} {sku} {language}] {style}{{if category}}, {category}{{endif}}",
        modifiers="winter",
    )
    assert row_prompts(settings, [row], date(2026, 1, 1))[0].prompt == "fox [a1 S-9 de] {0.__class__}, character, winter"


def test_a_season_fills_season_modifier_or_is_appended_and_its_palette_is_the_target(tmp_path, batch_factory):
    from datetime import date

    from assetql_dagster.domain.csv_schema import BatchRow
    from assetql_dagster.domain.seasons import SEASONS
    from assetql_dagster.domain.settings import BatchSettings
    from assetql_dagster.pipeline.planning import batch_season, row_prompts, target_palette

    row = BatchRow(2, "a1", "a fox", "", "", "en", {})
    christmas = SEASONS["christmas"]
    appended = row_prompts(BatchSettings(season="christmas"), [row], date(2026, 6, 1))[0]
    assert appended.prompt == f"a fox, {christmas.modifiers}"
    assert ("season christmas", christmas.modifiers) in appended.parts
    placed = row_prompts(BatchSettings(season="christmas", template="{prompt} in {season_modifier}, photo"), [row],
                         date(2026, 6, 1))[0]
    assert placed.prompt == f"a fox in {christmas.modifiers}, photo"
    # `auto` is the season of the day in the region: a southern January is summer.
    assert batch_season(BatchSettings(season="auto", region="AU"), date(2027, 1, 10)).name == "summer-south"
    folder = batch_factory(rows=1)
    with (folder / "batch.yaml").open("a") as fh:
        fh.write("season: christmas\npalette: season\n")
    storage = LocalStorage(root=str(tmp_path / "data"))
    batch = registered_batch(storage, register_batch(storage, folder).key)
    assert target_palette(batch) == christmas.palette
    [job] = plan_images(batch).jobs
    assert job.season == "christmas" and christmas.modifiers in job.prompt


def test_season_modifier_is_no_column_a_batch_must_have(batch_factory):
    folder = batch_factory(rows=1)
    text = (folder / "batch.yaml").read_text().replace("painterly fantasy style", "painterly, {season_modifier}")
    (folder / "batch.yaml").write_text(text + "season: halloween\n")
    assert load_batch(folder).settings.season == "halloween"

