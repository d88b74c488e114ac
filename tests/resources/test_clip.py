import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from resources import open_clip_model
from resources.clip import ClipEmbedder
from resources.open_clip_model import LoadedClip
from resources.tiny_models import TINY_CLIP_CONFIG, TINY_CLIP_NAME, register_tiny_clip

TEXTS = ["a red fox in the snow", "an old sailor", "a castle on a hill"]
DIM = TINY_CLIP_CONFIG["embed_dim"]


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    sizes_and_modes = [((80, 60), "RGB"), ((64, 64), "RGBA"), ((50, 90), "L"), ((64, 64), "RGB")]
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8).squeeze(), mode)
        for (w, h), mode in sizes_and_modes
    ]


@pytest.fixture(scope="module")
def tiny() -> LoadedClip:
    return ClipEmbedder(device="cpu").load()


def assert_unit_rows(embeddings: np.ndarray, rows: int) -> None:
    assert embeddings.dtype == np.float32
    assert embeddings.shape[0] == rows
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


def test_embeddings_are_l2_normalised(tiny, images):
    image_embeddings = tiny.embed_images(images)
    text_embeddings = tiny.embed_texts(TEXTS)
    assert_unit_rows(image_embeddings, len(images))
    assert_unit_rows(text_embeddings, len(TEXTS))
    assert image_embeddings.shape[1] == text_embeddings.shape[1]
    assert len({row.tobytes() for row in image_embeddings}) == len(images)


def test_embeddings_do_not_depend_on_batch_boundaries(tiny, images, monkeypatch):
    whole = tiny.embed_images(images)
    monkeypatch.setattr(open_clip_model, "EMBED_BATCH_SIZE", 3)
    np.testing.assert_allclose(tiny.embed_images(images), whole, atol=1e-6)


def test_fresh_loads_are_deterministic(images):
    open_clip_model.clear_cache()
    first = ClipEmbedder(device="cpu").load()
    open_clip_model.clear_cache()
    second = ClipEmbedder(device="cpu").load()
    assert first is not second
    np.testing.assert_array_equal(first.embed_images(images), second.embed_images(images))
    np.testing.assert_array_equal(first.embed_texts(TEXTS), second.embed_texts(TEXTS))


def test_load_is_cached_per_process(tiny):
    assert ClipEmbedder(device="cpu").load() is ClipEmbedder(device="cpu").load()


def test_zero_shot_gives_a_probability_distribution_per_image(tiny, images):
    probs = tiny.zero_shot(tiny.embed_images(images), ["fox", "sailor", "castle"], [[t] for t in TEXTS])
    assert probs.shape == (len(images), len(TEXTS))
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_zero_shot_ranks_the_label_whose_prompt_matches_the_embedding(tiny):
    probs = tiny.zero_shot(tiny.embed_texts(TEXTS), ["fox", "sailor", "castle"], [[t] for t in TEXTS])
    assert list(probs.argmax(axis=1)) == list(range(len(TEXTS)))


def test_zero_shot_classifier_averages_each_labels_templates_as_open_clip_does(tiny):
    templates = [["a photo of a fox.", "a drawing of a fox."], ["a photo of a castle.", "a drawing of a castle."]]
    classifier = tiny.zero_shot_classifier(templates)
    for row, texts in zip(classifier, templates):
        mean = tiny.embed_texts(texts).mean(axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)
    assert_unit_rows(classifier, 2)


def test_zero_shot_classifier_is_encoded_once_per_model(images, monkeypatch):
    clip = ClipEmbedder(device="cpu").load()
    encoded = []
    encode = clip._encode_texts
    monkeypatch.setattr(clip, "_encode_texts", lambda texts: encoded.append(list(texts)) or encode(texts))
    prompts = [["a tiny fox", "a small fox"], ["a big castle", "a huge castle"]]
    first = clip.zero_shot(clip.embed_images(images), ["fox", "castle"], prompts)
    again = clip.zero_shot(clip.embed_images(images[:2]), ["fox", "castle"], prompts)
    assert encoded == [[text for texts in prompts for text in texts]]
    np.testing.assert_allclose(again, first[:2], rtol=1e-5)


@pytest.mark.parametrize(
    ("labels", "prompts", "embeddings", "message"),
    [
        ([], [], np.zeros((1, DIM)), "`labels` must contain at least one label"),
        (["fox"], [[t] for t in TEXTS], np.zeros((1, DIM)), "one list of texts per label but there are 1 labels and 3"),
        (["fox", "cat"], [["a fox"], []], np.zeros((1, DIM)), "at least one text per label"),
        (["fox"], [TEXTS[:1]], np.zeros((1, DIM + 1)), rf"shape \[n_images, {DIM}\] but has shape \(1, {DIM + 1}\)"),
    ],
)
def test_zero_shot_rejects_inconsistent_inputs(tiny, labels, prompts, embeddings, message):
    with pytest.raises(ValueError, match=message):
        tiny.zero_shot(embeddings, labels, prompts)


def test_empty_inputs_are_rejected(tiny):
    with pytest.raises(ValueError, match="`imgs` must contain at least one item"):
        tiny.embed_images([])
    with pytest.raises(ValueError, match="`texts` must contain at least one item"):
        tiny.embed_texts([])


def test_checkpoint_file_is_loaded(tmp_path, tiny, images):
    register_tiny_clip()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP_NAME)
    path = tmp_path / "tiny-clip.pt"
    torch.save(model.state_dict(), path)
    expected = LoadedClip(model, preprocess, open_clip.get_tokenizer(TINY_CLIP_NAME), torch.device("cpu"))

    loaded = ClipEmbedder(model_name=TINY_CLIP_NAME, pretrained=str(path), device="cpu").load()

    np.testing.assert_allclose(loaded.embed_images(images), expected.embed_images(images), atol=1e-6)
    np.testing.assert_allclose(loaded.embed_texts(TEXTS), expected.embed_texts(TEXTS), atol=1e-6)
    assert not np.allclose(loaded.embed_texts(TEXTS), tiny.embed_texts(TEXTS), atol=1e-3)


def test_loading_leaves_the_global_rng_alone():
    open_clip_model.clear_cache()
    before = torch.get_rng_state()
    ClipEmbedder(device="cpu").load()
    assert torch.equal(torch.get_rng_state(), before)
