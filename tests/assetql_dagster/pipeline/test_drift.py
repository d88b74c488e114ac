import io
import json

import numpy as np
import pytest
from PIL import Image

from assetql_dagster.domain.records import Curation, ImageScore, ImageSet, ScoreSet, StoredImage
from assetql_dagster.domain.scoring import parameter_weights
from assetql_dagster.domain.style_report import NO_EARLIER_BATCH, cosine_distance
from assetql_dagster.pipeline.drift import (
    batch_style,
    history_key,
    load_history,
    load_style_report,
    named_profile,
)
from assetql_dagster.pipeline.profiles import create_profile
from assetql_dagster.pipeline.registration import register_batch, registered_batch
from resources.storage import LocalStorage

RED, BLUE = (220, 40, 30), (30, 40, 220)


class MeanColourClip:
    """Embeds an image as its unit-length mean colour, so centroids are known in advance."""

    def __init__(self):
        self.embedded = 0

    def embed_images(self, imgs):
        self.embedded += len(imgs)
        vectors = np.asarray([np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(axis=0) for img in imgs])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(root=str(tmp_path / "data"))


def profile_batch(storage, tmp_path, batch_factory, name):
    """A batch named `name` that takes its references from profile brand-x."""
    folder = batch_factory(rows=1, references=False, name=name)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "\nstyle: brand-x\n")
    return registered_batch(storage, register_batch(storage, folder).key)


def curation(storage, batch, colours_and_scores):
    """A curated batch whose images are solid thumbnails of the given colours, with those style scores."""
    stored, scores = [], []
    for i, (colour, score) in enumerate(colours_and_scores):
        record = StoredImage(f"img-{i}", f"img-{i}.png", f"raw/{batch}/img-{i}.png",
                             f"thumbnails/{batch}/img-{i}_thumb.jpg", 64, 64, i)
        out = io.BytesIO()
        Image.new("RGB", (64, 64), colour).save(out, format="JPEG")
        storage.write_bytes(record.thumb_key, out.getvalue(), "image/jpeg")
        stored.append(record)
        scores.append(ImageScore(record.image_id, record.file_name, "pass" if score >= 0.5 else "review",
                                 style_score=score, attempts=2 if i == 0 else 1, version=2 if i == 0 else 1))
    return Curation(ImageSet(len(stored), tuple(stored), ()), ScoreSet(0.5, parameter_weights({}), tuple(scores)),
                    pass_rate_before=0.5, regenerated=1, budget=1, seconds_generating=0.8)


def unit(colour):
    return tuple(np.asarray(colour, dtype=np.float64) / np.linalg.norm(colour))


def test_the_second_batch_of_a_profile_is_compared_with_the_first(tmp_path, storage, batch_factory):
    refs = tmp_path / "refs"
    refs.mkdir()
    Image.new("RGB", (32, 32), RED).save(refs / "red.png")
    create_profile(storage, "brand-x", refs)
    spring = profile_batch(storage, tmp_path, batch_factory, "spring")
    summer = profile_batch(storage, tmp_path, batch_factory, "summer")
    assert str(named_profile(spring)) == "brand-x@1"
    clip = MeanColourClip()

    first_report, first = batch_style(storage, spring, curation(storage, spring.batch, [(RED, 0.8), (RED, 0.6)]),
                                      "tiny", lambda: clip)
    assert first.passed and first.description == NO_EARLIER_BATCH and first.profile == "brand-x"
    assert clip.embedded == 2
    [record] = load_history(storage, "brand-x")
    assert (record.batch, record.profile, record.version, record.clip_model) == (spring.batch, "brand-x", 1, "tiny")
    assert record.mean_style_score == pytest.approx(0.7) and record.style_score_cv == round(0.1 / 0.7, 6)
    # JPEG thumbnails: the embedded colour is the red's, to within compression.
    assert cosine_distance(record.centroid, unit(RED)) < 1e-3
    assert json.loads(storage.read_text(history_key("brand-x", spring.batch)))["batch"] == spring.batch
    assert load_style_report(storage, spring.batch) == (first_report, first)

    _, second = batch_style(storage, summer, curation(storage, summer.batch, [(BLUE, 0.55), (BLUE, 0.45)]),
                            "tiny", lambda: clip)
    assert second.compared == (spring.batch,)
    assert second.score_delta == pytest.approx(0.5 - 0.7)
    history = load_history(storage, "brand-x")
    assert [b.batch for b in history] == [spring.batch, summer.batch]
    assert second.centroid_distance == pytest.approx(cosine_distance(history[1].centroid, history[0].centroid))
    # Red against blue, to within JPEG's colour shifts: far past the limit.
    assert second.centroid_distance == pytest.approx(cosine_distance(unit(BLUE), unit(RED)), abs=0.01)
    assert second.centroid_distance > 0.15
    assert not second.passed and "against 1 earlier batch(es) of profile brand-x" in second.description

    # A re-run of the first batch still has nothing registered before it, and does not compare with itself.
    _, again = batch_style(storage, spring, curation(storage, spring.batch, [(RED, 0.8), (RED, 0.6)]),
                           "tiny", lambda: clip)
    assert again.passed and again.description == NO_EARLIER_BATCH
    assert len(load_history(storage, "brand-x")) == 2


def test_a_batch_without_a_named_profile_is_not_embedded(storage, batch_factory):
    batch = registered_batch(storage, register_batch(storage, batch_factory(rows=1, name="plain")).key)

    def no_clip():
        raise AssertionError("a batch without a named profile needs no embedding")

    report, result = batch_style(storage, batch, curation(storage, batch.batch, [(RED, 0.9)]), "tiny", no_clip)
    assert result.passed and result.description == f"{NO_EARLIER_BATCH} (the batch names no style profile)"
    assert report.mean == pytest.approx(0.9)
    assert load_style_report(storage, batch.batch) == (report, result)
    assert storage.list_keys("style-profiles") == []
