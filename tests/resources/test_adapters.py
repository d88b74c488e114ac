"""IP-Adapter style conditioning and brand LoRAs on the tiny pipeline, with tiny adapters built offline."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
from PIL import Image
from safetensors.torch import load_file

from resources.diffusion import LoadedPipeline, load_pipeline, style_block_scales
from resources.generator import ImageGenerator
from resources.models import LORA_WEIGHT_NAME, locate_ip_adapter, missing_adapter
from resources.tiny_adapters import build_tiny_ip_adapter, build_tiny_lora

PROMPTS = ["a red fox in the snow", "an old sailor"]
NEGATIVES = ["blurry", ""]
SEEDS = [11, 22]
STEPS, GUIDANCE = 2, 5.0


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def noise_image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def render(loaded: LoadedPipeline, **style) -> list[np.ndarray]:
    return [pixels(i) for i in loaded.generate(PROMPTS, NEGATIVES, SEEDS, 64, 64, STEPS, GUIDANCE, **style)]


def mean_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(x - y).mean() for x, y in zip(a, b)]))


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    build_tiny_ip_adapter(root / "ip")
    build_tiny_lora(root / "lora")
    build_tiny_lora(root / "other-lora.safetensors", seed=1)
    return root


@pytest.fixture(scope="module")
def generator() -> ImageGenerator:
    return ImageGenerator(device="cpu")


@pytest.fixture(scope="module")
def base(generator) -> LoadedPipeline:
    return generator.load("tiny")


@pytest.fixture(scope="module")
def styled(generator, adapters) -> LoadedPipeline:
    return generator.load("tiny", ip_adapter=str(adapters / "ip"))


@pytest.fixture(scope="module")
def references() -> list[Image.Image]:
    return [noise_image(1), noise_image(2)]


# Tiny adapters


def test_tiny_adapters_have_the_documented_layout_and_are_deterministic(adapters, tmp_path):
    assert sorted(p.name for p in (adapters / "ip").iterdir()) == ["image_encoder", "ip_adapter.safetensors"]
    assert (adapters / "ip" / "image_encoder" / "config.json").is_file()
    weights = load_file(adapters / "ip" / "ip_adapter.safetensors")
    # Four cross-attention layers in the tiny UNet (down, two up, mid), numbered as load_ip_adapter reads them.
    assert sorted(k for k in weights if k.startswith("ip_adapter.")) == [
        f"ip_adapter.{n}.to_{kv}_ip.weight" for n in (1, 3, 5, 7) for kv in ("k", "v")
    ]
    assert {k for k in weights if k.startswith("image_proj.")} == {
        "image_proj.proj.weight", "image_proj.proj.bias", "image_proj.norm.weight", "image_proj.norm.bias"
    }
    again = load_file(build_tiny_ip_adapter(tmp_path / "ip") / "ip_adapter.safetensors")
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    lora = load_file(adapters / "lora" / LORA_WEIGHT_NAME)
    assert lora and all(k.startswith("unet.") for k in lora)
    same = load_file(build_tiny_lora(tmp_path / "lora.safetensors"))
    other = load_file(adapters / "other-lora.safetensors")
    assert all(torch.equal(lora[k], same[k]) for k in lora)
    assert any(not torch.equal(lora[k], other[k]) for k in lora)


# IP-Adapter


def test_ip_adapter_loads_into_the_tiny_pipeline(styled, adapters):
    assert styled.ip_adapter == str(adapters / "ip")
    assert styled.pipeline.image_encoder is not None
    assert styled.pipeline.unet.encoder_hid_proj is not None
    processors = styled.pipeline.unet.attn_processors
    assert sum(isinstance(p, IPAdapterAttnProcessor2_0) for p in processors.values()) == 4


def test_without_style_images_or_at_scale_0_the_adapter_changes_nothing(styled, base, references):
    expected = render(base)
    for images in (render(styled), render(styled, style_images=references, style_scale=0.0)):
        assert all(np.array_equal(a, b) for a, b in zip(images, expected))


def test_the_style_difference_grows_with_the_scale(styled, references):
    at_zero = render(styled, style_images=references, style_scale=0.0)
    differences = [
        mean_difference(render(styled, style_images=references, style_scale=s), at_zero) for s in (0.5, 1.0, 2.0)
    ]
    assert 0.5 < differences[0] < differences[1] < differences[2]
    # The default scale is 1.
    assert mean_difference(render(styled, style_images=references), at_zero) == differences[1]


def test_other_references_give_other_images(styled, references):
    first = render(styled, style_images=references[:1])
    assert mean_difference(render(styled, style_images=references[1:]), first) > 0.5
    assert mean_difference(render(styled, style_images=references), first) > 0.1


def test_the_scale_lands_on_the_style_block_only(styled, references):
    render(styled, style_images=references, style_scale=0.7)
    processors = styled.pipeline.unet.attn_processors.items()
    scales = {name: p.scale for name, p in processors if isinstance(p, IPAdapterAttnProcessor2_0)}
    assert scales == {
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor": [0.0],
        "up_blocks.0.attentions.0.transformer_blocks.0.attn2.processor": [0.0],
        "up_blocks.0.attentions.1.transformer_blocks.0.attn2.processor": [0.7],
        "mid_block.attentions.0.transformer_blocks.0.attn2.processor": [0.0],
    }


def test_per_prompt_references_match_each_image_made_alone(styled, references):
    per_prompt = [[references[0]], [references[1], references[0]]]  # counts may differ
    batch = render(styled, style_images=per_prompt)
    for i in range(2):
        (alone,) = styled.generate(
            [PROMPTS[i]], [NEGATIVES[i]], [SEEDS[i]], 64, 64, STEPS, GUIDANCE, style_images=per_prompt[i]
        )
        # The image projection's matrix product rounds per batch size: within one grey level.
        assert np.abs(pixels(alone) - batch[i]).max() <= 1
    shared = render(styled, style_images=references[:1])
    assert np.abs(shared[0] - batch[0]).max() <= 1
    assert mean_difference(shared[1:], batch[1:]) > 0.5


REF = noise_image(0)


def _unet(up_block_types, down_block_types, layers_per_block, cross=True):
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(4, 8),
        layers_per_block=layers_per_block,
        norm_num_groups=2,
        down_block_types=down_block_types if cross else ("DownBlock2D", "DownBlock2D"),
        up_block_types=up_block_types if cross else ("UpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn" if cross else None,
        cross_attention_dim=8,
        attention_head_dim=2,
    )


def test_style_block_scales_follow_instantstyle(base):
    # The tiny UNet: up block 0 holds two attentions, the second takes the style.
    assert style_block_scales(base.pipeline.unet, 0.6) == {"up": {"block_0": [0.0, 0.6]}}
    # SD 1.5's layout: up block 0 has no attention, so the style block is up block 1.
    sd15 = _unet(("UpBlock2D", "CrossAttnUpBlock2D"), ("CrossAttnDownBlock2D", "DownBlock2D"), 2)
    assert style_block_scales(sd15, 1.0) == {"up": {"block_1": [0.0, 1.0, 0.0]}}
    # SDXL's layout: up block 0, the middle of its three attentions.
    sdxl = _unet(("CrossAttnUpBlock2D", "UpBlock2D"), ("DownBlock2D", "CrossAttnDownBlock2D"), 2)
    assert style_block_scales(sdxl, 0.5) == {"up": {"block_0": [0.0, 0.5, 0.0]}}
    assert style_block_scales(_unet(None, None, 1, cross=False), 0.5) == 0.5


@pytest.mark.parametrize(
    ("style", "message"),
    [
        ({"style_images": []}, "`style_images` must be a non-empty list of PIL images"),
        ({"style_images": "ref.png"}, "`style_images` must be a non-empty list of PIL images"),
        ({"style_images": [REF, [REF]]}, "must hold PIL images only, or lists"),
        ({"style_images": [[REF]]}, "`style_images` holds 1 lists but there are 2 prompts"),
        ({"style_images": [[REF], []]}, r"`style_images\[1\]` must be a non-empty list .* but is empty"),
        ({"style_images": [[REF], ["x.png"]]}, r"`style_images\[1\]` must be .* contains 'x.png'"),
        ({"style_images": [REF], "style_scale": -0.5}, "`style_scale` must be a finite number >= 0 but is -0.5"),
        ({"style_images": [REF], "style_scale": float("nan")}, "`style_scale` must be a finite number"),
    ],
)
def test_unusable_style_arguments_are_rejected(styled, style, message):
    with pytest.raises(ValueError, match=message):
        styled.generate(PROMPTS, NEGATIVES, SEEDS, 64, 64, STEPS, GUIDANCE, **style)


@pytest.mark.parametrize(
    ("style", "message"),
    [
        ({"style_images": [noise_image(0)]}, "`style_images` need a pipeline loaded with an IP-Adapter"),
        ({"style_scale": 0.5}, "`style_scale` needs a pipeline loaded with an IP-Adapter"),
    ],
)
def test_style_arguments_need_an_ip_adapter(base, style, message):
    with pytest.raises(ValueError, match=message):
        base.generate(PROMPTS, NEGATIVES, SEEDS, 64, 64, STEPS, GUIDANCE, **style)


def test_an_ip_adapter_for_another_unet_does_not_fit(tmp_path):
    other = _unet(("CrossAttnUpBlock2D", "UpBlock2D"), ("DownBlock2D", "CrossAttnDownBlock2D"), 1)
    build_tiny_ip_adapter(tmp_path / "ip", unet=other)
    with pytest.raises(ValueError, match=r"IP-Adapter .*ip_adapter.safetensors' does not fit model 'tiny'"):
        load_pipeline("tiny", "cpu", ip_adapter=str(tmp_path / "ip"))


# LoRA


def test_lora_changes_the_image_with_its_scale_and_scale_0_is_no_lora(generator, base, adapters):
    expected = render(base)
    lora = str(adapters / "lora")
    at_zero = render(generator.load("tiny", loras=[(lora, 0.0)]))
    assert all(np.array_equal(a, b) for a, b in zip(at_zero, expected))
    half = mean_difference(render(generator.load("tiny", loras=[(lora, 0.5)])), expected)
    full = mean_difference(render(generator.load("tiny", loras=[(lora, 1.0)])), expected)
    assert 0.3 < half < full


def test_several_loras_each_at_its_scale(generator, adapters):
    one = render(generator.load("tiny", loras=[(str(adapters / "lora"), 1.0)]))
    # A second LoRA at scale 0 leaves the first's image; at scale 1 it changes it.
    lora, other = str(adapters / "lora"), str(adapters / "other-lora.safetensors")
    both_off = generator.load("tiny", loras=[(lora, 1.0), (other, 0.0)])
    assert all(np.array_equal(a, b) for a, b in zip(render(both_off), one))
    both = generator.load("tiny", loras=((lora, 1.0), (other, 1.0)))
    assert mean_difference(render(both), one) > 0.3
    assert both.loras == ((lora, 1.0), (other, 1.0))


def test_lora_and_ip_adapter_together(generator, adapters, references, styled):
    both = generator.load("tiny", ip_adapter=str(adapters / "ip"), loras=[(str(adapters / "lora"), 1.0)])
    styled_only = render(styled, style_images=references)
    assert mean_difference(render(both, style_images=references), styled_only) > 0.3


def test_the_cache_key_includes_the_adapters(generator, adapters, base, styled):
    lora = str(adapters / "lora")
    with_lora = generator.load("tiny", loras=[(lora, 1.0)])
    assert generator.load("tiny", loras=[(lora, 1)]) is with_lora
    # The folder and the weights file in it are one LoRA.
    assert generator.load("tiny", loras=[(str(adapters / "lora" / LORA_WEIGHT_NAME), 1.0)]) is with_lora
    assert generator.load("tiny", loras=[(lora, 0.5)]) is not with_lora
    assert generator.load("tiny", ip_adapter=str(adapters / "ip")) is styled
    assert len({id(p) for p in (base, styled, with_lora)}) == 3


# Missing and unusable files


def copy_ip_adapter(adapters: Path, to: Path) -> Path:
    shutil.copytree(adapters / "ip", to)
    return to


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "ip_adapter.safetensors").unlink(), "holds neither ip_adapter.safetensors nor ip_adapter"),
        (lambda d: shutil.rmtree(d / "image_encoder"), "expected .*image_encoder' to hold config.json and model"),
        (lambda d: (d / "image_encoder" / "model.safetensors").unlink(), "has no image encoder"),
        (lambda d: shutil.rmtree(d), "is neither a local folder, a local weights file nor a hub id"),
    ],
)
def test_missing_ip_adapter_files_are_named(adapters, tmp_path, generator, damage, message):
    folder = copy_ip_adapter(adapters, tmp_path / "ip")
    damage(folder)
    assert missing_adapter(str(folder), "ip_adapter") is not None
    assert generator.missing_adapter(str(folder), "ip_adapter") == missing_adapter(str(folder), "ip_adapter")
    with pytest.raises(FileNotFoundError, match=message):
        generator.load("tiny", ip_adapter=str(folder))


def test_ip_adapter_named_by_its_weights_file_or_a_cached_hub_id(adapters, tmp_path, generator):
    folder = copy_ip_adapter(adapters, tmp_path / "models")
    weights = (folder / "ip_adapter.safetensors").rename(folder / "ip-adapter_tiny.safetensors")
    assert missing_adapter(str(weights), "ip_adapter") is None
    assert locate_ip_adapter(str(weights)) == (folder, "ip-adapter_tiny.safetensors")
    assert generator.load("tiny", ip_adapter=str(weights)).pipeline.image_encoder is not None
    # The hub cache's layout: models--owner--name/refs/main naming a snapshot folder.
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-ip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    shutil.copytree(folder, repo / "snapshots" / "0123abcd" / "models")
    snapshot = repo / "snapshots" / "0123abcd" / "models"
    assert locate_ip_adapter("acme/tiny-ip/models/ip-adapter_tiny.safetensors", str(cache)) == (
        snapshot, "ip-adapter_tiny.safetensors"
    )
    assert missing_adapter("acme/tiny-ip/models/ip-adapter_tiny.safetensors", "ip_adapter", str(cache)) is None
    message = missing_adapter("acme/tiny-ip/models", "ip_adapter", str(cache))
    assert "neither a local folder, a local weights file nor a hub id downloaded to models_dir" in message
    cached = ImageGenerator(device="cpu", models_dir=str(cache))
    assert cached.load("tiny", ip_adapter="acme/tiny-ip/models/ip-adapter_tiny.safetensors").ip_adapter is not None


def test_missing_lora_files_are_named(adapters, tmp_path, generator):
    assert missing_adapter(str(adapters / "lora")) is None
    assert missing_adapter(str(adapters / "other-lora.safetensors"), "lora") is None
    absent = str(tmp_path / "brand.safetensors")
    assert missing_adapter(absent) == (
        f"LoRA {absent!r} is neither a .safetensors file nor a folder holding pytorch_lora_weights.safetensors: "
        "no such path"
    )
    with pytest.raises(FileNotFoundError, match="is neither a .safetensors file nor a folder"):
        generator.load("tiny", loras=[(absent, 1.0)])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no pytorch_lora_weights.safetensors and no .safetensors file" in missing_adapter(str(empty))
    for name in ("a.safetensors", "b.safetensors"):
        shutil.copy(adapters / "other-lora.safetensors", empty / name)
    assert "and 2 .safetensors files" in missing_adapter(str(empty))
    wrong = tmp_path / "brand.ckpt"
    wrong.write_bytes(b"")
    assert "is a file but not a .safetensors weights file" in missing_adapter(str(wrong))
    with pytest.raises(ValueError, match="kind must be one of"):
        missing_adapter(str(wrong), "controlnet")


@pytest.mark.parametrize(
    ("loras", "message"),
    [
        ("brand.safetensors", "loras must be a sequence of \\(path, scale\\) pairs"),
        ([("brand.safetensors",)], "each of loras must be a \\(path, finite scale\\) pair"),
        ([("brand.safetensors", float("inf"))], "each of loras must be a \\(path, finite scale\\) pair"),
        ([("", 1.0)], "each of loras must be a \\(path, finite scale\\) pair"),
        ([("brand.safetensors", True)], "each of loras must be a \\(path, finite scale\\) pair"),
    ],
)
def test_malformed_loras_are_rejected(generator, loras, message):
    with pytest.raises(ValueError, match=message):
        generator.load("tiny", loras=loras)
