"""The IO manager that hands typed stage records from one step to the next through `AssetStorage`."""

import dagster as dg

from assetql_dagster.domain.layout import record_key
from assetql_dagster.pipeline.records import read_record_at, write_record
from resources.storage import AssetStorage


class RecordIOManager(dg.IOManager):
    """Stage records as JSON in the batch's storage: `batches/{batch}/{asset}.json` for assets,
    `batches/{batch}/steps/{run}/{step}.{output}.json` for the shards inside `images`."""

    def __init__(self, storage: AssetStorage):
        self.storage = storage

    @staticmethod
    def _key(output: dg.OutputContext, batch: str) -> str:
        if output.has_asset_key:
            return record_key(batch, output.asset_key.to_python_identifier())
        # Op outputs (shards) belong to one run's steps; the mapping key tells the shards apart.
        step = output.step_key.replace("[", ".").replace("]", "")
        name = ".".join(filter(None, [step, output.name, output.mapping_key]))
        return record_key(batch, f"steps/{output.run_id}/{name}")

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        key = self._key(context, context.partition_key)
        context.add_output_metadata({"record": write_record(self.storage, key, obj)})

    def load_input(self, context: dg.InputContext):
        upstream = context.upstream_output
        # An upstream asset outside this run's selection has no run of its own to take the
        # partition from; the input's asset partition names it either way.
        batch = context.asset_partition_key if context.has_asset_key else context.partition_key
        what = upstream.asset_key.to_user_string() if upstream.has_asset_key else f"step {upstream.step_key}"
        return read_record_at(self.storage, self._key(upstream, batch), f"materialize {what} for batch {batch!r} first")


@dg.io_manager(required_resource_keys={"storage"})
def record_io_manager(init_context: dg.InitResourceContext) -> RecordIOManager:
    """Records in whichever storage the deployment binds to `storage` (local files or S3)."""
    return RecordIOManager(init_context.resources.storage)
