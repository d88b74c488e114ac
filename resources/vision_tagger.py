"""The vision-language tagger: a Bedrock model (Claude 3 with vision) describing one image as JSON tags.

`VisionTagger.tag_image` sends the image with the design document's tagging prompt to
`bedrock-runtime` `InvokeModel` and returns the tags of the model's JSON answer, bounded: at most
`max_tags` tags, labels of at most LABEL_MAX characters, each with the confidence the model gave,
clamped to [0, 1]. Whatever goes wrong is one of two errors, so that the caller can fall back to its
local tagger: `VisionTaggerUnavailable` (no credentials or region, the endpoint cannot be reached,
throttling that outlasted the retries, access denied, a model that is not there) and
`VisionAnswerError` (the answer is not the JSON that was asked for).

Credentials come from the environment: bind them as `dg.EnvVar`s, or leave them out for boto3's
default chain (shared config, instance or task role).
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from resources.aws_clients import AwsApi

# The design document's tagging prompt (section 4.4), with the confidences AssetQL keeps per tag.
TAGGING_PROMPT = """Analyze this image and provide:
1. Objects present (comma-separated)
2. Scene type (indoor/outdoor/abstract/etc)
3. Dominant colors (3-5 colors)
4. Mood/atmosphere (1-2 words)
5. Art style (realistic/cartoon/abstract/etc)
6. Composition (portrait/landscape/square)

Format as JSON:
{
  "objects": ["dragon", "mountain", "sky"],
  "scene": "outdoor",
  "colors": ["blue", "gray", "orange"],
  "mood": "epic",
  "style": "fantasy illustration",
  "composition": "landscape"
}

Also give "confidence": an object mapping every value above to how sure you are, from 0 to 1, that
it describes the image, e.g. {"dragon": 0.95, "outdoor": 0.8}. Answer with the JSON object only."""
# The answer's keys and the tag kinds they become.
ANSWER_KINDS = {
    "objects": "object",
    "scene": "scene",
    "colors": "color",
    "mood": "mood",
    "style": "style",
    "composition": "composition",
}
ANTHROPIC_VERSION = "bedrock-2023-05-31"
MAX_OUTPUT_TOKENS = 1024
# A tag answer is a few hundred bytes; anything far larger is not one, and is not read whole.
MAX_RESPONSE_BYTES = 256_000
LABEL_MAX = 40
# Control characters other than the whitespace that label text is split at.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class VisionTag:
    """One tag of the model's answer: kind (a value of ANSWER_KINDS), label and confidence in [0, 1]."""

    kind: str
    label: str
    confidence: float


class VisionTaggerUnavailable(RuntimeError):
    """Bedrock could not be asked: credentials, region, endpoint, throttling after retries, access, model."""


class VisionAnswerError(ValueError):
    """Bedrock answered, but not with the JSON tags asked for."""


class VisionTagger(AwsApi):
    """Bedrock runtime in `region_name` (or at `endpoint_url`); bind credentials with `dg.EnvVar`.

    Throttling and server errors are retried by botocore (standard mode, `max_attempts` calls in
    all, with backoff); each call waits at most `timeout_s` for the answer.
    """

    endpoint_url: str | None = None
    max_tags: int = 24

    @property
    def client(self) -> Any:
        """The boto3 `bedrock-runtime` client, created on first use; VisionTaggerUnavailable when
        boto3 cannot make one (e.g. no region)."""
        return self.api_client("bedrock-runtime", self.endpoint_url, VisionTaggerUnavailable, "Bedrock")

    def tag_image(self, image: bytes, media_type: str, model_id: str) -> list[VisionTag]:
        """The tags model `model_id` sees in `image` (bytes of type `media_type`, e.g. image/jpeg)."""
        request = {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": MAX_OUTPUT_TOKENS,
            "temperature": 0,
            "messages": [{
                "role": "user",
                "content": [
                    {"type": "image", "source": {
                        "type": "base64", "media_type": media_type, "data": base64.b64encode(image).decode("ascii"),
                    }},
                    {"type": "text", "text": TAGGING_PROMPT},
                ],
            }],
        }
        try:
            response = self.client.invoke_model(
                modelId=model_id, body=json.dumps(request), contentType="application/json", accept="application/json"
            )
            body = response["body"].read(MAX_RESPONSE_BYTES + 1)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise VisionTaggerUnavailable(
                f"Bedrock refused model {model_id!r}: {error.get('Code', 'error')}: {error.get('Message', '')}"
            ) from exc
        except BotoCoreError as exc:
            raise VisionTaggerUnavailable(f"Bedrock could not be reached: {exc}") from exc
        return parse_answer(body, self.max_tags)


def parse_answer(body: bytes, max_tags: int) -> list[VisionTag]:
    """The tags in an InvokeModel response body of the Anthropic messages API, bounded; a value
    without a numeric confidence, or with an unusable label, is left out. VisionAnswerError when
    the body is not that, or holds no usable tag."""
    if len(body) > MAX_RESPONSE_BYTES:
        raise VisionAnswerError(f"the response is larger than {MAX_RESPONSE_BYTES} bytes; a tag answer is far smaller")
    try:
        envelope = json.loads(body)
    except ValueError as exc:  # also bytes that are not UTF-8
        raise VisionAnswerError(f"the response is not JSON: {exc}") from None
    content = envelope.get("content") if isinstance(envelope, dict) else None
    text = "".join(
        part["text"] for part in content or ()
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
    )
    # The model may wrap its JSON in prose or a code fence: take the outermost object.
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise VisionAnswerError(f"the model's answer holds no JSON object: {text[:80]!r}")
    try:
        document = json.loads(text[start : end + 1])
    except ValueError as exc:
        raise VisionAnswerError(f"the model's JSON does not parse: {exc}") from None
    if not isinstance(document, dict):
        raise VisionAnswerError(f"the model's JSON must be an object of tag lists, got {type(document).__name__}")
    stated = document.get("confidence")
    confidences = {str(k).casefold(): v for k, v in stated.items()} if isinstance(stated, dict) else {}
    tags: dict[tuple[str, str], VisionTag] = {}
    for key, kind in ANSWER_KINDS.items():
        values = document.get(key)
        for value in [values] if isinstance(values, str) else values if isinstance(values, list) else []:
            label = _label(value)
            confidence = _confidence(confidences.get(value.casefold())) if label else None
            if label and confidence is not None and len(tags) < max_tags:
                tags.setdefault((kind, label), VisionTag(kind, label, confidence))
    if not tags:
        raise VisionAnswerError(f"the model's JSON holds no tag with a label and a confidence: {text[:80]!r}")
    return list(tags.values())


def _label(value: object) -> str | None:
    if not isinstance(value, str) or _CONTROL.search(value):
        return None
    label = " ".join(value.split()).lower()
    return label if 0 < len(label) <= LABEL_MAX and any(c.isalnum() for c in label) else None


def _confidence(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return min(1.0, max(0.0, float(value)))
