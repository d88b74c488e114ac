import dagster as dg
import pytest

from harness.record_samples import SAMPLES

from assetql_dagster.defs.io_manager import RecordIOManager
from resources.s3 import S3Connection
from resources.s3_storage import S3Storage
from resources.storage import LocalStorage

BATCH = "demo-1234abcd"


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(root=str(tmp_path))
    endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
    return S3Storage(connection=S3Connection(endpoint_url=endpoint), bucket=bucket, prefix="io")


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_storage(storage, record):
    manager = RecordIOManager(storage)
    asset = dg.AssetKey(type(record).__name__.lower())
    output = dg.build_output_context(asset_key=asset, partition_key=BATCH)
    manager.handle_output(output, record)
    assert storage.exists(f"batches/{BATCH}/{asset.to_python_identifier()}.json")
    loaded = manager.load_input(
        dg.build_input_context(upstream_output=output, asset_key=asset, partition_key=BATCH)
    )
    assert loaded == record and type(loaded) is type(record)


def test_op_outputs_are_kept_per_run_step_and_mapping_key(tmp_path):
    storage = LocalStorage(root=str(tmp_path))
    manager = RecordIOManager(storage)
    output = dg.build_output_context(
        step_key="images.image_shards", name="result", mapping_key="shard_0001", run_id="r1", partition_key=BATCH
    )
    manager.handle_output(output, SAMPLES[4])
    assert storage.exists(f"batches/{BATCH}/steps/r1/images.image_shards.result.shard_0001.json")
    assert manager.load_input(dg.build_input_context(upstream_output=output, partition_key=BATCH)) == SAMPLES[4]


def test_a_missing_record_says_what_to_materialize(tmp_path):
    manager = RecordIOManager(LocalStorage(root=str(tmp_path)))
    output = dg.build_output_context(asset_key=dg.AssetKey("prompts"), partition_key=BATCH)
    with pytest.raises(FileNotFoundError, match=f"materialize prompts for batch '{BATCH}' first"):
        manager.load_input(dg.build_input_context(upstream_output=output, asset_key=dg.AssetKey("prompts"), partition_key=BATCH))
