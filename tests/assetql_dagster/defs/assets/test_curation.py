import csv
import io
import zipfile

from harness.batch_runs import materialize_partition

from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import register_batch
from assetql_dagster.pipeline.regeneration import load_histories
from resources.storage import LocalStorage


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
    meta = result.asset_materializations_for_node("curated_images")[0].metadata
    assert meta["regenerated"].value == curation.regenerated and meta["pass_rate_before"].value == 0.0

    with zipfile.ZipFile(storage.local_path(f"exports/{key}/{key}.zip")) as zf:
        manifest = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode("utf-8"))))
    by_file = {row["file_name"]: row for row in manifest}
    for score in curation.scores.images:
        row = by_file[score.file_name]
        assert (row["version"], row["attempts"]) == (str(score.version), str(score.attempts))
        assert float(row["palette_score"]) >= 0 and float(row["embedding_score"]) >= 0

    # A re-run keeps every version and regenerates nothing more: the budget is spent.
    again = materialize_partition(storage, key)
    assert again.success
    assert load_histories(storage, key) == histories
    assert read_record(storage, key, "curated_images").regenerated == 0
