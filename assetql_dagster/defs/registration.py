"""Starting a batch from the Dagster UI alone: the `register_batch` job registers a batch folder or
CSV given in the Launchpad, and `registered_batch_sensor` then runs the partition it added."""

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.priority import run_priority
from assetql_dagster.domain.settings import BatchSettings, parse_settings
from assetql_dagster.pipeline.registration import Registration, register_batch
from assetql_dagster.pipeline.s3_batches import download_s3_batch
from assetql_dagster.defs import run_tags
from assetql_dagster.defs.budget import queued_batch_tags
from assetql_dagster.defs.jobs import batch_job
from assetql_dagster.defs.partitions import batches_partitions
from resources.s3 import S3Connection
from resources.storage import AssetStorage

S3_SCHEME = "s3://"
# Where override problems point, as batch.yaml problems point at batch.yaml.
CONFIG_FILE = "register_batch config"
S3_HELP = (
    "S3 is reached through the `s3` resource: set ASSETQL_S3_ENDPOINT_URL (any S3-compatible "
    "endpoint; AWS when unset), ASSETQL_S3_REGION, and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
    "(else boto3's default chain) where the code location runs; see README, 'Assets in S3'"
)

_SETTINGS = {field.name: field for field in dataclasses.fields(BatchSettings)}


def _override(setting: str) -> Any:
    """An optional config field replacing `setting` of the batch's batch.yaml, documented as it is."""
    doc = _SETTINGS[setting].metadata["doc"]
    return Field(default=None, description=f"Replaces batch.yaml's `{setting}`: {doc}")


class RegisterBatchConfig(dg.Config):
    """The batch to register and the batch.yaml settings to replace; unset overrides keep batch.yaml's."""

    source: str = Field(
        description="A batch folder holding batch.csv, or a .csv file, on the code location's machine "
        "(relative paths start in its working directory); or s3://bucket/key.csv, whose folder's "
        "batch.yaml and references/ come with it."
    )
    name: str | None = _override("name")
    description: str | None = _override("description")
    modifiers: str | None = _override("modifiers")
    model: str | None = _override("model")
    variations: int | None = _override("variations")
    seed: int | None = _override("seed")
    steps: int | None = _override("steps")
    width: int | None = _override("width")
    height: int | None = _override("height")
    creator: str = Field(default="launchpad", description="Who registers it, as the catalog shows it.")

    def overrides(self) -> dict[str, object] | None:
        """The settings given, validated like batch.yaml (BatchValidationError), or None for none."""
        given = {key: value for key, value in self.model_dump(exclude={"source", "creator"}).items() if value is not None}
        if not given:
            return None
        parse_settings(given, CONFIG_FILE)
        return given


def _s3_location(source: str) -> tuple[str, str]:
    bucket, _, key = source[len(S3_SCHEME):].partition("/")
    if not bucket or not key:
        raise dg.Failure(f"source {source!r} must look like s3://bucket/key.csv (or s3://bucket/folder/)")
    return bucket, key


def _register(config: RegisterBatchConfig, storage: AssetStorage, s3: S3Connection) -> tuple[Registration, str]:
    """Register the configured batch, downloading it first when it is on S3; also return its origin."""
    overrides = config.overrides()
    if not config.source.startswith(S3_SCHEME):
        # absolute(), not resolve(): a symlinked folder keeps its own name, which names the batch.
        path = Path(config.source).expanduser().absolute()
        return register_batch(storage, path, origin=str(path), overrides=overrides, creator=config.creator), str(path)
    bucket, key = _s3_location(config.source)
    with tempfile.TemporaryDirectory(prefix="assetql-register-") as tmp:
        try:
            path = download_s3_batch(s3.bucket(bucket), key, Path(tmp))
        except (BotoCoreError, ClientError) as error:
            raise dg.Failure(
                f"could not download {config.source} ({type(error).__name__}: {error}); {S3_HELP}"
            ) from error
        return register_batch(
            storage, path, origin=config.source, overrides=overrides, creator=config.creator
        ), config.source


@dg.op(out=dg.Out(dg.Nothing))
def register_batch_op(
    context: dg.OpExecutionContext, config: RegisterBatchConfig, storage: AssetStorage, s3: S3Connection
) -> None:
    """Validates and snapshots the batch at `source`, then adds its partition."""
    try:
        registration, origin = _register(config, storage, s3)
    except BatchValidationError as error:
        raise dg.Failure(
            description=f"{config.source} was not registered and no partition was added: {error}",
            metadata={"problems": dg.MetadataValue.json([dataclasses.asdict(p) for p in error.problems])},
        ) from error
    key = registration.key
    # Only a complete snapshot gets a partition: a partition without one fails in batch_input.
    context.instance.add_dynamic_partitions(batches_partitions.name, [key])
    # registered_batch_sensor reads these to start the batch run once this run has succeeded.
    priority = str(run_priority(registration.source.settings.priority))
    context.instance.add_run_tags(
        context.run_id, {run_tags.REGISTERED: key, run_tags.ORIGIN: origin, run_tags.PRIORITY: priority}
    )
    context.log.info(f"{origin} -> partition {key} ({'registered' if registration.created else 'already registered'})")
    context.add_output_metadata({
        "partition_key": key,
        "rows": len(registration.source.rows),
        "origin": origin,
        "newly_registered": registration.created,
    })


@dg.job(
    name="register_batch",
    # Registration only reads, validates and copies files: no model steps, so not the GPU executor.
    executor_def=dg.in_process_executor,
    description="Registers a batch folder or CSV (local or s3://) given in the Launchpad and adds its "
    "partition; registered_batch_sensor then starts its batch_job run.",
)
def register_batch_job() -> None:
    register_batch_op()


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[register_batch_job],
    request_job=batch_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def registered_batch_sensor(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """Starts the batch_job run of the partition each successful register_batch run added."""
    tags = context.dagster_run.tags
    key = tags[run_tags.REGISTERED]
    # One batch run per register run, however often the sensor sees that run succeed.
    return dg.RunRequest(
        run_key=context.dagster_run.run_id,
        partition_key=key,
        tags=queued_batch_tags(context.instance, key, tags[run_tags.ORIGIN], int(tags.get(run_tags.PRIORITY, 0))),
    )
