import dataclasses
import io

import pytest
from PIL import Image

from assetql_dagster.domain.records import ScoreSet, StoredImage
from assetql_dagster.pipeline.generation import store_image
from assetql_dagster.pipeline.regeneration import (
    AUTO,
    INITIAL,
    STYLE_STEP,
    attempt_seed,
    final_scores,
    load_histories,
    regeneration_budget,
    run_loop,
    save_histories,
    style_boost,
)
from resources.storage import LocalStorage

from harness.loop_fakes import BATCH, FakeModel, job, record, shade

def first_generation(storage, fake: FakeModel, n: int) -> tuple[dict, list[StoredImage], ScoreSet]:
    jobs = {job(i).image_id: job(i) for i in range(n)}
    records = [record(i) for i in range(n)]
    for rec in records:
        store_image(storage, rec, fake.image(rec.seed))
    scores = ScoreSet(fake.threshold, {}, tuple(fake.score_of(r, fake.image(r.seed)) for r in records))
    return jobs, records, scores


def loop(storage, fake, jobs, records, scores, histories, max_attempts=3, budget=100):
    return run_loop(storage, BATCH, jobs, records, scores, histories, max_attempts, budget, fake.generate,
                    fake.score, lambda h: save_histories(storage, BATCH, h))


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(root=str(tmp_path / "data"))


def test_attempts_change_the_seed_first_then_the_style():
    assert attempt_seed(7, 1) == 7
    assert len({attempt_seed(7, n) for n in range(1, 6)}) == 5
    assert [style_boost(n) for n in (1, 2, 3, 4)] == [0.0, 0.0, STYLE_STEP, 2 * STYLE_STEP]
    assert regeneration_budget(0.3, 10) == 3 and regeneration_budget(0.0, 500) == 0


def test_with_an_unreachable_threshold_every_image_gets_max_attempts_versions_and_the_best_is_current(storage):
    fake = FakeModel(threshold=1.01)
    jobs, records, scores = first_generation(storage, fake, 3)
    histories = {}
    report = loop(storage, fake, jobs, records, scores, histories, max_attempts=4)

    assert report.regenerated == 9 and report.rounds == 3
    assert fake.boosts == [0.0, STYLE_STEP, 2 * STYLE_STEP]
    for rec in records:
        history = histories[rec.image_id]
        assert [v.version for v in history.versions] == [1, 2, 3, 4]
        assert [v.reason for v in history.versions] == [INITIAL, AUTO, AUTO, AUTO]
        best = max(history.versions, key=lambda v: v.score.style_score)
        assert history.current == best.version
        # The image's own keys hold the current version, every version keeps its own file.
        current = Image.open(io.BytesIO(storage.read_bytes(rec.raw_key)))
        assert current.getpixel((0, 0))[0] == shade(best.seed)
        for v in history.versions:
            assert v.key == f"versions/{BATCH}/{rec.image_id}/v{v.version}.png"
            assert Image.open(io.BytesIO(storage.read_bytes(v.key))).getpixel((0, 0))[0] == shade(v.seed)
    final = final_scores(scores, histories)
    assert [(s.version, s.attempts) for s in final.images] == [(histories[r.image_id].current, 4) for r in records]
    assert all(s.style_score == histories[s.image_id].current_version.score.style_score for s in final.images)


def test_the_budget_stops_the_loop_and_counts_across_runs(storage):
    fake = FakeModel(threshold=1.01)
    jobs, records, scores = first_generation(storage, fake, 4)
    histories = {}
    report = loop(storage, fake, jobs, records, scores, histories, max_attempts=5, budget=6)
    assert report.regenerated == 6 and report.budget_left == 0
    assert sum(len(h.versions) - 1 for h in histories.values()) == 6

    # A re-run continues from the saved histories: the budget is already spent, nothing repeats.
    fake.calls.clear()
    again = load_histories(storage, BATCH)
    assert again == histories
    report = loop(storage, fake, jobs, records, scores, again, max_attempts=5, budget=6)
    assert (report.regenerated, fake.generated) == (0, [])


def test_passing_images_are_left_alone_and_a_regenerated_pass_stops_its_image(storage):
    fake = FakeModel(threshold=0.5)
    jobs, records, scores = first_generation(storage, fake, 6)
    below = {s.image_id for s in scores.images if s.verdict != "pass"}
    histories = {}
    loop(storage, fake, jobs, records, scores, histories, max_attempts=10)
    assert set(histories) == below
    for history in histories.values():
        current = history.current_version.score
        if current.verdict == "pass":
            # It stopped at the first version that passed.
            assert history.versions[-1].score.verdict == "pass"
            assert all(v.score.verdict != "pass" for v in history.versions[:-1])


def test_a_pinned_image_is_not_regenerated(storage):
    fake = FakeModel(threshold=1.01)
    jobs, records, scores = first_generation(storage, fake, 2)
    histories = {}
    loop(storage, fake, jobs, records, scores, histories, max_attempts=2)

    histories["img-0"] = dataclasses.replace(histories["img-0"], pinned=True)
    fake.calls.clear()
    loop(storage, fake, jobs, records, scores, histories, max_attempts=3)
    assert len(histories["img-0"].versions) == 2 and len(histories["img-1"].versions) == 3
