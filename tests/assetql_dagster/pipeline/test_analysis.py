"""`tag_images` on the offline tiny CLIP, locally and through a stubbed Bedrock (no Bedrock runs here)."""

import dataclasses
import io
import json

import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from harness.offline import offline  # noqa: F401 - the fixture, used by name
from harness.record_samples import JOB, SAMPLES
from PIL import Image

from assetql_dagster.domain.records import BatchInput, ImageSet, StoredImage
from assetql_dagster.domain.settings import BEDROCK_MODEL
from assetql_dagster.pipeline.analysis import tag_images
from resources.clip import ClipEmbedder
from resources.storage import LocalStorage
from resources.vision_tagger import VisionTagger

BATCH = next(s for s in SAMPLES if isinstance(s, BatchInput))
# (image id, size, colour, CSV category, prompt): a category typed, one in the prompt, none at all.
IMAGES = [
    ("img_sword", (64, 64), (200, 40, 30), "sword", "a blade"),
    ("img_potion", (96, 64), (40, 90, 210), "", "a healing potion on a shelf"),
    ("img_blob", (64, 96), (120, 120, 120), "", "abstract shapes"),
]


@pytest.fixture
def stored(tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    records, jobs = [], []
    for image_id, (w, h), colour, category, prompt in IMAGES:
        pixels = np.linspace(0, 1, w)[None, :, None] * np.array(colour)[None, None, :]
        buffer = io.BytesIO()
        Image.fromarray(np.repeat(pixels, h, axis=0).astype(np.uint8)).save(buffer, "PNG")
        raw = f"raw/{BATCH.batch}/{image_id}.png"
        storage.write_bytes(raw, buffer.getvalue())
        records.append(StoredImage(image_id, f"{image_id}.png", raw, f"thumbnails/{BATCH.batch}/{image_id}.jpg", w, h, 1))
        jobs.append(dataclasses.replace(JOB, image_id=image_id, file_name=f"{image_id}.png", category=category, prompt=prompt))
    return storage, ImageSet(len(records), tuple(records), ()), jobs


@pytest.fixture(scope="module")
def clip():
    return ClipEmbedder(device="cpu").load()


SETTINGS = BATCH.settings
BEDROCK = dataclasses.replace(SETTINGS, tagger="bedrock")


def answer(document: dict | str) -> dict:
    text = document if isinstance(document, str) else json.dumps(document)
    body = json.dumps({"content": [{"type": "text", "text": text}]}).encode()
    return {"body": StreamingBody(io.BytesIO(body), len(body)), "contentType": "application/json"}


GOOD = {"objects": ["dragon"], "scene": "outdoor", "mood": "epic", "confidence": {"dragon": 0.9, "outdoor": 0.8, "epic": 0.3}}
EXPECTED = {"modelId": BEDROCK_MODEL, "body": ANY, "contentType": "application/json", "accept": "application/json"}


@pytest.fixture
def bedrock():
    tagger = VisionTagger(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    with Stubber(tagger.client) as stub:
        yield tagger, stub
        stub.assert_no_pending_responses()


def test_every_image_gets_five_sourced_tags_while_the_tiny_clip_labels_are_all_dropped(stored, clip, offline):
    storage, images, jobs = stored
    result = tag_images(storage, SETTINGS, images, jobs, clip)
    assert [t.image_id for t in result.images] == [i[0] for i in IMAGES]
    for tagged in result.images:
        assert len(tagged.tags) >= 5
        # The tiny random CLIP cannot tell labels apart: none of its labels passes a threshold.
        assert {t.source for t in tagged.tags} <= {"pixels", "csv", "keywords"}
        assert {"pixels"} <= {t.source for t in tagged.tags}
        assert len(tagged.embedding) > 0
    sword, potion, blob = result.images
    assert (sword.category, sword.category_source) == ("weapon/sword", "csv")
    assert [(t.label, t.source) for t in sword.tags if t.kind == "category"] == [("sword", "csv"), ("weapon", "csv")]
    assert (potion.category, potion.category_source) == ("potion/health", "keywords")
    assert {t.label: t.confidence for t in potion.tags if t.kind == "category"} == {"potion": 0.9, "health": 0.9}
    assert (blob.category, blob.category_source) == ("", "")
    assert not [t for t in blob.tags if t.kind == "category"]
    assert {t.label for t in blob.tags} >= {"portrait"}
    assert result.embedding_model == clip.embedding_model


def test_the_vocabulary_is_encoded_once_per_model(stored, clip, monkeypatch):
    storage, images, jobs = stored
    tag_images(storage, SETTINGS, images, jobs, clip)
    encoded = []
    encode = clip._encode_texts
    monkeypatch.setattr(clip, "_encode_texts", lambda texts: encoded.append(len(texts)) or encode(texts))
    tag_images(storage, SETTINGS, images, jobs, clip)
    assert encoded == []


def test_bedrock_tags_replace_clips_when_the_batch_asks_for_them(stored, clip, bedrock, offline):
    storage, images, jobs = stored
    tagger, stub = bedrock
    for _ in IMAGES:
        stub.add_response("invoke_model", answer(GOOD), EXPECTED)
    warnings = []
    result = tag_images(storage, BEDROCK, images, jobs, clip, tagger, warnings.append)
    assert warnings == []
    for tagged in result.images:
        from_bedrock = {(t.label, t.kind) for t in tagged.tags if t.source == "bedrock"}
        # "epic" is under the mood group's threshold, so it is dropped like a CLIP label would be.
        assert from_bedrock == {("dragon", "object"), ("outdoor", "scene")}
        assert len(tagged.tags) >= 5
    assert result.images[0].category == "weapon/sword"


def test_a_bedrock_error_falls_back_to_the_local_tagger_for_the_rest_of_the_batch(stored, clip, bedrock, offline):
    storage, images, jobs = stored
    tagger, stub = bedrock
    stub.add_client_error("invoke_model", service_error_code="ThrottlingException", service_message="Rate exceeded",
                          http_status_code=429)
    warnings = []
    result = tag_images(storage, BEDROCK, images, jobs, clip, tagger, warnings.append)
    # One call, one warning: the later images are not sent to an endpoint that just failed.
    [warning] = warnings
    assert "Bedrock is unavailable" in warning and "img_sword.png" in warning and "ThrottlingException" in warning
    local = tag_images(storage, SETTINGS, images, jobs, clip)
    assert [t.tags for t in result.images] == [t.tags for t in local.images]


def test_a_malformed_answer_falls_back_for_that_image_only(stored, clip, bedrock, offline):
    storage, images, jobs = stored
    tagger, stub = bedrock
    stub.add_response("invoke_model", answer(GOOD), EXPECTED)
    stub.add_response("invoke_model", answer("Sorry, I see a potion: {objects: potion}"), EXPECTED)
    stub.add_response("invoke_model", answer(GOOD), EXPECTED)
    warnings = []
    result = tag_images(storage, BEDROCK, images, jobs, clip, tagger, warnings.append)
    [warning] = warnings
    assert warning.startswith("img_potion.png: Bedrock's answer is unusable") and "does not parse" in warning
    sources = [{t.source for t in tagged.tags} for tagged in result.images]
    assert "bedrock" in sources[0] and "bedrock" not in sources[1] and "bedrock" in sources[2]


def test_bedrock_without_a_tagger_resource_is_refused(stored, clip):
    storage, images, jobs = stored
    with pytest.raises(ValueError, match="tagger: bedrock needs a vision tagger resource, got None"):
        tag_images(storage, BEDROCK, images, jobs, clip)
