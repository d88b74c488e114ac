"""deploy/: the Helm values and the code location's Dockerfile agree with the code and dagster.yaml."""

from pathlib import Path

import yaml

from assetql_dagster.defs.executors import EXECUTOR_ENV, EXECUTORS
from assetql_dagster.defs.run_tags import BATCH
from assetql_dagster.pipeline.retention import RETENTION_ENV

ROOT = Path(__file__).parents[1]
VALUES = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
DAGSTER_YAML = yaml.safe_load((ROOT / "dagster.yaml").read_text())
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def deployment() -> dict:
    [assetql] = VALUES["dagster-user-deployments"]["deployments"]
    return assetql


def test_the_code_location_serves_the_definitions_with_the_k8s_executor_offline():
    assetql = deployment()
    assert assetql["dagsterApiGrpcArgs"] == ["-m", "assetql_dagster.definitions"]
    env = {e["name"]: e["value"] for e in assetql["env"]}
    assert env[EXECUTOR_ENV] == "k8s" and "k8s" in EXECUTORS
    assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HOME"].startswith("/models/")
    assert int(env[RETENTION_ENV]) >= 1
    # Launched runs (and so their step pods) mount the weights the code server mounts.
    assert assetql["includeConfigInLaunchedRuns"]["enabled"] is True
    [mount] = assetql["volumeMounts"]
    assert (mount["mountPath"], mount["readOnly"]) == ("/models", True)
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"


def test_the_cluster_queue_is_dagster_yamls_with_room_for_up_to_ten_batches():
    runs = VALUES["concurrency"]["runs"]
    batch_limit = next(l["limit"] for l in runs["tagConcurrencyLimits"] if l == {"key": BATCH, "limit": l["limit"]})
    assert 1 <= batch_limit <= 10 and runs["maxConcurrentRuns"] > batch_limit
    # Every other limit (one run per batch, budget holds) is the same as on one box.
    others = [l for l in runs["tagConcurrencyLimits"] if l != {"key": BATCH, "limit": batch_limit}]
    local = DAGSTER_YAML["concurrency"]["runs"]["tag_concurrency_limits"]
    assert others == [l for l in local if not (l.get("key") == BATCH and "value" not in l)]
    assert VALUES["concurrency"]["pools"]["granularity"] == DAGSTER_YAML["concurrency"]["pools"]["granularity"]
    assert VALUES["dagsterDaemon"]["runRetries"]["retryOnAssetOrOpFailure"] is False


def test_the_image_is_cuda_with_weights_mounted_and_never_downloaded():
    assert DOCKERFILE.startswith("#") and "\nFROM nvidia/cuda:" in DOCKERFILE
    for setting in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "HF_HOME=/models/hf", "ASSETQL_EXECUTOR=k8s"):
        assert setting in DOCKERFILE
    assert 'VOLUME ["/models"]' in DOCKERFILE
    # No instruction of the build fetches weights (comments may mention how they are fetched elsewhere).
    instructions = "\n".join(line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#"))
    assert "hf download" not in instructions and "snapshot_download" not in instructions
    assert 'pip install --no-cache-dir ".[k8s]"' in DOCKERFILE
    assert 'k8s = ["dagster-k8s==0.29.27"]' in PYPROJECT
