import dagster as dg
import pytest
from dagster_k8s import k8s_job_executor
from dagster_k8s.job import (
    USER_DEFINED_K8S_CONFIG_KEY,
    DagsterK8sJobConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)

from assetql_dagster.defs import executors
from assetql_dagster.defs.gpu import GPU_NODE_SELECTOR, GPU_POOL, K8S_CONFIG_TAG
from gpu_executor import GPU_TAG

JOB_CONFIG = DagsterK8sJobConfig(job_image="registry.example/assetql:test", dagster_home="/opt/dagster/dagster_home",
                                 instance_config_map="dagster-instance")


def step_job(op: dg.OpDefinition):
    """The Kubernetes Job dagster-k8s's step handler would launch for `op`, built offline from its tags."""
    return construct_dagster_k8s_job(
        JOB_CONFIG, args=["dagster", "api", "execute_step"], job_name=f"dagster-step-{op.name}",
        user_defined_k8s_config=get_user_defined_k8s_config(dict(op.tags)),
    )


@pytest.fixture(scope="module")
def ops() -> dict[str, dg.OpDefinition]:
    from assetql_dagster.definitions import defs

    return {op.name: op for op in defs.resolve_job_def("batch_job").graph.iterate_op_defs()}


def test_our_tag_is_the_one_dagster_k8s_reads():
    assert K8S_CONFIG_TAG == USER_DEFINED_K8S_CONFIG_KEY


def test_each_gpu_step_pod_gets_one_gpu_on_a_gpu_node(ops):
    gpu_ops = {name: op for name, op in ops.items() if op.tags.get(GPU_TAG) == "true"}
    assert set(gpu_ops) == {name for name, op in ops.items() if op.pool == GPU_POOL}
    assert {"style_profile", "generate_shard", "scores", "curated_images", "tags"} <= set(gpu_ops)
    for name, op in gpu_ops.items():
        pod = step_job(op).spec.template.spec
        [container] = pod.containers
        assert container.resources.requests == {"nvidia.com/gpu": "1"}, name
        assert container.resources.limits == {"nvidia.com/gpu": "1"}, name
        assert pod.node_selector == GPU_NODE_SELECTOR == {"nvidia.com/gpu.present": "true"}
        [toleration] = pod.tolerations
        assert (toleration.key, toleration.operator, toleration.effect) == ("nvidia.com/gpu", "Exists", "NoSchedule")


def test_cpu_step_pods_ask_for_no_gpu_and_no_node(ops):
    cpu_ops = {name: op for name, op in ops.items() if GPU_TAG not in op.tags}
    assert "prompts" in cpu_ops and "batch_input" in cpu_ops
    for name, op in cpu_ops.items():
        assert K8S_CONFIG_TAG not in op.tags, name
        pod = step_job(op).spec.template.spec
        [container] = pod.containers
        assert container.resources is None or not (container.resources.requests or container.resources.limits), name
        assert pod.node_selector is None and pod.tolerations is None, name
        assert container.image == "registry.example/assetql:test"


def test_executor_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.delenv(executors.EXECUTOR_ENV, raising=False)
    assert executors.executor_from_env().name == "gpu_executor"
    monkeypatch.setenv(executors.EXECUTOR_ENV, "k8s")
    assert executors.executor_from_env() is k8s_job_executor
    monkeypatch.setenv(executors.EXECUTOR_ENV, "slurm")
    with pytest.raises(ValueError, match=r"ASSETQL_EXECUTOR='slurm' is not an executor; expected one of gpu, k8s\b"):
        executors.executor_from_env()
