"""The Bedrock tagger against botocore's Stubber: no Bedrock runs here, and nothing reaches a network."""

import base64
import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from harness.offline import offline  # noqa: F401 - the fixture, used by name

from assetql_dagster.domain.tagging import TAG_GROUPS_BY_KIND
from resources.vision_tagger import (
    ANSWER_KINDS,
    LABEL_MAX,
    MAX_RESPONSE_BYTES,
    TAGGING_PROMPT,
    VisionAnswerError,
    VisionTag,
    VisionTagger,
    VisionTaggerUnavailable,
    parse_answer,
)

MODEL = "anthropic.claude-3-sonnet-20240229-v1:0"
EXPECTED = {"modelId": MODEL, "body": ANY, "contentType": "application/json", "accept": "application/json"}


def answer(text: str) -> dict:
    """An InvokeModel response whose (Anthropic messages API) body holds the model's `text`."""
    body = json.dumps({"content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}).encode()
    return {"body": StreamingBody(io.BytesIO(body), len(body)), "contentType": "application/json"}


@pytest.fixture
def tagger():
    return VisionTagger(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


def test_answer_kinds_are_tag_groups():
    assert set(ANSWER_KINDS.values()) == set(TAG_GROUPS_BY_KIND)


def test_a_good_answer_becomes_tags_and_the_request_carries_image_and_prompt(tagger, offline):
    text = "Here you go:\n```json\n" + json.dumps({
        "objects": ["Dragon", "mountain"], "scene": "outdoor", "colors": ["blue"], "mood": "epic",
        "style": "fantasy illustration", "composition": "landscape",
        "confidence": {"dragon": 0.95, "mountain": 0.7, "outdoor": 0.8, "blue": 1.4, "epic": 0.6,
                       "fantasy illustration": 0.9, "landscape": -0.2},
    }) + "\n```"
    with Stubber(tagger.client) as stub:
        stub.add_response("invoke_model", answer(text), EXPECTED)
        tags = tagger.tag_image(b"\xff\xd8jpeg", "image/jpeg", MODEL)
        stub.assert_no_pending_responses()
    assert tags == [
        VisionTag("object", "dragon", 0.95), VisionTag("object", "mountain", 0.7), VisionTag("scene", "outdoor", 0.8),
        VisionTag("color", "blue", 1.0), VisionTag("mood", "epic", 0.6),
        VisionTag("style", "fantasy illustration", 0.9), VisionTag("composition", "landscape", 0.0),
    ]


def test_the_request_is_the_design_prompt_with_the_image(tagger):
    sent = []
    tagger.client.meta.events.register("before-parameter-build.bedrock-runtime.InvokeModel",
                                       lambda params, **kwargs: sent.append(json.loads(params["body"])))
    with Stubber(tagger.client) as stub:
        stub.add_response("invoke_model", answer('{"objects": ["gem"], "confidence": {"gem": 0.5}}'), EXPECTED)
        tagger.tag_image(b"png bytes", "image/png", MODEL)
    [request] = sent
    image, prompt = request["messages"][0]["content"]
    assert image["source"] == {"type": "base64", "media_type": "image/png", "data": base64.b64encode(b"png bytes").decode()}
    assert prompt == {"type": "text", "text": TAGGING_PROMPT}
    assert '"objects": ["dragon", "mountain", "sky"]' in TAGGING_PROMPT and request["max_tokens"] > 0


def test_answers_are_bounded_and_unusable_values_left_out():
    many = [f"thing {i}" for i in range(40)]
    document = {
        "objects": many + ["x" * (LABEL_MAX + 1), "bad\x00label", "!!!", 7],
        "mood": ["calm", "tense"],
        "confidence": {**{m: 0.5 for m in many}, "calm": "very", "tense": float("nan"), "!!!": 0.9},
    }
    body = json.dumps({"content": [{"type": "text", "text": json.dumps(document)}]}).encode()
    tags = parse_answer(body, max_tags=24)
    assert len(tags) == 24 and {t.kind for t in tags} == {"object"}
    assert all(len(t.label) <= LABEL_MAX for t in tags)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "the response is not JSON"),
        (json.dumps({"content": [{"type": "text", "text": "I cannot help with that."}]}).encode(), "holds no JSON object"),
        (json.dumps({"content": [{"type": "text", "text": '{"objects": ["dragon",}'}]}).encode(), "does not parse"),
        (json.dumps({"content": [{"type": "text", "text": '{"objects": ["dragon"]}'}]}).encode(), "no tag with a label and a confidence"),
        (json.dumps({"content": "nope"}).encode(), "holds no JSON object"),
        (b"{" + b" " * MAX_RESPONSE_BYTES + b"}", "larger than"),
    ],
)
def test_malformed_answers_are_answer_errors(body, message):
    with pytest.raises(VisionAnswerError, match=message):
        parse_answer(body, max_tags=24)


def test_a_malformed_answer_through_the_client_is_an_answer_error(tagger, offline):
    with Stubber(tagger.client) as stub:
        stub.add_response("invoke_model", answer("objects: dragon, mountain"), EXPECTED)
        with pytest.raises(VisionAnswerError, match="holds no JSON object: 'objects: dragon, mountain'"):
            tagger.tag_image(b"jpeg", "image/jpeg", MODEL)


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDeniedException", "ResourceNotFoundException"])
def test_client_errors_mean_bedrock_is_unavailable(tagger, offline, code):
    with Stubber(tagger.client) as stub:
        stub.add_client_error("invoke_model", service_error_code=code, service_message="no", http_status_code=400)
        with pytest.raises(VisionTaggerUnavailable, match=f"refused model '{MODEL}': {code}: no"):
            tagger.tag_image(b"jpeg", "image/jpeg", MODEL)


def test_no_credentials_means_bedrock_is_unavailable(offline, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(VisionTaggerUnavailable, match="could not be reached: Unable to locate credentials"):
        VisionTagger(region_name="us-east-1").tag_image(b"jpeg", "image/jpeg", MODEL)


def test_no_region_means_bedrock_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(VisionTaggerUnavailable, match="no Bedrock client: You must specify a region"):
        VisionTagger().client
