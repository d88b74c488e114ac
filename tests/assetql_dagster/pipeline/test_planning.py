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
