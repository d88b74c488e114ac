"""Remote models: SageMaker against moto's server (its canned InvokeEndpoint answers), Bedrock and the
services' errors against botocore's Stubber. No SageMaker or Bedrock runs here."""

import base64
import io
import json
import threading
import time
import urllib.request

import dagster as dg
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from harness.export_jobs import png_bytes
from PIL import Image

from resources.models import missing_model, remote_model
from resources.remote_models import RemoteModelRejected, RemoteModels, RemoteModelUnavailable

SDXL = "stability.stable-diffusion-xl-v1"
SD35 = "stability.sd3-5-large-v1:0"


def png_base64(width: int, height: int, color=(200, 30, 90)) -> str:
    return base64.b64encode(png_bytes(Image.new("RGB", (width, height), color))).decode()


def queue_sagemaker_answers(endpoint: str, bodies: list[dict]) -> None:
    """Queue `bodies` as moto's answers to the next InvokeEndpoint calls, in order (through moto's own API)."""
    queued = {"region": "us-east-1", "results": [
        {"Body": json.dumps(body), "ContentType": "application/json"} for body in bodies]}
    urllib.request.urlopen(urllib.request.Request(
        f"{endpoint}/moto-api/static/sagemaker/endpoint-results", data=json.dumps(queued).encode(),
        headers={"Content-Type": "application/json"}, method="POST")).close()


def streaming(payload: dict) -> StreamingBody:
    data = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(data), len(data))


@pytest.fixture
def remote():
    # Region and keys given, so no test looks for either on the machine.
    return RemoteModels(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing",
                        max_attempts=1)


def sent_bodies(client, operation: str) -> list[dict]:
    """Collects the JSON bodies `client` sends for `operation`, as they go on the wire."""
    sent: list[dict] = []
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"before-send.{service}.{operation}", lambda request, **kw: sent.append(
        {"url": request.url, "body": json.loads(request.body)}))
    return sent


def test_sagemaker_on_moto_server_sends_the_contract_and_decodes_the_image(s3_endpoint):
    queue_sagemaker_answers(s3_endpoint, [{"images": [png_base64(64, 48)]}])
    models = RemoteModels(region_name="us-east-1", sagemaker_endpoint_url=s3_endpoint, max_attempts=1)
    pipe = models.load("sagemaker:sd-endpoint")
    sent = sent_bodies(pipe.client, "InvokeEndpoint")

    [image] = pipe.generate(["a red fox"], ["blurry"], [42], 64, 48, 20, 7.5)

    assert image.size == (64, 48) and image.getpixel((3, 3)) == (200, 30, 90)
    assert sent == [{"url": f"{s3_endpoint}/endpoints/sd-endpoint/invocations", "body": {
        "prompt": "a red fox", "negative_prompt": "blurry", "width": 64, "height": 48,
        "num_inference_steps": 20, "guidance_scale": 7.5, "seed": 42}}]
    assert (pipe.calls, str(pipe.device), pipe.device.type) == (1, "sagemaker:sd-endpoint", "remote")


def test_sagemaker_one_call_per_image_and_errors_name_the_endpoint(remote):
    pipe = remote.load("sagemaker:sd-endpoint")
    with Stubber(pipe.client) as stub:
        for color in ((1, 2, 3), (4, 5, 6)):
            stub.add_response("invoke_endpoint", {"Body": streaming({"generated_images": [png_base64(16, 16, color)]})},
                              {"EndpointName": "sd-endpoint", "Body": ANY, "ContentType": "application/json",
                               "Accept": "application/json"})
        images = pipe.generate(["a", "b"], ["", ""], [1, 2], 16, 16, 4, 1.0)
        stub.add_client_error("invoke_endpoint", "ModelError", "Received client error (400) from primary: bad prompt",
                              http_status_code=424, modeled_fields={"OriginalStatusCode": 400})
        with pytest.raises(RemoteModelRejected, match="SageMaker endpoint 'sd-endpoint' refused the request: "
                                                      r"ModelError: Received client error \(400\)"):
            pipe.generate(["c"], [""], [3], 16, 16, 4, 1.0)
        stub.add_client_error("invoke_endpoint", "ThrottlingException", "Rate exceeded", http_status_code=429)
        with pytest.raises(RemoteModelUnavailable, match="'sd-endpoint'.*ThrottlingException: Rate exceeded"):
            pipe.generate(["d"], [""], [4], 16, 16, 4, 1.0)
        stub.add_client_error("invoke_endpoint", "ModelError", "Received server error (500) from primary: CUDA OOM",
                              http_status_code=424, modeled_fields={"OriginalStatusCode": 500})
        with pytest.raises(RemoteModelUnavailable, match=r"ModelError: Received server error \(500\)"):
            pipe.generate(["d"], [""], [4], 16, 16, 4, 1.0)
        stub.add_client_error("invoke_endpoint", "InternalFailure", "boom", http_status_code=500)
        with pytest.raises(RemoteModelUnavailable, match="InternalFailure: boom"):
            pipe.generate(["e"], [""], [5], 16, 16, 4, 1.0)
    assert [i.getpixel((0, 0)) for i in images] == [(1, 2, 3), (4, 5, 6)]


@pytest.mark.parametrize("answer, message", [
    ({"images": [png_base64(32, 16)]}, "returned a 32x16 image but 16x16 was requested"),
    ({"images": ["not base64!"]}, "the image does not decode"),
    ({"images": []}, r"expected \{'images': \[one base64 image\]\} but got keys \['images'\]"),
    ({"detail": "oops"}, r"but got keys \['detail'\]"),
])
def test_sagemaker_answers_without_a_usable_image_are_rejected(remote, answer, message):
    pipe = remote.load("sagemaker:sd-endpoint")
    with Stubber(pipe.client) as stub:
        stub.add_response("invoke_endpoint", {"Body": streaming(answer)})
        with pytest.raises(RemoteModelRejected, match=f"SageMaker endpoint 'sd-endpoint' .*{message}"):
            pipe.generate(["a"], [""], [1], 16, 16, 4, 1.0)


def test_bedrock_sdxl_request_and_artifacts(remote):
    pipe = remote.load(f"bedrock:{SDXL}")
    body = {"text_prompts": [{"text": "a castle", "weight": 1.0}, {"text": "fog", "weight": -1.0}],
            "cfg_scale": 7.0, "seed": 7, "steps": 30, "width": 1024, "height": 1024, "samples": 1}
    with Stubber(pipe.client) as stub:
        stub.add_response("invoke_model", {"body": streaming({"result": "success", "artifacts": [
            {"base64": png_base64(1024, 1024), "seed": 7, "finishReason": "SUCCESS"}]}), "contentType": "application/json"},
            {"modelId": SDXL, "body": json.dumps(body), "contentType": "application/json", "accept": "application/json"})
        [image] = pipe.generate(["a castle"], ["fog"], [7], 1024, 1024, 30, 7.0)
        stub.add_response("invoke_model", {"body": streaming({"artifacts": [
            {"base64": png_base64(1024, 1024), "seed": 8, "finishReason": "CONTENT_FILTERED"}]}), "contentType": "x"})
        with pytest.raises(RemoteModelRejected, match=f"Bedrock model '{SDXL}' .*finished with 'CONTENT_FILTERED'"):
            pipe.generate(["a castle"], [""], [8], 1024, 1024, 30, 7.0)
        stub.add_client_error("invoke_model", "ValidationException", "height must be one of ...", http_status_code=400)
        with pytest.raises(RemoteModelRejected, match=f"'{SDXL}' refused the request: ValidationException: height"):
            pipe.generate(["a castle"], [""], [9], 1024, 1024, 30, 7.0)
        stub.assert_no_pending_responses()
    assert image.size == (1024, 1024)


def test_bedrock_stable_image_models_take_an_aspect_ratio(remote):
    pipe = remote.load(f"bedrock:{SD35}")
    sent = []
    pipe.client.meta.events.register("before-parameter-build.bedrock-runtime.InvokeModel",
                                     lambda params, **kw: sent.append(json.loads(params["body"])))
    with Stubber(pipe.client) as stub:
        stub.add_response("invoke_model", {"body": streaming({"images": [png_base64(64, 36)], "seeds": [3],
                                                              "finish_reasons": [None]}), "contentType": "x"})
        [image] = pipe.generate(["a ship"], [""], [3], 64, 36, 30, 5.0)
    assert sent == [{"prompt": "a ship", "seed": 3, "aspect_ratio": "16:9", "mode": "text-to-image", "output_format": "png"}]
    assert image.size == (64, 36)
    with pytest.raises(RemoteModelRejected, match=r"draws the ratios 16:9, 1:1.* but 640x480 is 4:3"):
        pipe.generate(["a ship"], [""], [3], 640, 480, 30, 5.0)


def test_remote_pipelines_take_no_style_images(remote):
    pipe = remote.load("sagemaker:sd-endpoint")
    assert pipe.ip_adapter is None and pipe.native_size == (1024, 1024)
    with pytest.raises(RemoteModelRejected, match="takes no style images \\(style_images\\)"):
        pipe.generate(["a"], [""], [1], 16, 16, 4, 1.0, style_images=[Image.new("RGB", (8, 8))])


@pytest.mark.parametrize("model", ["sagemaker:sd-endpoint", "sagemaker:a", f"bedrock:{SDXL}", f"bedrock:{SD35}",
                                   "bedrock:stability.stable-image-ultra-v1:1"])
def test_remote_names_are_valid_without_looking_on_disk(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing of that name exists here, and no cache is consulted
    assert missing_model(model, str(tmp_path / "no-cache")) is None
    assert remote_model(model) == tuple(model.split(":", 1))


@pytest.mark.parametrize("model, message", [
    ("sagemaker:", "names no SageMaker endpoint"),
    ("sagemaker:bad_name", "names no SageMaker endpoint: an endpoint name is 1 to 63"),
    ("sagemaker:" + "a" * 64, "names no SageMaker endpoint"),
    ("bedrock:amazon.titan-image-generator-v1", "names no Bedrock Stability image model"),
    ("bedrock:", "names no Bedrock Stability image model"),
])
def test_malformed_remote_names_say_what_is_expected(model, message, remote):
    assert message in missing_model(model, None)
    with pytest.raises(ValueError, match=message):
        remote.load(model)


def test_a_local_name_is_no_remote_model(remote):
    assert remote_model("tiny") is None and remote_model("runwayml/sd:v1") is None
    with pytest.raises(ValueError, match="'tiny' is not a remote model: expected 'sagemaker:ENDPOINT'"):
        remote.load("tiny")


def test_remote_shards_claim_their_endpoints_pool_or_the_remote_pool_and_no_gpu(monkeypatch):
    from assetql_dagster.defs.gpu import GPU_POOL, REMOTE_POOL, REMOTE_POOLS_ENV
    from assetql_dagster.definitions import build_definitions
    from gpu_executor import GPU_TAG

    monkeypatch.setenv(REMOTE_POOLS_ENV, f"sagemaker:sdxl-prod=4,bedrock:{SD35}=2")
    job = build_definitions().resolve_job_def("batch_job")
    ops = {op.name: op for op in job.graph.iterate_op_defs()}
    local, remote = ops["generate_shard"], ops["generate_remote_shard"]
    sagemaker = ops["generate_remote_shard_sagemaker_sdxl_prod"]
    bedrock = ops["generate_remote_shard_bedrock_stability_sd3_5_large_v1_0"]
    assert (local.pool, remote.pool) == (GPU_POOL, REMOTE_POOL)
    assert (sagemaker.pool, bedrock.pool) == ("remote:sagemaker:sdxl-prod", f"remote:bedrock:{SD35}")
    assert GPU_TAG in local.tags
    for op in (remote, sagemaker, bedrock):
        assert not {GPU_TAG, "dagster-k8s/config", "dagster-celery/queue"} & set(op.tags)
        assert "generator" in op.required_resource_keys and op.retry_policy == local.retry_policy
    # image_shards routes each batch's shards to its model's op; collect_images takes all their results.
    assert set(ops["image_shards"].output_dict) == {"result", "remote", "sagemaker_sdxl_prod",
                                                    "bedrock_stability_sd3_5_large_v1_0"}
    assert set(ops["collect_images"].input_dict) == {"batch_input", "shards", "remote_shards", "sagemaker_sdxl_prod",
                                                     "bedrock_stability_sd3_5_large_v1_0"}

    monkeypatch.delenv(REMOTE_POOLS_ENV)  # declaring nothing: every remote model shares `remote`
    ops = {op.name for op in build_definitions().resolve_job_def("batch_job").graph.iterate_op_defs()}
    assert {name for name in ops if "remote" in name} == {"generate_remote_shard"}


def test_a_declared_endpoint_generates_a_whole_batch_in_its_own_op_waiting_for_its_pool(tmp_path, s3_endpoint, monkeypatch):
    from harness.batch_runs import materialize_partition
    from harness.sample_batches import make_batch

    from assetql_dagster.defs.gpu import REMOTE_POOLS_ENV
    from assetql_dagster.definitions import build_definitions
    from assetql_dagster.pipeline.records import read_record
    from assetql_dagster.pipeline.registration import register_batch
    from resources.generator import ImageGenerator
    from resources.storage import LocalStorage

    monkeypatch.setenv(REMOTE_POOLS_ENV, "sagemaker:batch-endpoint=1")
    folder = make_batch(tmp_path / "inbox", rows=2, references=False)
    # The sample's long template: the service reads whole prompts, nothing is cut to a local encoder.
    settings = (folder / "batch.yaml").read_text().replace("model: tiny", "model: sagemaker:batch-endpoint")
    (folder / "batch.yaml").write_text(settings + "width: 64\nheight: 64\n")
    colors = [(200, 30, 90), (20, 160, 40)]
    # One answer per image, in the order the images are generated.
    queue_sagemaker_answers(s3_endpoint, [{"images": [png_base64(64, 64, color)]} for color in colors])
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    generator = ImageGenerator(remote_region_name="us-east-1", sagemaker_endpoint_url=s3_endpoint,
                               aws_access_key_id="testing", aws_secret_access_key="testing")

    pool = "remote:sagemaker:batch-endpoint"
    with dg.instance_for_test() as instance:
        # The endpoint's pool sized to one call at a time, as `assetql pools --apply` sets it, and that
        # one slot held by another run's shard: this run's shard waits for it.
        instance.event_log_storage.set_concurrency_slots(pool, 1)
        instance.event_log_storage.claim_concurrency_slot(pool, "another-run", "its-shard")
        outcome = {}
        runner = threading.Thread(daemon=True, target=lambda: outcome.update(result=materialize_partition(
            storage, key, generator=generator, instance=instance, assets=build_definitions().assets)))
        runner.start()
        deadline = time.monotonic() + 120
        while not _blocked_by(instance, pool):
            assert time.monotonic() < deadline and runner.is_alive(), "the shard never waited for its endpoint's pool"
            time.sleep(0.2)
        instance.event_log_storage.free_concurrency_slots_for_run("another-run")
        runner.join(timeout=120)
        result = outcome["result"]

    assert result.success
    shard_steps = {e.step_key for e in result.all_events if e.is_step_success and "shard" in e.step_key}
    assert shard_steps == {"images.image_shards", "images.generate_remote_shard_sagemaker_batch_endpoint[shard_0000]"}
    images = read_record(storage, key, "images")
    jobs = read_record(storage, key, "prompts").jobs
    assert [i.image_id for i in images.stored] == [j.image_id for j in jobs] and not images.failed
    assert all(j.model_prompt is None and j.prompt_tokens_dropped == 0 for j in jobs)
    assert max(len(j.prompt) for j in jobs) > 100  # longer than a local text encoder would be asked about
    stored = [Image.open(storage.local_path(f"raw/{key}/{j.image_id}.png")) for j in jobs]
    assert [(image.size, image.getpixel((5, 5))) for image in stored] == [((64, 64), color) for color in colors]
    metadata = result.asset_materializations_for_node("images")[0].metadata
    assert metadata["devices"].value == "sagemaker:batch-endpoint"
    assert metadata["cost_basis"].value == "2 sagemaker call(s)"


def _blocked_by(instance, pool: str) -> bool:
    """Whether a step of the instance's run has logged that it waits for a slot of `pool`."""
    runs = instance.get_runs()
    return bool(runs) and any(f"blocked by limit for pool {pool}" in (e.message or "")
                              for e in instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.ENGINE_EVENT))


def test_the_generator_hands_remote_names_to_the_remote_models():
    from resources.generator import ImageGenerator

    generator = ImageGenerator(remote_region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")
    loads = generator.loads()
    pipe = generator.load("sagemaker:sd-endpoint")
    assert pipe.client.meta.region_name == "eu-west-1" and generator.loads() == loads  # no diffusers pipeline built
    assert generator.missing_model(f"bedrock:{SDXL}") is None
    with pytest.raises(ValueError, match="remote model 'sagemaker:sd-endpoint' takes no ip_adapter or lora"):
        generator.load("sagemaker:sd-endpoint", loras=(("brand.safetensors", 1.0),))
