"""CSD-style descriptors from a style checkpoint, beside the CLIP embeddings they replace for style."""

import argparse

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from resources import open_clip_model
from resources.clip import ClipEmbedder
from resources.style_backbone import style_backbone_name
from resources.style_descriptor import read_style_state_dict
from resources.tiny_models import TINY_CLIP_CONFIG, TINY_CLIP_NAME, register_tiny_clip
from resources.tiny_style_descriptor import TINY_STYLE_DIM, build_tiny_style_checkpoint

WIDTH = TINY_CLIP_CONFIG["vision_cfg"]["width"]
CLIP_DIM = TINY_CLIP_CONFIG["embed_dim"]


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(11)
    sizes_and_modes = [((80, 60), "RGB"), ((64, 64), "RGBA"), ((50, 90), "L"), ((64, 64), "RGB")]
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8).squeeze(), mode)
        for (w, h), mode in sizes_and_modes
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(build_tiny_style_checkpoint(tmp_path_factory.mktemp("csd") / "tiny_csd.pth"))


@pytest.fixture(scope="module")
def state(checkpoint) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict without the `module.` prefix, to write variants of it."""
    return read_style_state_dict(checkpoint)


def styled(checkpoint: str) -> ClipEmbedder:
    return ClipEmbedder(device="cpu", style_checkpoint=checkpoint)


def reference_descriptors(state: dict[str, torch.Tensor], imgs: list[Image.Image]) -> np.ndarray:
    """CSD's forward written out: the tiny visual tower with the checkpoint's weights and no `proj`,
    its pooled features through `last_layer_style`, L2-normalised."""
    register_tiny_clip()
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP_NAME)
    visual = model.visual.eval()
    visual.proj = None
    visual.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")})
    with torch.inference_mode():
        features = visual(torch.stack([preprocess(img) for img in imgs]))
        return F.normalize(features @ state["last_layer_style"], dim=-1).numpy()


def test_descriptors_are_unit_vectors_of_the_style_heads_dim(checkpoint, images):
    descriptors = styled(checkpoint).style_embeddings(images)
    assert descriptors.dtype == np.float32
    assert descriptors.shape == (len(images), TINY_STYLE_DIM)
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, rtol=1e-5)
    assert len({row.tobytes() for row in descriptors}) == len(images)


def test_descriptor_is_the_style_head_on_the_backbones_features(checkpoint, state, images):
    np.testing.assert_allclose(
        styled(checkpoint).style_embeddings(images), reference_descriptors(state, images), atol=1e-5
    )


def test_the_same_image_gives_the_same_descriptor(checkpoint, images):
    clip = styled(checkpoint)
    first = clip.style_embeddings(images)
    np.testing.assert_array_equal(clip.style_embeddings(images), first)
    # Alone, repeated in a batch, or after a fresh load of model and checkpoint.
    np.testing.assert_allclose(clip.style_embeddings([images[2], images[2]]), first[[2, 2]], atol=1e-6)
    open_clip_model.clear_cache()
    np.testing.assert_array_equal(styled(checkpoint).style_embeddings(images), first)


def test_descriptors_differ_from_clips_image_embeddings(tmp_path, checkpoint, images):
    clip_embeddings = ClipEmbedder(device="cpu").style_embeddings(images)
    assert clip_embeddings.shape == (len(images), CLIP_DIM) != styled(checkpoint).style_embeddings(images).shape
    # Of CLIP's width too, they are other vectors.
    same_dim = str(build_tiny_style_checkpoint(tmp_path / "wide.pth", style_dim=CLIP_DIM))
    descriptors = styled(same_dim).style_embeddings(images)
    assert descriptors.shape == clip_embeddings.shape
    assert np.abs(descriptors - clip_embeddings).max() > 0.1
    assert not np.allclose(descriptors @ descriptors.T, clip_embeddings @ clip_embeddings.T, atol=1e-2)


def test_a_style_checkpoint_leaves_clip_embeddings_and_zero_shot_alone(checkpoint, images):
    plain = ClipEmbedder(device="cpu").load()
    with_style = styled(checkpoint).load()
    assert with_style is not plain and with_style.model is plain.model
    np.testing.assert_array_equal(with_style.embed_images(images), plain.embed_images(images))
    labels, prompts = ["fox", "castle"], [["a red fox"], ["a castle on a hill"]]
    np.testing.assert_array_equal(
        with_style.zero_shot(with_style.embed_images(images), labels, prompts),
        plain.zero_shot(plain.embed_images(images), labels, prompts),
    )


def test_without_a_checkpoint_style_embeddings_are_clips_image_embeddings(images):
    clip = ClipEmbedder(device="cpu")
    assert clip.style_checkpoint is None
    assert clip.style_backbone == "clip" == clip.load().style_backbone
    assert clip.load() is open_clip_model.load_clip("tiny", None, "cpu")
    loads = ClipEmbedder.style_loads()
    np.testing.assert_array_equal(clip.style_embeddings(images), clip.load().embed_images(images))
    assert ClipEmbedder.style_loads() == loads


def test_backbone_is_named_after_the_checkpoint_file(checkpoint):
    assert styled(checkpoint).style_backbone == "csd:tiny_csd.pth" == styled(checkpoint).load().style_backbone
    assert style_backbone_name(None) == style_backbone_name("") == "clip"


def test_descriptor_loads_once_per_process_and_only_when_style_is_embedded(checkpoint, images):
    open_clip_model.clear_cache()
    clip_loads, style_loads = ClipEmbedder.loads(), ClipEmbedder.style_loads()
    loaded = styled(checkpoint).load()
    loaded.embed_images(images)  # tagging never loads the descriptor
    assert (ClipEmbedder.loads(), ClipEmbedder.style_loads()) == (clip_loads + 1, style_loads)
    styled(checkpoint).style_embeddings(images)
    styled(checkpoint).style_embeddings(images[:1])
    assert styled(checkpoint).load() is loaded
    assert (ClipEmbedder.loads(), ClipEmbedder.style_loads()) == (clip_loads + 1, style_loads + 1)


def test_plain_state_dicts_and_safetensors_files_load_alike(tmp_path, checkpoint, state, images):
    expected = styled(checkpoint).style_embeddings(images)
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)  # a bare state dict without `module.` prefixes
    safetensors = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safetensors))
    for path in (plain, safetensors):
        np.testing.assert_allclose(styled(str(path)).style_embeddings(images), expected, atol=1e-6)


def test_a_different_backbone_than_expected_is_refused(checkpoint, images):
    with pytest.raises(ValueError, match=r"backbone 'clip' but the configured style backbone is 'csd:tiny_csd.pth'.*re-materialize style_profile"):
        styled(checkpoint).load().style_embeddings(images, expected_backbone="clip")
    with pytest.raises(ValueError, match=r"backbone 'csd:other.pth' but the configured style backbone is 'clip'"):
        ClipEmbedder(device="cpu").load().style_embeddings(images, expected_backbone="csd:other.pth")
    assert styled(checkpoint).load().style_embeddings(images, expected_backbone="csd:tiny_csd.pth").shape[1] == TINY_STYLE_DIM


def test_missing_checkpoint_says_what_was_expected(tmp_path, images):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match=r"style checkpoint '.*nowhere.pth' does not exist: expected a local file holding a torch state dict .*'backbone\.' keys.*'last_layer_style'"):
        styled(str(missing)).style_embeddings(images)
    with pytest.raises(FileNotFoundError, match=r"is a directory, not a file"):
        styled(str(tmp_path)).style_embeddings(images)


def test_unreadable_checkpoint_is_a_value_error(tmp_path, images):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"style checkpoint '.*junk.pth' could not be read \(\w+Error: .*\); expected a torch or \.safetensors file"):
        styled(str(junk)).style_embeddings(images)
    no_tensors = tmp_path / "no_tensors.pth"
    torch.save({"epoch": 3, "args": argparse.Namespace(arch="tiny")}, no_tensors)
    with pytest.raises(ValueError, match=r"holds no state dict of tensors but a dict with keys \['epoch', 'args'\]"):
        styled(str(no_tensors)).style_embeddings(images)


def test_missing_keys_are_named(tmp_path, state, images):
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if k not in ("last_layer_style", "backbone.ln_post.bias")}, path)
    with pytest.raises(ValueError) as raised:
        styled(str(path)).style_embeddings(images)
    message = str(raised.value)
    assert "does not fit the visual tower of 'tiny'" in message
    assert "missing keys ['last_layer_style', 'backbone.ln_post.bias']" in message
    assert "Expected a torch state dict" in message


def test_misshapen_and_unexpected_keys_are_named(tmp_path, state, images):
    path = tmp_path / "wrong.pth"
    broken = {**state, "last_layer_style": torch.zeros(WIDTH + 1, 8), "backbone.extra.weight": torch.zeros(2)}
    broken["backbone.positional_embedding"] = torch.zeros(50, WIDTH)
    torch.save({"model_state_dict": broken}, path)
    with pytest.raises(ValueError) as raised:
        styled(str(path)).style_embeddings(images)
    message = str(raised.value)
    assert "unexpected keys ['backbone.extra.weight']" in message
    assert f"last_layer_style has shape [{WIDTH + 1}, 8], expected [{WIDTH}, dim]" in message
    assert f"backbone.positional_embedding has shape [50, {WIDTH}], 'tiny' expects [17, {WIDTH}]" in message
    assert "missing keys" not in message


def test_an_invalid_checkpoint_is_not_cached_as_loaded(tmp_path, state, images):
    path = tmp_path / "later.pth"
    style_loads = ClipEmbedder.style_loads()
    with pytest.raises(FileNotFoundError):
        styled(str(path)).style_embeddings(images)
    torch.save(state, path)
    assert styled(str(path)).style_embeddings(images).shape == (len(images), TINY_STYLE_DIM)
    assert ClipEmbedder.style_loads() == style_loads + 1


def test_building_the_checkpoint_leaves_the_global_rng_alone(tmp_path):
    before = torch.get_rng_state()
    build_tiny_style_checkpoint(tmp_path / "rng.pth")
    assert torch.equal(torch.get_rng_state(), before)
