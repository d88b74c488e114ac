from unittest.mock import MagicMock

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from resources.device import pick_device, pick_dtype
from resources.diffusion import LoadedPipeline
from resources.generator import ImageGenerator
from resources.tiny_models import build_tiny_sd_pipeline

PROMPTS = ["a red fox in the snow", "an old sailor", "a castle on a hill"]
NEGATIVES = ["blurry", "", "text"]
SEEDS = [11, 22, 33]
STEPS, GUIDANCE = 3, 5.0

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks behaviour on machines without CUDA")


@pytest.fixture(scope="module")
def tiny() -> LoadedPipeline:
    return ImageGenerator(device="cpu").load("tiny")


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def render(loaded: LoadedPipeline, indices: list[int]) -> list:
    width, height = loaded.native_size
    return loaded.generate(
        [PROMPTS[i] for i in indices],
        [NEGATIVES[i] for i in indices],
        [SEEDS[i] for i in indices],
        width,
        height,
        STEPS,
        GUIDANCE,
    )


def test_tiny_generates_rgb_images_of_native_size(tiny):
    assert tiny.model == "tiny"
    assert tiny.device == torch.device("cpu")
    assert tiny.native_size == (64, 64)
    (image,) = render(tiny, [0])
    assert image.mode == "RGB"
    assert image.size == tiny.native_size
    assert pixels(image).std() > 0


def test_generates_at_requested_size(tiny):
    (image,) = tiny.generate(PROMPTS[:1], NEGATIVES[:1], SEEDS[:1], 48, 32, STEPS, GUIDANCE)
    assert image.size == (48, 32)


def test_same_seed_same_pixels_and_other_seed_other_pixels(tiny):
    width, height = tiny.native_size
    first, again, other = (
        tiny.generate(PROMPTS[:1], NEGATIVES[:1], [seed], width, height, STEPS, GUIDANCE)[0]
        for seed in (SEEDS[0], np.int64(SEEDS[0]), SEEDS[1])
    )
    assert np.array_equal(pixels(first), pixels(again))
    assert np.abs(pixels(first) - pixels(other)).mean() > 1


def test_image_alone_equals_same_image_in_a_micro_batch(tiny):
    batch = render(tiny, [0, 1, 2])
    for i, image in enumerate(batch):
        (alone,) = render(tiny, [i])
        assert np.array_equal(pixels(alone), pixels(image))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompts": []}, "`prompts` must contain at least one prompt"),
        ({"seeds": [1, 2]}, "equal lengths but have 1, 1 and 2"),
        ({"negative_prompts": [float("nan")]}, "`negative_prompts` must contain only strings"),
        ({"seeds": [-1]}, r"`seeds` must be integers in \[0, 2\*\*64\) but contains -1"),
        ({"seeds": [True]}, r"`seeds` must be integers in \[0, 2\*\*64\) but contains True"),
        ({"width": 60}, "`width` must be a positive multiple of 8 but is 60"),
        ({"height": 0}, "`height` must be a positive multiple of 8 but is 0"),
        ({"steps": 0}, "`steps` must be an integer >= 1 but is 0"),
        ({"guidance_scale": float("inf")}, "`guidance_scale` must be a finite number >= 0 but is inf"),
    ],
)
def test_invalid_inputs_are_rejected_before_the_model_runs(change, message):
    pipeline = MagicMock()
    args = {
        "prompts": ["a fox"],
        "negative_prompts": [""],
        "seeds": [1],
        "width": 64,
        "height": 64,
        "steps": 2,
        "guidance_scale": 5.0,
    }
    with pytest.raises(ValueError, match=message):
        LoadedPipeline("mock", pipeline).generate(**{**args, **change})
    pipeline.assert_not_called()


def test_load_caches_one_pipeline_per_model_and_device(tiny):
    assert ImageGenerator(device="cpu").load("tiny") is tiny
    assert ImageGenerator(device="cpu", dtype="bfloat16").load("tiny") is not tiny


def test_load_from_saved_directory_matches_the_tiny_pipeline(tmp_path, tiny):
    build_tiny_sd_pipeline().save_pretrained(tmp_path)
    loaded = ImageGenerator(device="cpu").load(str(tmp_path))
    assert isinstance(loaded.pipeline, StableDiffusionPipeline)
    assert loaded.pipeline is not tiny.pipeline
    assert loaded.native_size == tiny.native_size
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(loaded.pipeline, name).state_dict(), getattr(tiny.pipeline, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # Same weights, same seeds: the same images, up to one level of rounding (weights read from
    # safetensors may take another SIMD path through the same float maths than freshly built ones).
    for mine, reference in zip(render(loaded, [0, 1]), render(tiny, [0, 1])):
        assert np.abs(pixels(mine) - pixels(reference)).max() <= 1


@pytest.mark.parametrize("model", ["missing-org/missing-model", "missing-local-dir"])
def test_missing_model_says_how_to_provide_it(tmp_path, model):
    generator = ImageGenerator(device="cpu", models_dir=str(tmp_path / "hub-cache"))
    with pytest.raises(FileNotFoundError, match=rf"model '{model}' is neither .* download it first"):
        generator.load(model)


def test_blank_model_name_is_rejected():
    with pytest.raises(ValueError, match="model must be 'tiny', a hub id or a local directory but is ' '"):
        ImageGenerator(device="cpu").load(" ")


def test_pick_device_and_dtype_defaults_follow_the_hardware():
    device = pick_device()
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bf16") == pick_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16


@pytest.mark.parametrize("requested", ["tpu", "gpu", "cuda:x"])
def test_pick_device_rejects_unknown_devices(requested):
    with pytest.raises(ValueError, match=rf"device '{requested}' must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        pick_device(requested)


def test_pick_dtype_rejects_unknown_dtypes():
    with pytest.raises(ValueError, match="dtype 'float64' must be 'auto' or one of"):
        pick_dtype(torch.device("cpu"), "float64")


@no_cuda
@pytest.mark.parametrize("requested", ["cuda", "cuda:1"])
def test_requesting_cuda_without_cuda_is_a_clear_error(requested):
    with pytest.raises(ValueError, match=rf"device '{requested}' was requested but CUDA is not available"):
        ImageGenerator(device=requested).load("tiny")


def test_missing_model_looks_at_files_only(tmp_path):
    cache = tmp_path / "hub-cache"
    snapshot = cache / "models--org--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (cache / "models--org--cached" / "refs").mkdir()
    (cache / "models--org--cached" / "refs" / "main").write_text("abc123")
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "model_index.json").write_text("{}")
    generator = ImageGenerator(models_dir=str(cache))

    assert [generator.missing_model(m) for m in ("tiny", "org/cached", str(saved))] == [None, None, None]
    assert "holds no model_index.json" in generator.missing_model(str(tmp_path))
    for model in ("org/not-downloaded", "a/b/c", "no such thing"):
        message = generator.missing_model(model)
        assert message.startswith(f"model {model!r} is neither 'tiny'")
        assert f"hf download {model} --cache-dir {cache}" in message
    assert len(generator.missing_model("x" * 100_000)) < 800
