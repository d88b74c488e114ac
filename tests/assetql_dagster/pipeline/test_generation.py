import pytest
from PIL import Image

from assetql_dagster.pipeline.generation import (
    RenderSettings,
    generate_images,
    is_out_of_memory,
    is_permanent,
    job_generator,
    micro_batch_size,
    palette_hold,
)
from assetql_dagster.domain.records import ImageJob, StyleProfile
from assetql_dagster.domain.style_parameters import extract_parameters, palette_score, profile_parameters
from resources.storage import LocalStorage

RENDER = RenderSettings(width=16, height=16, steps=1, guidance_scale=1.0)


class OutOfMemoryError(RuntimeError):
    """Same name as torch's CUDA OOM error, which is what generation recognises."""


def planned(n: int) -> list[ImageJob]:
    return [
        ImageJob(image_id=f"img-{i}", file_name=f"img-{i}.png", variant_id=f"v{i}", variation=1, seed=i,
                 prompt=f"prompt {i}", negative_prompt="", category="", sku="", language="", extra={}, row=i + 2)
        for i in range(n)
    ]


class FakeModel:
    """Records every call; fails according to the rules it is given."""

    def __init__(self, max_batch_before_oom=None, broken=(), transient=()):
        self.calls: list[list[str]] = []
        self.max_batch_before_oom = max_batch_before_oom
        self.broken, self.transient = set(broken), set(transient)

    def __call__(self, chunk: list[ImageJob]) -> list[Image.Image]:
        ids = [j.image_id for j in chunk]
        self.calls.append(ids)
        if self.max_batch_before_oom and len(chunk) > self.max_batch_before_oom:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.broken & set(ids):
            raise ValueError(f"prompt rejected for {sorted(self.broken & set(ids))}")
        if self.transient & set(ids):
            raise TimeoutError("storage timed out")
        return [Image.new("RGB", (16, 16), (j.seed * 10 % 255, 0, 0)) for j in chunk]


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(root=str(tmp_path / "data"))


def test_every_image_is_stored_once_with_its_thumbnail(storage):
    model = FakeModel()
    report = generate_images(storage, "b", planned(5), model, RENDER, micro_batch=2)
    assert [len(c) for c in model.calls] == [2, 2, 1]
    assert len(report.generated) == 5 and not report.failed
    assert storage.list_keys("raw/b") == [f"raw/b/img-{i}.png" for i in range(5)]
    assert len(storage.list_keys("thumbnails/b")) == 5


def test_progress_counts_each_micro_batch_and_ends_at_total(storage):
    seen = []
    generate_images(storage, "b", planned(5), FakeModel(), RENDER, micro_batch=2,
                    progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5), (5, 5)]


def test_rerun_skips_images_already_stored(storage):
    generate_images(storage, "b", planned(3), FakeModel(), RENDER, micro_batch=4)
    model = FakeModel()
    report = generate_images(storage, "b", planned(5), model, RENDER, micro_batch=4)
    assert model.calls == [["img-3", "img-4"]]
    assert len(report.skipped) == 3 and len(report.generated) == 2


def test_rerun_regenerates_and_reports_images_whose_stored_files_do_not_decode(storage):
    generate_images(storage, "b", planned(5), FakeModel(), RENDER, micro_batch=4)
    cut_png, cut_thumb = "raw/b/img-1.png", "thumbnails/b/img-3_thumb.jpg"
    for key in (cut_png, cut_thumb):
        data = storage.read_bytes(key)
        storage.write_bytes(key, data[: len(data) // 2])

    model = FakeModel()
    report = generate_images(storage, "b", planned(5), model, RENDER, micro_batch=4)

    assert model.calls == [["img-1", "img-3"]]
    assert [r.image_id for r in report.generated] == ["img-1", "img-3"]
    assert [r.image_id for r in report.skipped] == ["img-0", "img-2", "img-4"]
    assert report.corrupt == [cut_png, cut_thumb]
    for key in (cut_png, cut_thumb):
        with Image.open(storage.local_path(key)) as img:
            img.load()
    # Replaced, they count as stored again.
    assert generate_images(storage, "b", planned(5), FakeModel(), RENDER, micro_batch=4).corrupt == []


def test_out_of_memory_halves_the_micro_batch_and_retries_the_same_images(storage):
    model = FakeModel(max_batch_before_oom=2)
    freed = []
    report = generate_images(storage, "b", planned(8), model, RENDER, micro_batch=8, on_oom=lambda: freed.append(1))
    assert model.calls[:3] == [[f"img-{i}" for i in range(8)], [f"img-{i}" for i in range(4)], ["img-0", "img-1"]]
    assert report.oom_backoffs == 2 and report.final_micro_batch == 2 and len(freed) == 2
    assert len(report.generated) == 8 and not report.failed


def test_out_of_memory_at_micro_batch_one_propagates_for_the_retry_policy(storage):
    model = FakeModel(max_batch_before_oom=0.5)
    with pytest.raises(OutOfMemoryError):
        generate_images(storage, "b", planned(2), model, RENDER, micro_batch=2, final_attempt=False)


def test_transient_failure_propagates_before_the_last_attempt(storage):
    with pytest.raises(TimeoutError):
        generate_images(storage, "b", planned(4), FakeModel(transient={"img-2"}), RENDER, 2, final_attempt=False)
    # What was made before the failure is kept for the retry.
    assert storage.list_keys("raw/b") == ["raw/b/img-0.png", "raw/b/img-1.png"]


def test_last_attempt_records_failed_rows_and_completes_the_rest(storage):
    model = FakeModel(transient={"img-2"})
    report = generate_images(storage, "b", planned(4), model, RENDER, 2, attempt=4, final_attempt=True)
    assert [f.image_id for f in report.failed] == ["img-2"]
    assert report.failed[0].attempts == 4 and report.failed[0].kind == "transient"
    assert "TimeoutError: storage timed out" in report.failed[0].reason
    assert sorted(r.image_id for r in report.generated) == ["img-0", "img-1", "img-3"]
    # The failing micro-batch was split so img-3 did not fail with it; later chunks use the full size.
    assert model.calls[-1] == ["img-3"]


def test_permanent_failure_is_recorded_at_once_without_a_retry(storage):
    report = generate_images(storage, "b", planned(3), FakeModel(broken={"img-1"}), RENDER, 3, attempt=1, final_attempt=False)
    assert [(f.image_id, f.kind, f.attempts) for f in report.failed] == [("img-1", "permanent", 1)]
    assert len(report.generated) == 2


def test_failure_classification():
    assert is_out_of_memory(OutOfMemoryError("x")) and is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_permanent(ValueError("bad prompt")) and not is_permanent(TimeoutError())
    assert not is_permanent(OutOfMemoryError("out of memory"))


def test_micro_batch_auto_fills_a_gpu_but_not_a_cpu():
    assert micro_batch_size("auto", "cpu", 512, 512) == 4
    assert micro_batch_size("auto", "cuda", 512, 512) == 32
    assert micro_batch_size("auto", "cuda", 1024, 1024) == 8
    assert micro_batch_size(3, "cuda", 1024, 1024) == 3


def test_a_palette_lock_pulls_generated_images_toward_the_profile_palette_more_the_higher_it_is():
    from resources.diffusion import load_pipeline

    references = [Image.new("RGB", (32, 32), (200, 40, 30)), Image.new("RGB", (32, 32), (30, 60, 180))]
    profile = StyleProfile(True, ("a.png", "b.png"), parameters=profile_parameters(references))
    pipe = load_pipeline("tiny", device="cpu")
    render = RenderSettings(width=64, height=64, steps=2, guidance_scale=1.0)
    jobs = planned(2)

    assert palette_hold(profile, 0) is None
    assert palette_hold(StyleProfile(False, reason="no style reference"), 100) is None
    assert palette_hold(profile, 60, boost=0.25).strength == pytest.approx(0.85)

    def palette_scores(lock: int) -> list[float]:
        images = job_generator(pipe, render, palette_hold(profile, lock))(jobs)
        return [palette_score(extract_parameters(img).palette, profile.parameters.palette) for img in images]

    unlocked, half, full = palette_scores(0), palette_scores(50), palette_scores(100)
    assert all(a < b < c for a, b, c in zip(unlocked, half, full))
