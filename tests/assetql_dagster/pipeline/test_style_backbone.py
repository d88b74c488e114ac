"""Style profiles and style scores use the configured style backbone: CLIP, or a CSD-style checkpoint."""

import dataclasses
import io
from itertools import combinations

import numpy as np
import pytest
from PIL import Image

from assetql_dagster.domain.records import ImageSet, StoredImage, StyleProfile, from_json, to_json
from assetql_dagster.domain.scoring import clip_similarity_to_unit, parameter_weights
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.domain.style_parameters import extract_parameters
from assetql_dagster.pipeline.analysis import score_images, scorer
from assetql_dagster.pipeline.style import build_profile, style_scores
from resources.clip import ClipEmbedder
from resources.storage import LocalStorage
from resources.tiny_models import TINY_CLIP_CONFIG
from resources.tiny_style_descriptor import TINY_STYLE_DIM, build_tiny_style_checkpoint

SETTINGS = BatchSettings()
WEIGHTS = parameter_weights(SETTINGS.lock_weights)
CLIP_DIM = TINY_CLIP_CONFIG["embed_dim"]


def picture(seed: int) -> Image.Image:
    """A colour gradient with noise, different for every seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64] / 63.0
    base = rng.uniform(0, 255, 3) * x[..., None] + rng.uniform(0, 255, 3) * y[..., None]
    return Image.fromarray(np.clip(base / 2 + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8))


REFERENCES = [picture(s) for s in (1, 2, 3)]
CANDIDATES = [picture(s) for s in (10, 11, 12, 13)]
RECORDS = [StoredImage(f"img-{i}", f"img-{i}.png", f"raw/{i}.png", f"thumb/{i}.jpg", 64, 64, i) for i in range(4)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(build_tiny_style_checkpoint(tmp_path_factory.mktemp("csd") / "house_style.pth"))


@pytest.fixture(scope="module")
def csd(checkpoint):
    return ClipEmbedder(device="cpu", style_checkpoint=checkpoint).load()


@pytest.fixture(scope="module")
def clip():
    return ClipEmbedder(device="cpu").load()


def profile_of(loaded) -> StyleProfile:
    return build_profile(("a.png", "b.png", "c.png"), REFERENCES, loaded, "tiny", WEIGHTS)


def test_profile_embedding_comes_from_the_style_descriptor(csd):
    profile = profile_of(csd)
    descriptors = csd.style_embeddings(REFERENCES)
    mean = descriptors.mean(axis=0)
    assert profile.embedding_backbone == "csd:house_style.pth"
    assert len(profile.embedding) == TINY_STYLE_DIM
    np.testing.assert_allclose(profile.embedding, mean / np.linalg.norm(mean), atol=1e-6)
    # How alike the references are is measured with the descriptor's cosines too.
    each = [extract_parameters(r) for r in REFERENCES]
    expected = [
        round(style_scores(each[i], each[j], float(descriptors[i] @ descriptors[j]), WEIGHTS)[0], 4)
        for i, j in combinations(range(3), 2)
    ]
    assert profile.reference_similarities == tuple(expected)


def test_without_a_checkpoint_the_profile_is_clips_as_before(clip, csd):
    profile = profile_of(clip)
    embeddings = clip.embed_images(REFERENCES)
    mean = embeddings.mean(axis=0)
    assert profile.embedding_backbone == "clip"
    assert profile.clip_model == "tiny"
    assert len(profile.embedding) == CLIP_DIM
    np.testing.assert_allclose(profile.embedding, mean / np.linalg.norm(mean), atol=1e-6)
    # Only the embedding and what is measured with it depend on the backbone.
    with_csd = profile_of(csd)
    assert with_csd.reference_similarities != profile.reference_similarities
    same = ("palette", "brightness", "contrast", "parameters", "references", "clip_model")
    assert all(getattr(with_csd, field) == getattr(profile, field) for field in same)


def test_scores_embedding_parameter_with_the_style_descriptor(csd):
    profile = profile_of(csd)
    _, score = scorer(profile, SETTINGS, csd)
    scores = score(RECORDS, CANDIDATES)
    cosines = csd.style_embeddings(CANDIDATES) @ np.asarray(profile.embedding, dtype=np.float32)
    assert [s.clip_similarity for s in scores] == [round(float(c), 4) for c in cosines]
    assert [s.embedding_score for s in scores] == [round(clip_similarity_to_unit(float(c)), 4) for c in cosines]
    assert all(s.verdict in ("pass", "fail") for s in scores)


def test_default_scores_are_clips(clip):
    profile = profile_of(clip)
    _, score = scorer(profile, SETTINGS, clip)
    cosines = clip.embed_images(CANDIDATES) @ np.asarray(profile.embedding, dtype=np.float32)
    assert [s.clip_similarity for s in score(RECORDS, CANDIDATES)] == [round(float(c), 4) for c in cosines]


def test_score_images_reads_stored_images_and_uses_the_descriptor(tmp_path, csd):
    storage = LocalStorage(root=str(tmp_path))
    for record, img in zip(RECORDS, CANDIDATES):
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        storage.write_bytes(record.raw_key, buffer.getvalue(), "image/png")
    profile = profile_of(csd)
    stored = score_images(storage, ImageSet(planned=len(RECORDS), stored=tuple(RECORDS), failed=()), profile, SETTINGS, csd)
    _, score = scorer(profile, SETTINGS, csd)
    assert [s.embedding_score for s in stored.images] == [s.embedding_score for s in score(RECORDS, CANDIDATES)]


@pytest.mark.parametrize("built_with", ["clip", "csd"])
def test_a_profile_of_another_backbone_is_refused(clip, csd, built_with):
    profile, scoring = (profile_of(clip), csd) if built_with == "clip" else (profile_of(csd), clip)
    _, score = scorer(profile, SETTINGS, scoring)
    with pytest.raises(ValueError, match=r"style profile's embedding comes from backbone .* re-materialize style_profile"):
        score(RECORDS, CANDIDATES)


def test_a_profile_without_reference_scores_nothing_whatever_the_backbone(csd):
    _, score = scorer(StyleProfile(has_reference=False, reason="no style reference"), SETTINGS, csd)
    assert [s.verdict for s in score(RECORDS, CANDIDATES)] == ["unscored"] * len(RECORDS)


def test_the_backbone_is_stored_and_older_profiles_read_as_clip(csd):
    profile = profile_of(csd)
    assert from_json(to_json(profile)).embedding_backbone == "csd:house_style.pth"
    older = to_json(dataclasses.replace(profile, embedding_backbone="clip"))
    del older["value"]["embedding_backbone"]
    assert from_json(older).embedding_backbone == "clip"
