"""Remote text-to-image models behind the generator interface: SageMaker endpoints and Bedrock's Stability models.

A batch's `model` names one as `sagemaker:ENDPOINT` or `bedrock:MODEL_ID` (see `resources.models.remote_model`).
`RemoteModels.load` returns a `RemotePipeline`, which generates like a local `LoadedPipeline` (one image
per prompt, negative prompt and seed) with one remote call per image, so that an image depends only
on its own inputs. Contracts:

- SageMaker (`sagemaker-runtime` InvokeEndpoint, JSON both ways), as a Stable Diffusion inference
  container takes it: request `{"prompt", "negative_prompt", "width", "height", "num_inference_steps",
  "guidance_scale", "seed"}`; answer `{"images": [base64 PNG or JPEG]}` (JumpStart's key
  `generated_images` is read too).
- Bedrock (`bedrock-runtime` InvokeModel): `stability.stable-diffusion-xl-*` takes `{"text_prompts",
  "cfg_scale", "seed", "steps", "width", "height", "samples": 1}` and answers `{"artifacts": [{"base64",
  "seed", "finishReason"}]}`; the other `stability.*` models (SD3, Stable Image Core/Ultra) take
  `{"prompt", "negative_prompt", "seed", "aspect_ratio", "mode": "text-to-image", "output_format": "png"}`
  and answer `{"images": [base64], "finish_reasons": [...]}`, drawing at their own size for the ratio.

An answer image must have the requested size. Errors name the endpoint or model and the service's
message: a request the service rejects (4xx) is `RemoteModelRejected`, a ValueError that generation
records per image at once; throttling, server errors and unreachable endpoints that outlast botocore's
retries are `RemoteModelUnavailable`, which the shard's RetryPolicy retries.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from fractions import Fraction
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from PIL import Image

from resources.aws_clients import AwsApi
from resources.models import BEDROCK, SAGEMAKER, missing_remote_model, remote_model

# A 2048 px PNG in base64 is at most ~17 MB; anything far larger is not an answer and is not read whole.
MAX_RESPONSE_BYTES = 64 * 2**20
SDXL_PREFIX = "stability.stable-diffusion-xl"
# The ratios Bedrock's SD3 and Stable Image models draw (width:height).
STABLE_IMAGE_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
_SERVICES = {SAGEMAKER: "sagemaker-runtime", BEDROCK: "bedrock-runtime"}


class RemoteModelRejected(ValueError):
    """The service refused the request (4xx) or answered with no usable image: retrying cannot help."""


class RemoteModelUnavailable(RuntimeError):
    """The service could not answer (throttling, server error, network) after botocore's retries."""


class RemoteDevice:
    """What a remote pipeline runs on, shaped like a torch.device: `type` "remote", shown as the model name."""

    type = "remote"

    def __init__(self, model: str):
        self.model = model

    def __str__(self) -> str:
        return self.model


class RemotePipeline:
    """A remote model with `LoadedPipeline`'s generation interface; takes no IP-Adapter or LoRA."""

    ip_adapter = None
    loras: tuple = ()

    def __init__(self, model: str, client: Any, native_size: int):
        self.model = model
        self.provider, self.target = remote_model(model)
        self.client = client
        self.device = RemoteDevice(model)
        self.native_size = (native_size, native_size)
        self.calls = 0

    def free_memory(self) -> None:
        """Nothing to free: the model's memory is the endpoint's."""

    def generate(self, prompts: list[str], negative_prompts: list[str], seeds: list[int], width: int, height: int,
                 steps: int, guidance_scale: float, **style: Any) -> list[Image.Image]:
        """One image per prompt, one remote call each."""
        if style:
            raise RemoteModelRejected(f"remote model {self.model!r} takes no style images ({', '.join(style)})")
        if not len(prompts) == len(negative_prompts) == len(seeds):
            raise ValueError(f"prompts, negative_prompts and seeds must have equal lengths but have "
                             f"{len(prompts)}, {len(negative_prompts)} and {len(seeds)}")
        return [self._one(p, n, int(s), width, height, steps, guidance_scale)
                for p, n, s in zip(prompts, negative_prompts, seeds)]

    def _one(self, prompt: str, negative: str, seed: int, width: int, height: int, steps: int,
             guidance: float) -> Image.Image:
        if self.provider == SAGEMAKER:
            request = sagemaker_request(prompt, negative, seed, width, height, steps, guidance)
        else:
            request = bedrock_request(self.target, prompt, negative, seed, width, height, steps, guidance)
        body = self._invoke(json.dumps(request))
        decode = decode_sagemaker_answer if self.provider == SAGEMAKER else decode_bedrock_answer
        try:
            image = decode(body)
        except ValueError as exc:
            raise RemoteModelRejected(f"{self._name()} answered with no usable image: {exc}") from None
        if image.size != (width, height):
            raise RemoteModelRejected(
                f"{self._name()} returned a {image.size[0]}x{image.size[1]} image but {width}x{height} was "
                "requested; set the batch's width and height to a size the model draws"
            )
        return image

    def _invoke(self, body: str) -> bytes:
        try:
            if self.provider == SAGEMAKER:
                answer = self.client.invoke_endpoint(
                    EndpointName=self.target, Body=body, ContentType="application/json", Accept="application/json")
                stream = answer["Body"]
            else:
                answer = self.client.invoke_model(
                    modelId=self.target, body=body, contentType="application/json", accept="application/json")
                stream = answer["body"]
            self.calls += 1
            data = stream.read(MAX_RESPONSE_BYTES + 1)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            # SageMaker wraps the container's own failures as ModelError (424) with the container's status.
            status = exc.response.get("OriginalStatusCode", status)
            message = f"{self._name()} refused the request: {error.get('Code', 'error')}: {error.get('Message', '')}"
            # Throttling that outlasted botocore's retries and server-side errors may pass; the rest will not.
            if 400 <= status < 500 and status != 429 and "Throttl" not in error.get("Code", ""):
                raise RemoteModelRejected(message) from exc
            raise RemoteModelUnavailable(message) from exc
        except BotoCoreError as exc:
            raise RemoteModelUnavailable(f"{self._name()} could not be reached: {exc}") from exc
        if len(data) > MAX_RESPONSE_BYTES:
            raise RemoteModelRejected(f"{self._name()} answered with more than {MAX_RESPONSE_BYTES} bytes")
        return data

    def _name(self) -> str:
        return f"SageMaker endpoint {self.target!r}" if self.provider == SAGEMAKER else f"Bedrock model {self.target!r}"


def sagemaker_request(prompt: str, negative: str, seed: int, width: int, height: int, steps: int,
                      guidance: float) -> dict:
    """The InvokeEndpoint body of one image (this module's SageMaker contract)."""
    return {"prompt": prompt, "negative_prompt": negative, "width": width, "height": height,
            "num_inference_steps": steps, "guidance_scale": guidance, "seed": seed}


def bedrock_request(model_id: str, prompt: str, negative: str, seed: int, width: int, height: int, steps: int,
                    guidance: float) -> dict:
    """The InvokeModel body of one image for Stability model `model_id`; ValueError for a size it cannot draw."""
    if model_id.startswith(SDXL_PREFIX):
        # A negative prompt is a text prompt of negative weight; an empty one is refused by the API.
        texts = [{"text": prompt, "weight": 1.0}] + ([{"text": negative, "weight": -1.0}] if negative else [])
        return {"text_prompts": texts, "cfg_scale": guidance, "seed": seed, "steps": steps,
                "width": width, "height": height, "samples": 1}
    ratio = Fraction(width, height)
    aspect = f"{ratio.numerator}:{ratio.denominator}"
    if aspect not in STABLE_IMAGE_RATIOS:
        raise RemoteModelRejected(f"Bedrock model {model_id!r} draws the ratios {', '.join(STABLE_IMAGE_RATIOS)} "
                                  f"but {width}x{height} is {aspect}")
    request = {"prompt": prompt, "seed": seed, "aspect_ratio": aspect, "mode": "text-to-image", "output_format": "png"}
    if negative:
        request["negative_prompt"] = negative
    return request


def decode_sagemaker_answer(body: bytes) -> Image.Image:
    """The one image of an InvokeEndpoint answer `{"images": [base64]}`; ValueError saying what is wrong."""
    answer = _json(body)
    images = answer.get("images", answer.get("generated_images"))
    if not isinstance(images, list) or len(images) != 1:
        raise ValueError(f"expected {{'images': [one base64 image]}} but got keys {sorted(answer)}")
    return _image(images[0])


def decode_bedrock_answer(body: bytes) -> Image.Image:
    """The one image of a Stability InvokeModel answer (`artifacts` of SDXL or `images` of the others)."""
    answer = _json(body)
    if "artifacts" in answer:
        artifacts = answer["artifacts"]
        if not isinstance(artifacts, list) or len(artifacts) != 1 or not isinstance(artifacts[0], dict):
            raise ValueError(f"expected one artifact but got {artifacts!r:.200}")
        reason = artifacts[0].get("finishReason")
        if reason != "SUCCESS":
            raise ValueError(f"the image finished with {reason!r}, not 'SUCCESS'")
        return _image(artifacts[0].get("base64"))
    images, reasons = answer.get("images"), answer.get("finish_reasons") or [None]
    if not isinstance(images, list) or len(images) != 1:
        raise ValueError(f"expected 'artifacts' or 'images' holding one image but got keys {sorted(answer)}")
    if reasons[0] is not None:
        raise ValueError(f"the image finished with {reasons[0]!r}")
    return _image(images[0])


def _json(body: bytes) -> dict:
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the answer is not JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise ValueError(f"the answer is JSON {type(answer).__name__}, not an object")
    return answer


def _image(encoded: object) -> Image.Image:
    if not isinstance(encoded, str):
        raise ValueError(f"the image must be a base64 string but is {type(encoded).__name__}")
    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as image:
            return image.convert("RGB")
    except (binascii.Error, OSError, SyntaxError) as exc:
        raise ValueError(f"the image does not decode: {exc}") from None


class RemoteModels(AwsApi):
    """SageMaker and Bedrock runtimes in `region_name` (or at their endpoint URLs); bind credentials with `dg.EnvVar`.

    Throttling and server errors are retried by botocore (standard mode, `max_attempts` calls in all);
    each call waits at most `timeout_s`. `native_size` is the side of the images a batch without
    width and height asks for.
    """

    sagemaker_endpoint_url: str | None = None
    bedrock_endpoint_url: str | None = None
    timeout_s: float = 120.0
    native_size: int = 1024

    def client(self, provider: str) -> Any:
        """The boto3 runtime client of `provider` (sagemaker or bedrock), made on first use."""
        url = self.sagemaker_endpoint_url if provider == SAGEMAKER else self.bedrock_endpoint_url
        return self.api_client(_SERVICES[provider], url, RemoteModelUnavailable, _SERVICES[provider])

    def load(self, model: str) -> RemotePipeline:
        """The pipeline of remote `model` (`sagemaker:ENDPOINT` or `bedrock:MODEL_ID`); ValueError for any other name."""
        problem = missing_remote_model(model)
        if problem:
            raise ValueError(problem)
        return RemotePipeline(model, self.client(remote_model(model)[0]), self.native_size)
