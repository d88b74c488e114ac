import csv
import dataclasses
import io
import zipfile
from pathlib import Path

import pytest
from harness.batch_runs import materialize_partition

from assetql_dagster.defs.assets.curation import drift_check, spread_check
from assetql_dagster.domain.records import ImageScore, ScoreSet
from assetql_dagster.domain.scoring import parameter_weights
from assetql_dagster.domain.style_report import ProfileBatch, cosine_distance, curation_report, drift, style_report
from assetql_dagster.pipeline.drift import load_history
from assetql_dagster.pipeline.profiles import create_profile
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import register_batch
from assetql_dagster.pipeline.regeneration import load_histories
from resources.storage import LocalStorage

EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "fantasy-items"


def test_an_unreachable_threshold_regenerates_within_max_attempts_and_the_budget(tmp_path, batch_factory):
    folder = batch_factory(rows=2, variations=2)
    # Four images, at most three generations each, budget for three extra: the budget ends the loop.
    settings = (folder / "batch.yaml").read_text()
    settings = settings.replace("style_threshold: 0.85", "style_threshold: 1")
    (folder / "batch.yaml").write_text(settings + "max_attempts: 3\nregeneration_budget: 0.9\n")
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    result = materialize_partition(storage, key)
    assert result.success
    curation = read_record(storage, key, "curated_images")
    planned = curation.images.planned
    assert curation.budget == int(0.9 * planned) and curation.regenerated == curation.budget
    histories = load_histories(storage, key)
    assert sum(len(h.versions) - 1 for h in histories.values()) == curation.budget
    assert all(len(h.versions) <= 3 for h in histories.values())
    for score in curation.scores.images:
        history = histories[score.image_id]
        assert (score.version, score.attempts) == (history.current, len(history.versions))
        assert score.style_score == max(v.score.style_score for v in history.versions)
        assert score.verdict == "review"

    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "style_pass_rate"]
    assert not check.passed and "after the style loop" in check.description
    checks = checks_of(result)
    # Its own references, no named profile: nothing to drift from.
    assert checks["style_drift"].passed
    assert checks["style_drift"].description == "no earlier batch of this profile (the batch names no style profile)"
    assert "coefficient of variation" in checks["style_spread"].description
    meta = result.asset_materializations_for_node("curated_images")[0].metadata
    assert meta["regenerated"].value == curation.regenerated and meta["pass_rate_before"].value == 0.0

    with zipfile.ZipFile(storage.local_path(f"exports/{key}/{key}.zip")) as zf:
        manifest = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode("utf-8"))))
    by_file = {row["file_name"]: row for row in manifest}
    for score in curation.scores.images:
        row = by_file[score.file_name]
        assert (row["version"], row["attempts"]) == (str(score.version), str(score.attempts))
        # The seed is the one that made the exported version, not the planned one.
        assert row["seed"] == str(histories[score.image_id].current_version.seed)
        assert float(row["palette_score"]) >= 0 and float(row["embedding_score"]) >= 0

    # A re-run keeps every version and regenerates nothing more: the budget is spent.
    again = materialize_partition(storage, key)
    assert again.success
    assert load_histories(storage, key) == histories
    assert read_record(storage, key, "curated_images").regenerated == 0


def checks_of(result) -> dict:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_the_style_report_and_drift_of_two_batches_of_one_profile(tmp_path, batch_factory):
    storage = LocalStorage(root=str(tmp_path / "data"))
    create_profile(storage, "brand-x", EXAMPLE / "references")
    keys = []
    for name, seed in (("spring", 42), ("summer", 7)):
        folder = batch_factory(rows=2, references=False, name=name)
        settings = (folder / "batch.yaml").read_text().replace("seed: 42", f"seed: {seed}")
        (folder / "batch.yaml").write_text(settings + "style: brand-x\n")
        keys.append(register_batch(storage, folder).key)
    spring, summer = keys

    first = materialize_partition(storage, spring)
    assert first.success
    checks = checks_of(first)
    assert checks["style_drift"].passed and checks["style_drift"].description == "no earlier batch of this profile"
    curation = read_record(storage, spring, "curated_images")
    report = curation_report(curation)
    spread = checks["style_spread"]
    assert spread.passed is (report.cv < 0.15)
    assert spread.metadata["coefficient_of_variation"].value == pytest.approx(report.cv)
    meta = first.asset_materializations_for_node("curated_images")[0].metadata
    assert meta["style_score_cv"].value == round(report.cv, 4)
    markdown = meta["style_report"].value
    assert "| coefficient of variation |" in markdown and "](data:image/svg+xml;base64," in markdown

    second = materialize_partition(storage, summer)
    assert second.success
    drift = checks_of(second)["style_drift"]
    history = {b.batch: b for b in load_history(storage, "brand-x")}
    assert set(history) == {spring, summer}
    assert drift.metadata["compared_batches"].value == spring
    expected_delta = history[summer].mean_style_score - history[spring].mean_style_score
    assert drift.metadata["score_delta"].value == pytest.approx(expected_delta, abs=1e-6)
    expected_distance = cosine_distance(history[summer].centroid, history[spring].centroid)
    assert drift.metadata["centroid_distance"].value == pytest.approx(expected_distance, abs=1e-6)
    assert drift.passed is (abs(expected_delta) <= 0.1 and expected_distance <= 0.15)
    assert "against 1 earlier batch(es) of profile brand-x" in drift.description

    # The gallery carries the report with the drift against the first batch, and each image's version.
    gallery = storage.read_text(f"exports/{summer}/gallery.html")
    assert "<h2>Style report</h2>" in gallery and "<svg " in gallery
    assert "vs 1 earlier batch(es) of brand-x" in gallery
    assert gallery.count('<div class="version">v') == len(read_record(storage, summer, "curated_images").images.stored)


def report_with_cv(cv):
    scores = ScoreSet(0.5, parameter_weights({}), (ImageScore("a", "a.png", "pass", style_score=0.6),))
    return dataclasses.replace(style_report(scores), cv=cv)


@pytest.mark.parametrize("cv, passed", [(0.1499, True), (0.15, False), (0.2, False)])
def test_the_spread_check_passes_under_fifteen_percent(cv, passed):
    result = spread_check(report_with_cv(cv))
    assert (result.check_name, result.passed) == ("style_spread", passed)
    assert result.metadata["coefficient_of_variation"].value == cv and result.metadata["maximum"].value == 0.15
    assert f"vary by {cv:.1%}" in result.description


def test_the_spread_check_of_an_unscored_batch_is_not_applicable():
    unscored = style_report(ScoreSet(0.5, parameter_weights({}), (ImageScore("a", "a.png", "unscored"),)))
    result = spread_check(unscored)
    assert result.passed and result.description == "no style reference: style spread not applicable"


@pytest.mark.parametrize("delta, distance, passed", [(0.1, 0.15, True), (-0.1, 0.0, True), (0.101, 0.0, False),
                                                     (0.0, 0.151, False)])
def test_the_drift_check_at_its_limits(delta, distance, passed):
    earlier = ProfileBatch("a", "brand-x", 1, "2025-01-01T00:00:00Z", "tiny", 2, 0.7, 0.05, (1.0, 0.0))
    cos = 1.0 - distance
    now = ProfileBatch("b", "brand-x", 1, "2025-01-02T00:00:00Z", "tiny", 2, 0.7 + delta, 0.05,
                       (cos, (1.0 - cos * cos) ** 0.5))
    result = drift_check(drift(now, [earlier]))
    assert (result.check_name, result.passed) == ("style_drift", passed)
    assert result.metadata["compared_batches"].value == "a"
    assert result.metadata["score_delta"].value == pytest.approx(delta, abs=1e-6)
    assert result.metadata["centroid_distance"].value == pytest.approx(distance, abs=1e-6)
