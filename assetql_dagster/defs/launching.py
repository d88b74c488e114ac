"""The two ways the asset library (and any script) starts batch runs: `InstanceLauncher` through a
Dagster instance, `GraphQLLauncher` through a Dagster webserver's GraphQL API. Both implement
`pipeline.launching.RunLauncher`, tag runs as every batch run is tagged (`run_tags`), and submit
them as the UI does: to the instance's run coordinator, so the queue and its limits apply (with
the default `QueuedRunCoordinator` the daemon of `dagster dev` or `dagster-daemon run` starts them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.utils import make_new_run_id
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.controller import get_daemon_statuses
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from dagster_graphql.client.client_queries import CLIENT_GET_REPO_LOCATIONS_NAMES_AND_PIPELINES_QUERY

from assetql_dagster.defs import run_tags
from assetql_dagster.defs.budget import IMAGES, queued_batch_tags
from assetql_dagster.defs.jobs import batch_job
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.defs.progress import run_progress
from assetql_dagster.domain.progress import ImageProgress
from assetql_dagster.pipeline.launching import MEASURED_RUNS, GenerationSample, RunInfo

# The code location as workspace.yaml and pyproject.toml name it.
CODE_LOCATION = "assetql"
DEFINITIONS_MODULE = "assetql_dagster.definitions"
# Dagster's tag naming the partition a run materializes.
PARTITION_TAG = "dagster/partition"
# A daemon heartbeats every 30 s; one silent for 90 s is taken as gone (Dagster's UI waits 30 minutes).
DAEMON_TOLERANCE_S = 60


def _tags(key: str, origin: str | None, priority: int) -> dict[str, str]:
    return {**run_tags.batch_run_tags(key, origin or key, priority), PARTITION_TAG: key}


class InstanceLauncher:
    """Launches batch runs on `instance` the way `dagster job launch` does: the code location is
    loaded in a code server of its own (started on the first launch, stopped by `close`), the run
    is created from it and submitted to the instance's run coordinator. When that is a queue no
    live daemon serves (the library alone, without `dagster dev`), the run is launched at once
    instead, as Dagster's DefaultRunCoordinator does, rather than left queued for nobody."""

    def __init__(self, instance: dg.DagsterInstance, working_directory: str | None = None):
        self.instance = instance
        # Where the code server starts: relative data and inbox paths resolve there, as under `dagster dev`.
        self.working_directory = working_directory or os.getcwd()
        self._workspace: WorkspaceProcessContext | None = None

    def __enter__(self) -> InstanceLauncher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops the code server (runs it launched go on to their end)."""
        if self._workspace is not None:
            self._workspace.__exit__(None, None, None)
            self._workspace = None

    def add_partition(self, key: str) -> None:
        if not self.instance.has_dynamic_partition(batches_partitions.name, key):
            self.instance.add_dynamic_partitions(batches_partitions.name, [key])

    def launch(self, key: str, assets: Sequence[str] | None = None, origin: str | None = None,
               priority: int = 0) -> str:
        if self._workspace is None:
            target = ModuleTarget(DEFINITIONS_MODULE, None, self.working_directory, CODE_LOCATION)
            self._workspace = WorkspaceProcessContext(self.instance, target)
        context = self._workspace.create_request_context()
        location = context.get_code_location(CODE_LOCATION)
        [repository] = location.get_repositories().values()
        selection = frozenset(dg.AssetKey(name) for name in assets) if assets else None
        job = location.get_job(JobSubsetSelector(
            location_name=CODE_LOCATION, repository_name=repository.name, job_name=batch_job.name,
            op_selection=None, asset_selection=selection,
        ))
        plan = location.get_execution_plan(job, {}, step_keys_to_execute=None, known_state=None, instance=self.instance)
        # As the webserver creates a run it launches (dagster_graphql's create_valid_pipeline_run).
        run = self.instance.create_run(
            job_name=batch_job.name,
            run_id=make_new_run_id(),
            run_config={},
            resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None,
            status=dg.DagsterRunStatus.NOT_STARTED,
            root_run_id=None,
            parent_run_id=None,
            tags={**job.tags, **queued_batch_tags(self.instance, key, origin or key, priority), PARTITION_TAG: key},
            job_snapshot=job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=job.parent_job_snapshot,
            remote_job_origin=job.get_remote_origin(),
            job_code_origin=job.get_python_origin(),
            asset_selection=selection,
            asset_check_selection=None,
            asset_graph=repository.asset_graph,
        )
        if self.queue_is_served():
            return self.instance.submit_run(run.run_id, context).run_id
        self.instance.launch_run(run.run_id, context)
        return run.run_id

    def queue_is_served(self) -> bool:
        """Whether a run submitted to the instance starts: it is launched on submission, or a live
        daemon takes it off the queue."""
        if not isinstance(self.instance.run_coordinator, QueuedRunCoordinator):
            return True
        daemon = QueuedRunCoordinatorDaemon.daemon_type()
        statuses = get_daemon_statuses(self.instance, [daemon], ignore_errors=True,
                                       heartbeat_tolerance_seconds=DAEMON_TOLERANCE_S)
        return bool(statuses[daemon].healthy)

    def latest_run(self, key: str) -> RunInfo | None:
        records = self.instance.get_run_records(dg.RunsFilter(tags={run_tags.BATCH: key}), limit=1)
        if not records:
            return None
        record = records[0]
        run_id = record.dagster_run.run_id
        return RunInfo(run_id, record.dagster_run.status.value, record.start_time, record.end_time,
                       run_progress(self.instance, run_id))

    def generation_samples(self, limit: int = MEASURED_RUNS) -> list[GenerationSample]:
        records = self.instance.fetch_materializations(dg.AssetKey(IMAGES), limit=limit).records
        samples = []
        for record in records:
            materialization = record.asset_materialization
            metadata = materialization.metadata if materialization else {}
            if materialization and materialization.partition and {"generated", "generation_seconds"} <= set(metadata):
                samples.append(GenerationSample(
                    materialization.partition, int(metadata["generated"].value), float(metadata["generation_seconds"].value),
                ))
        return samples


ADD_PARTITION_MUTATION = """
mutation AddBatchPartition($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""

LATEST_RUN_QUERY = """
query LatestBatchRun($filter: RunsFilter!) {
  runsOrError(filter: $filter, limit: 1) {
    __typename
    ... on Runs { results { runId status startTime endTime tags { key value } } }
    ... on InvalidPipelineRunsFilterError { message }
    ... on PythonError { message }
  }
}
"""

MATERIALIZATIONS_QUERY = """
query ImagesMaterializations($assetKey: AssetKeyInput!, $limit: Int!) {
  assetOrError(assetKey: $assetKey) {
    __typename
    ... on Asset {
      assetMaterializations(limit: $limit) {
        partition
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
        }
      }
    }
  }
}
"""


class GraphQLLauncher:
    """Launches batch runs through the Dagster webserver at `url` (e.g. http://127.0.0.1:3000, or
    with the path prefix it is served under). The webserver's instance takes the run, as a launch
    from its UI; the batch's images progress is read from the run's `assetql/progress` tag, since
    GraphQL does not reach the state behind it."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Dagster webserver URL {url!r} must be http(s)://host[:port][/prefix]")
        self.url = url
        self.client = DagsterGraphQLClient(
            parts.hostname, port_number=parts.port, use_https=parts.scheme == "https",
            path_prefix=parts.path.rstrip("/"),
        )
        self._selector: dict[str, str] | None = None

    def _execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        # The client has public calls for launching and run status only; its _execute gives these
        # queries the same connection and error handling.
        return self.client._execute(query, variables)

    def repository_selector(self) -> dict[str, str]:
        """The code location and repository serving `batch_job` (looked up once)."""
        if self._selector is None:
            answer = self._execute(CLIENT_GET_REPO_LOCATIONS_NAMES_AND_PIPELINES_QUERY, {})["repositoriesOrError"]
            found = [
                {"repositoryLocationName": node["location"]["name"], "repositoryName": node["name"]}
                for node in answer.get("nodes", [])
                if any(job["name"] == batch_job.name for job in node["pipelines"])
            ]
            if len(found) != 1:
                raise DagsterGraphQLClientError(
                    f"the Dagster webserver at {self.url} serves {len(found)} code locations with the job "
                    f"{batch_job.name!r}; expected exactly one, the AssetQL code location (is it loaded?)"
                )
            self._selector = found[0]
        return self._selector

    def add_partition(self, key: str) -> None:
        answer = self._execute(ADD_PARTITION_MUTATION, {
            "selector": self.repository_selector(), "name": batches_partitions.name, "key": key,
        })["addDynamicPartition"]
        # A partition that exists already is what was asked for.
        if answer["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise DagsterGraphQLClientError(answer["__typename"], answer.get("message", ""))

    def launch(self, key: str, assets: Sequence[str] | None = None, origin: str | None = None,
               priority: int = 0) -> str:
        selector = self.repository_selector()
        return self.client.submit_job_execution(
            batch_job.name, selector["repositoryLocationName"], selector["repositoryName"],
            tags=_tags(key, origin, priority), asset_selection=list(assets) if assets else None,
        )

    def latest_run(self, key: str) -> RunInfo | None:
        answer = self._execute(LATEST_RUN_QUERY, {"filter": {"tags": [{"key": run_tags.BATCH, "value": key}]}})
        runs = answer["runsOrError"]
        if runs["__typename"] != "Runs":
            raise DagsterGraphQLClientError(runs["__typename"], runs.get("message", ""))
        if not runs["results"]:
            return None
        run = runs["results"][0]
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        line = tags.get(run_tags.PROGRESS)
        progress = ImageProgress.from_line(line, run["startTime"]) if line and run["startTime"] else None
        return RunInfo(run["runId"], run["status"], run["startTime"], run["endTime"], progress)

    def generation_samples(self, limit: int = MEASURED_RUNS) -> list[GenerationSample]:
        answer = self._execute(MATERIALIZATIONS_QUERY, {"assetKey": {"path": [IMAGES]}, "limit": limit})["assetOrError"]
        if answer["__typename"] != "Asset":
            return []  # never materialized
        samples = []
        for event in answer["assetMaterializations"]:
            values = {e["label"]: e.get("intValue", e.get("floatValue")) for e in event["metadataEntries"]}
            if event["partition"] and values.get("generated") is not None and values.get("generation_seconds") is not None:
                samples.append(GenerationSample(event["partition"], int(values["generated"]), float(values["generation_seconds"])))
        return samples
