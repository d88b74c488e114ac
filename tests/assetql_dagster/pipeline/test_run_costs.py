"""Cost and estimate arithmetic against a recorded run: a tiny batch materialized on a test instance,
whose `images` metadata, manifest and `exports` metadata must agree with the prices and what the run
measured; the estimate of a next batch from that measurement; prices from $ASSETQL_PRICES."""

import csv
import io
import time

import dagster as dg
import pytest
from harness.batch_runs import materialize_partition
from harness.sample_batches import make_batch

from assetql_dagster.defs.budget import spent_on
from assetql_dagster.defs.launching import InstanceLauncher
from assetql_dagster.domain.costs import DEFAULT_PRICES, GB
from assetql_dagster.pipeline.costs import estimate, estimate_report, load_prices
from assetql_dagster.pipeline.launching import measured_seconds_per_step, seconds_per_image
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import check_batch, register_batch
from resources.storage import LocalStorage


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A 2 rows × 2 variations tiny batch run on a test instance, and the metadata its `images` recorded."""
    tmp = tmp_path_factory.mktemp("costs")
    storage = LocalStorage(root=str(tmp / "data"))
    key = register_batch(storage, make_batch(tmp / "inbox", rows=2, variations=2), creator="ana").key
    with dg.instance_for_test() as instance:
        assert materialize_partition(storage, key, instance=instance).success
        images = instance.fetch_materializations(dg.AssetKey("images"), limit=1).records[0]
        exports = instance.fetch_materializations(dg.AssetKey("exports"), limit=1).records[0]
        yield instance, storage, key, images, exports.asset_materialization.metadata


def test_the_run_cost_is_device_seconds_at_the_hourly_price_plus_a_month_of_storage(recorded):
    _, storage, key, record, _ = recorded
    metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    kind = DEFAULT_PRICES.device_kind(metadata["devices"])
    stored = read_record(storage, key, "images").stored
    image_bytes = sum(storage.sizes(f"raw/{key}/").values()) + sum(storage.sizes(f"thumbnails/{key}/").values())
    assert image_bytes > 0 and len(stored) == 4
    # generation_seconds is rounded to ms in the metadata.
    assert metadata["compute_usd"] == pytest.approx(
        metadata["generation_seconds"] * DEFAULT_PRICES.device_hour[kind] / 3600, abs=1e-6)
    assert metadata["storage_usd_month"] == pytest.approx(image_bytes / GB * DEFAULT_PRICES.storage_gb_month, abs=1e-6)
    assert metadata["cost_usd"] == pytest.approx(metadata["compute_usd"] + metadata["storage_usd_month"], abs=2e-6)
    # The basis shows the unrounded seconds to one decimal: within 0.05 s of the metadata's (ms) figure.
    seconds, on = metadata["cost_basis"].split(" s on ")
    assert on == kind and abs(float(seconds) - metadata["generation_seconds"]) <= 0.05 + 1e-3


def test_every_image_carries_its_cost_into_the_manifest_and_the_exports_metadata(recorded):
    _, storage, key, record, exports = recorded
    costs = read_record(storage, key, "images").costs
    assert len(costs) == 4 and all(usd > 0 for usd in costs.values())
    # One shard: its compute is shared equally, so images differ only by their bytes.
    assert sum(costs.values()) == pytest.approx(record.asset_materialization.metadata["cost_usd"].value, abs=1e-5)
    rows = list(csv.DictReader(io.StringIO(storage.read_text(f"exports/{key}/manifest.csv"))))
    assert "cost_usd" in rows[0]
    stems = {i.file_name: i.image_id for i in read_record(storage, key, "images").stored}
    assert {r["file_name"]: pytest.approx(float(r["cost_usd"])) for r in rows} == {
        name: costs[image_id] for name, image_id in stems.items()}
    assert exports["cost_usd"].value == pytest.approx(sum(costs.values()), abs=1e-6)


def test_the_estimate_of_a_next_batch_is_measured_from_the_run(recorded, tmp_path):
    instance, storage, key, record, _ = recorded
    metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    steps = read_record(storage, key, "source").settings.steps
    measured = measured_seconds_per_step(storage, InstanceLauncher(instance).generation_samples(), "tiny")
    assert measured == (pytest.approx(metadata["generation_seconds"] / (metadata["generated"] * steps)), 1)
    source = check_batch(make_batch(tmp_path, rows=3, variations=1, name="next"))
    per_image, basis = seconds_per_image(source, measured)
    expected = estimate(source, per_image, basis, DEFAULT_PRICES, "cpu")
    assert (expected.images, expected.device_kind) == (3, "cpu")
    assert expected.seconds == pytest.approx(3 * measured[0] * source.settings.steps)
    assert expected.usd == pytest.approx(expected.seconds * DEFAULT_PRICES.device_hour["cpu"] / 3600)
    lines = estimate_report(source, per_image, basis, DEFAULT_PRICES, "cpu")
    assert lines[0] == f"estimate: 3 image(s), {expected.seconds:.1f} s of cpu time, {expected.usd:.4f} USD"
    assert "measured: 1 finished run(s) of model 'tiny'" in lines[1]
    assert {line.split()[0] for line in lines[4:]} == {"cpu", "a10g", "l4", "a100", "h100", "sagemaker", "bedrock"}


def test_the_daily_total_adds_up_what_the_runs_of_its_utc_day_recorded(recorded):
    instance, _, _, record, _ = recorded
    cost = record.asset_materialization.metadata["cost_usd"].value
    assert spent_on(instance, time.time()) == pytest.approx(cost)
    assert spent_on(instance, time.time() - 86400) == 0.0


def test_prices_come_from_the_yaml_file_the_environment_names(tmp_path):
    prices_file = tmp_path / "prices.yaml"
    prices_file.write_text("device_hour: {h100: 3.5}\nremote_call: {bedrock: 0.04}\ngpu_kind: h100\n")
    prices = load_prices({"ASSETQL_PRICES": str(prices_file)})
    assert (prices.device_hour["h100"], prices.remote_call["bedrock"], prices.device_kind("cuda:0")) == (3.5, 0.04, "h100")
    assert load_prices({}) is DEFAULT_PRICES
    prices_file.write_text("- 1\n")
    with pytest.raises(ValueError, match=f"the prices file '{prices_file}' must be a YAML mapping, got list"):
        load_prices({"ASSETQL_PRICES": str(prices_file)})
    with pytest.raises(ValueError, match="cannot read the prices file \\$ASSETQL_PRICES='/nowhere.yaml'"):
        load_prices({"ASSETQL_PRICES": "/nowhere.yaml"})
