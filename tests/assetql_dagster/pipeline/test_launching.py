"""Previewing an upload, quick generate and a batch's progress, over a launcher that runs in process."""

import pytest
from harness.batch_runs import InProcessLauncher
from harness.sample_batches import EXAMPLE

from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.progress import ImageProgress
from assetql_dagster.pipeline.launching import (
    SECONDS_PER_IMAGE_STEP,
    GenerationSample,
    RunInfo,
    batch_progress,
    model_kind,
    preview_upload,
    quick_generate,
)
from assetql_dagster.pipeline.profiles import create_profile
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import register_batch
from assetql_dagster.pipeline.versions import open_batch
from resources.storage import LocalStorage
from resources.tiny_adapters import build_tiny_lora


def test_the_preview_of_a_bad_upload_lists_every_problem_by_row_and_column(batch_factory, tmp_path):
    folder = batch_factory(rows=3)
    (folder / "batch.csv").write_text("variant_id,subject,material\nsword-01,a sword,\nsword-01,,steel\n")
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "steps: 0\n")
    preview = preview_upload(folder)
    where = {(p.file, p.row, p.column) for p in preview.problems}
    assert ("batch.csv", 1, "environment") in where
    assert ("batch.csv", 3, "variant_id") in where
    assert any(p.file == "batch.yaml" and p.column == "steps" for p in preview.problems)
    assert not preview.ok and (preview.rows, preview.images, preview.prompts) == (0, 0, ())
    # Nothing there at all is a problem too, not an exception.
    missing = preview_upload(tmp_path / "nothing-here")
    assert missing.problems and "batch.csv" in str(missing.problems[0])


def test_a_profile_the_storage_lacks_is_a_problem_of_the_preview_with_storage(batch_factory, tmp_path):
    folder = batch_factory(rows=2, references=False)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "style: brand-x\n")
    assert preview_upload(folder).ok, "without storage the style is checked for its syntax only"
    [problem] = preview_upload(folder, LocalStorage(root=str(tmp_path / "data"))).problems
    assert (problem.file, problem.column) == ("batch.yaml", "style") and "brand-x" in problem.message


def test_the_preview_of_a_good_upload_shows_its_first_prompts_and_an_estimate(batch_factory):
    folder = batch_factory(rows=7, variations=2)
    preview = preview_upload(folder)
    assert preview.ok and (preview.rows, preview.images) == (7, 14)
    assert len(preview.prompts) == 5
    # Rendered: the template filled from the first row.
    assert preview.prompts[0] == (
        "a longsword made of steel in a blacksmith's forge, centered game item icon, painterly fantasy style"
    )
    steps = 2  # make_batch's
    assert preview.estimated_seconds == pytest.approx(14 * steps * SECONDS_PER_IMAGE_STEP["tiny"], abs=0.05)
    assert preview.estimate_basis.startswith("estimated: ") and "tiny model" in preview.estimate_basis


class MeasuredLauncher(InProcessLauncher):
    def __init__(self, storage, samples):
        super().__init__(storage)
        self.samples = samples

    def generation_samples(self, limit=20):
        return self.samples


def test_the_estimate_is_measured_from_finished_runs_of_the_same_model(batch_factory, tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    earlier = register_batch(storage, batch_factory(rows=2, name="earlier")).key  # tiny, 2 steps
    samples = [
        GenerationSample(earlier, generated=10, seconds=5.0),  # 0.25 s per image step
        GenerationSample(earlier, generated=0, seconds=0.0),  # everything was stored already
        GenerationSample("of-another-storage", generated=10, seconds=100.0),
    ]
    preview = preview_upload(batch_factory(rows=3, name="next"), storage, MeasuredLauncher(storage, samples))
    assert preview.estimated_seconds == pytest.approx(3 * 2 * 0.25)
    assert preview.estimate_basis.startswith("measured: 1 finished run(s) of model 'tiny'")


def test_model_kinds():
    assert [model_kind(m) for m in ("tiny", "stabilityai/stable-diffusion-xl-base-1.0", "/models/sd15")] == [
        "tiny", "sdxl", "sd"
    ]


@pytest.mark.parametrize("prompt, message", [
    ("x" * 501, "the prompt has 501 characters; quick generate takes at most 500"),
    (" \n ", "the prompt is empty"),
])
def test_quick_generate_refuses_a_prompt_it_cannot_take(tmp_path, prompt, message):
    storage = LocalStorage(root=str(tmp_path / "data"))
    launcher = InProcessLauncher(storage)
    with pytest.raises(ValueError, match=message):
        quick_generate(storage, prompt, "ann@studio.example", launcher, None, None)
    assert not launcher.launches and not storage.list_keys("batches/")


def test_quick_generate_is_validated_as_an_upload(tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    launcher = InProcessLauncher(storage)
    with pytest.raises(BatchValidationError) as raised:
        quick_generate(storage, "a red potion", "ann", launcher, "no-such-profile", None)
    assert raised.value.problems[0].column == "style"
    with pytest.raises(BatchValidationError) as raised:
        quick_generate(storage, "a red potion", "ann", launcher, None, str(tmp_path / "none.safetensors"))
    assert [p.column for p in raised.value.problems] == ["lora"]
    with pytest.raises(BatchValidationError) as raised:
        quick_generate(storage, "a red potion", "ann", launcher, None, None, model="no-org/no-such-model")
    assert [p.column for p in raised.value.problems] == ["model"]
    assert not launcher.launches


def test_quick_generate_makes_four_variations_and_more_of_adds_four(tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    create_profile(storage, "brand-x", EXAMPLE / "references", {}, None, "", None)
    lora = build_tiny_lora(tmp_path / "brand.safetensors")
    launcher = InProcessLauncher(storage)
    prompt = "a glowing red health potion in a round glass flask, " + "x" * 448
    assert len(prompt) == 500

    key = quick_generate(storage, prompt, "ann@studio.example", launcher, "brand-x", str(lora))
    batch = read_record(storage, key, "batch_input")
    assert (batch.creator, batch.origin, len(batch.rows), batch.settings.variations) == (
        "ann@studio.example", "quick-generate", 1, 4)
    assert batch.rows[0].prompt == prompt
    # The workspace's defaults: the profile pinned at its version then, the brand LoRA at scale 1.
    assert batch.settings.style == "brand-x@1" and batch.settings.lora == ((str(lora), 1.0),)
    first = read_record(storage, key, "images").stored
    assert len(first) == 4
    files = {r.raw_key: storage.read_bytes(r.raw_key) for r in first}
    progress = batch_progress(launcher, storage, key)
    assert (progress.status, progress.done, progress.planned) == ("succeeded", 4, 4)
    assert progress.pass_rate is not None and progress.run_id == launcher.runs[key].run_id

    assert quick_generate(storage, "", "ann@studio.example", launcher, None, None, more_of=key) == key
    stored = read_record(storage, key, "images").stored
    assert len(stored) == 8 and sorted(read_record(storage, key, "batch_input").added_variations) == [4]
    assert all(storage.read_bytes(k) == content for k, content in files.items()), "the first four are kept"
    assert (batch_progress(launcher, storage, key).done, batch_progress(launcher, storage, key).planned) == (8, 8)
    # Eight is as many variations as a batch may have.
    with pytest.raises(ValueError, match="adding 4 makes 12, .*; start a new quick generate for more"):
        quick_generate(storage, "", "ann", launcher, None, None, more_of=key)


def test_more_of_extends_quick_batches_only_and_not_while_a_run_is_going(batch_factory, tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    launcher = InProcessLauncher(storage)
    upload = register_batch(storage, batch_factory(rows=1)).key
    with pytest.raises(ValueError, match="is not a quick generate batch"):
        quick_generate(storage, "", "ann", launcher, None, None, more_of=upload)
    with pytest.raises(LookupError, match="no batch 'nope'"):
        quick_generate(storage, "", "ann", launcher, None, None, more_of="nope")
    quick = register_batch(storage, batch_factory(rows=1, name="q"), origin="quick-generate").key
    launcher.runs[quick] = RunInfo("r1", "STARTED")
    with pytest.raises(ValueError, match="has a run running"):
        quick_generate(storage, "", "ann", launcher, None, None, more_of=quick)
    assert open_batch(storage, quick).settings.variations == 1


def test_progress_while_queued_and_running_and_of_a_batch_never_run(batch_factory, tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    launcher = InProcessLauncher(storage)
    key = register_batch(storage, batch_factory(rows=3, variations=2)).key
    progress = batch_progress(launcher, storage, key)
    assert (progress.status, progress.done, progress.planned, progress.pass_rate, progress.run_id) == (
        "registered", 0, 6, None, None)
    launcher.runs[key] = RunInfo("r1", "QUEUED")
    assert batch_progress(launcher, storage, key).status == "queued"
    launcher.runs[key] = RunInfo("r1", "STARTED", 100.0, None, ImageProgress(6, 100.0, {"0": 2}))
    running = batch_progress(launcher, storage, key, now=110.0)
    # 10 s for 2 images: 4 more take 20 s.
    assert (running.status, running.done, running.planned, running.eta_seconds) == ("running", 2, 6, pytest.approx(20.0))
    launcher.runs[key] = RunInfo("r1", "CANCELED", 100.0, 120.0, ImageProgress(6, 100.0, {"0": 3}))
    assert (batch_progress(launcher, storage, key).status, batch_progress(launcher, storage, key).done) == ("failed", 3)
    launcher.runs[key] = RunInfo("r1", "ODD")
    with pytest.raises(ValueError, match="unknown Dagster run status 'ODD'"):
        batch_progress(launcher, storage, key)
