import io
import json

import pytest
from PIL import Image

from assetql_dagster.domain.records import BatchInput, ScoreSet
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.pipeline.generation import store_image
from assetql_dagster.pipeline.planning import plan_images, variation_rounds
from assetql_dagster.pipeline.regeneration import (
    AUTO,
    INITIAL,
    MANUAL,
    load_histories,
    manual_seed,
    run_loop,
    save_histories,
)
from assetql_dagster.pipeline.registration import register_batch, registered_batch
from assetql_dagster.pipeline.versions import (
    ImageRef,
    extended,
    find_job,
    load_changes,
    regenerate,
    rollback,
    version_document,
)
from resources.storage import LocalStorage

from harness.loop_fakes import BATCH, FakeModel, job, record

@pytest.fixture
def storage(tmp_path):
    return LocalStorage(root=str(tmp_path / "data"))


def batch_input(**settings) -> BatchInput:
    return BatchInput(BATCH, "demo", "test", "2026-01-01T00:00:00Z", "12345678", BatchSettings(**settings), (), ())


def first_generation(storage, n: int):
    """`n` stored images, their scores and refs, as the `images` and `scores` stages leave them."""
    records = [record(i) for i in range(n)]
    for rec in records:
        store_image(storage, rec, FakeModel.image(rec.seed))
    scores = ScoreSet(1.01, {}, tuple(FakeModel().score_of(r, FakeModel.image(r.seed)) for r in records))
    return records, scores


def ref(i: int, scores: ScoreSet, **settings) -> ImageRef:
    return ImageRef(batch_input(**settings), job(i), record(i), scores.images[i], scores.threshold)


def loop(storage, fake, records, scores, histories, max_attempts, budget):
    return run_loop(storage, BATCH, {job(i).image_id: job(i) for i in range(len(records))}, records, scores,
                    histories, max_attempts, budget, fake.generate, fake.score,
                    lambda h: save_histories(storage, BATCH, h))


def red(storage, key) -> int:
    return Image.open(io.BytesIO(storage.read_bytes(key))).getpixel((0, 0))[0]


def test_a_rolled_back_image_keeps_its_version_when_the_loop_runs_again_with_budget_left(storage):
    fake = FakeModel()
    records, scores = first_generation(storage, 2)
    histories = {}
    loop(storage, fake, records, scores, histories, max_attempts=2, budget=2)
    before = histories["img-0"]
    worse = min(before.versions, key=lambda v: v.score.style_score).version
    assert worse != before.current, "the loop made the best version current"

    updated = rollback(storage, ref(0, scores), worse)
    assert (updated.current, updated.pinned, updated.versions) == (worse, True, before.versions)
    assert red(storage, records[0].raw_key) == red(storage, before.versions[worse - 1].key)
    assert load_histories(storage, BATCH)["img-0"] == updated
    [change] = load_changes(storage, BATCH)
    assert (change["action"], change["image_id"], change["from"], change["to"]) == ("rollback", "img-0", before.current, worse)

    # More attempts and budget: the loop regenerates the other image, never the pinned one.
    again = load_histories(storage, BATCH)
    fake.calls.clear()
    loop(storage, fake, records, scores, again, max_attempts=4, budget=10)
    assert again["img-0"] == updated
    assert len(again["img-1"].versions) == 4
    assert red(storage, records[0].raw_key) == red(storage, before.versions[worse - 1].key)
    assert fake.calls and all(prompt == "prompt 1" for call, _ in fake.calls for _, prompt in call)


def test_rollback_to_a_version_that_does_not_exist_names_those_that_do(storage):
    records, scores = first_generation(storage, 1)
    with pytest.raises(LookupError, match=r"has version\(s\) 1; there is no version 3"):
        rollback(storage, ref(0, scores), 3)
    # Rolling an untouched image back to its only version keeps it as version 1 and pins it.
    history = rollback(storage, ref(0, scores), 1)
    assert (history.current, history.pinned, [v.reason for v in history.versions]) == (1, True, [INITIAL])
    assert storage.read_bytes(history.versions[0].key) == storage.read_bytes(records[0].raw_key)


def test_manual_regeneration_is_a_new_current_pinned_version_up_to_the_batch_limit(storage):
    fake = FakeModel()
    records, scores = first_generation(storage, 1)
    image = ref(0, scores, max_manual_regenerations=2, locks={"palette": 40})

    # An image the loop never touched: its first generation becomes version 1, the manual one version 2.
    first = regenerate(storage, image, fake.generate, fake.score)
    assert [v.reason for v in first.versions] == [INITIAL, MANUAL]
    assert (first.current, first.pinned) == (2, True)
    new = first.current_version
    # Defaults: a fresh seed, the planned prompt, the batch's palette lock (no boost over it).
    assert new.seed == manual_seed(job(0).seed, 2, [job(0).seed]) != job(0).seed
    assert fake.calls == [([(new.seed, "prompt 0")], 0.0)]
    assert new.score.style_score == round((new.seed % 251) / 255, 4)
    assert red(storage, records[0].raw_key) == new.seed % 251 == red(storage, new.key)

    second = regenerate(storage, image, fake.generate, fake.score, seed=7, prompt="<b>custom</b>", strength=0.9)
    v3 = second.current_version
    assert (v3.version, v3.seed, v3.prompt, v3.style_boost) == (3, 7, "<b>custom</b>", 0.5)
    assert fake.calls[-1] == ([(7, "<b>custom</b>")], pytest.approx(0.5))
    assert [c["action"] for c in load_changes(storage, BATCH)] == [MANUAL, MANUAL]

    with pytest.raises(ValueError, match=r"has had 2 manual regeneration\(s\).*max_manual_regenerations: 2"):
        regenerate(storage, image, fake.generate, fake.score)
    assert len(fake.calls) == 2 and load_histories(storage, BATCH)["img-0"] == second


@pytest.mark.parametrize(
    ("options", "message"),
    [({"seed": -1}, "--seed must be from 0"), ({"prompt": " "}, "--prompt must be one line"),
     ({"prompt": "a\nb"}, "--prompt must be one line"), ({"strength": 1.5}, "--style-strength must be from 0 to 1")],
)
def test_manual_regeneration_options_are_checked_before_anything_is_generated(storage, options, message):
    fake = FakeModel()
    records, scores = first_generation(storage, 1)
    with pytest.raises(ValueError, match=message):
        regenerate(storage, ref(0, scores), fake.generate, fake.score, **options)
    assert fake.calls == [] and load_histories(storage, BATCH) == {}


def test_the_version_document_of_an_untouched_image_is_its_one_generation(storage):
    records, scores = first_generation(storage, 1)
    doc = version_document(storage, ref(0, scores))
    assert (doc["current"], doc["pinned"], doc["manual_regenerations"]) == (1, False, {"used": 0, "max": 5})
    [only] = doc["versions"]
    assert (only["version"], only["current"], only["seed"], only["reason"]) == (1, True, 100, INITIAL)
    assert only["style_score"] == scores.images[0].style_score and only["key"] == records[0].raw_key
    assert json.loads(json.dumps(doc)) == doc


def test_loop_versions_are_listed_in_order_with_the_current_one_marked(storage):
    records, scores = first_generation(storage, 1)
    histories = {}
    loop(storage, FakeModel(), records, scores, histories, max_attempts=3, budget=5)
    doc = version_document(storage, ref(0, scores))
    assert [v["version"] for v in doc["versions"]] == [1, 2, 3]
    assert [v["reason"] for v in doc["versions"]] == [INITIAL, AUTO, AUTO]
    assert [v["current"] for v in doc["versions"]] == [v.version == histories["img-0"].current for v in histories["img-0"].versions]
    assert [v["style_boost"] for v in doc["versions"]] == [0.0, 0.0, 0.25]


PATTERNS = ["{batch}_{variant_id}_{timestamp}_{hash}", "{batch}_{seq}", "{batch}_{category}"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_added_variations_keep_every_existing_name_and_come_after_it(tmp_path, batch_factory, pattern):
    folder = batch_factory(rows=4, variations=2)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + f"naming_pattern: '{pattern}'\n")
    storage = LocalStorage(root=str(tmp_path / "data"))
    batch = registered_batch(storage, register_batch(storage, folder).key)
    before = plan_images(batch)

    more = extended(extended(batch, 1), 2)
    assert (more.settings.variations, more.added_variations) == (5, (1, 2))
    assert [list(r) for r in variation_rounds(more)] == [[1, 2], [3], [4, 5]]
    after = plan_images(more)
    assert len(after.jobs) == 4 * 5
    assert after.jobs[: len(before.jobs)] == before.jobs
    added = after.jobs[len(before.jobs):]
    assert [(j.variant_id, j.variation) for j in added[:4]] == [(r.variant_id, 3) for r in batch.rows]
    assert len({j.image_id.casefold() for j in after.jobs}) == 20
    if "{seq}" in pattern:
        assert [j.image_id.rsplit("_", 1)[1] for j in after.jobs] == [f"{n:04d}" for n in range(1, 21)]
    # Planned alone, a batch without additions plans exactly as before (row by row).
    assert [(j.variant_id, j.variation) for j in before.jobs] == [(r.variant_id, v) for r in batch.rows for v in (1, 2)]


def test_more_variations_than_a_batch_may_have_are_refused():
    batch = batch_input(variations=7)
    with pytest.raises(ValueError, match=r"has 7 variation\(s\) per row; adding 2 makes 9, but variations must be"):
        extended(batch, 2)
    with pytest.raises(ValueError, match="at least 1"):
        extended(batch, 0)
    assert extended(batch, 1).settings.variations == 8


def test_an_unknown_variant_or_variation_is_named_with_those_that_exist(tmp_path, batch_factory):
    storage = LocalStorage(root=str(tmp_path / "data"))
    folder = batch_factory(rows=3, variations=2)
    plan = plan_images(registered_batch(storage, register_batch(storage, folder).key))
    with pytest.raises(LookupError, match=r"has no variant 'nope'; its variants: sword-01, sword-02, shield-01"):
        find_job(plan, "k", "nope", 1)
    with pytest.raises(LookupError, match=r"has variation\(s\) 1, 2; there is no variation 3"):
        find_job(plan, "k", "sword-02", 3)
    assert find_job(plan, "k", "sword-02", 2).variation == 2


def test_a_manual_seed_is_fresh():
    taken = [manual_seed(5, 2)]
    assert manual_seed(5, 2, taken) not in taken
    assert manual_seed(5, 2) == manual_seed(5, 2) != manual_seed(5, 3)
