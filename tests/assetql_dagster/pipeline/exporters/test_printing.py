"""The `print` exporter: print-size files at 300 DPI read back from storage, its options, and the
diffusers upscaler path with a tiny random-weight StableDiffusionUpscalePipeline."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from harness.export_jobs import image_row, make_job, noise_image
from PIL import Image, ImageDraw

from assetql_dagster.domain.print_images import MAX_PRINT_BYTES, PNG_FALLBACK_COLOURS
from assetql_dagster.domain.web_images import has_transparency, is_srgb_profile
from assetql_dagster.pipeline.exporters.base import ExportOptionsError
from assetql_dagster.pipeline.exporters.printing import MANIFEST, PrintExporter

EXPORTER = PrintExporter()


def with_transparent_border(image: Image.Image) -> Image.Image:
    """`image` cut out as a disc on a transparent background, like a subject with its background removed."""
    mask = Image.new("L", image.size, 0)
    inset = min(image.size) // 32
    ImageDraw.Draw(mask).ellipse((inset, inset, image.width - inset, image.height - inset), fill=255)
    cut = image.convert("RGBA")
    cut.putalpha(mask)
    return cut


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A square, a landscape and a transparent source through the default options."""
    rows = [image_row(0, width=256, height=256), image_row(1, width=320, height=192),
            image_row(2, width=256, height=256)]
    images = [noise_image(0), noise_image(1, (320, 192)), with_transparent_border(noise_image(2))]
    job = make_job(tmp_path_factory.mktemp("print"), EXPORTER, rows, images=images)
    return job, EXPORTER.export(job)


def test_prints_are_upscaled_by_kind_at_300_dpi_in_srgb_under_5_mb(exported):
    job, result = exported
    manifest = json.loads(job.read(MANIFEST))
    entries = {entry["source"]: entry for entry in manifest["images"]}
    expected = {
        "item-000.png": ("item-000.jpg", "portrait", (2048, 2048), "JPEG"),
        "item-001.png": ("item-001.jpg", "scene", (3333, 2000), "JPEG"),
        "item-002.png": ("item-002.png", "portrait", (2048, 2048), "PNG"),
    }
    for source, (file, kind, size, image_format) in expected.items():
        entry = entries[source]
        data = job.read(file)
        image = opened(data)
        assert (entry["file"], entry["kind"], tuple(entry["px"]), entry["format"]) == (file, kind, size, image_format)
        assert (image.format, image.size) == (image_format, size)
        assert tuple(round(v) for v in image.info["dpi"]) == (300, 300)
        assert is_srgb_profile(image.info["icc_profile"])
        assert entry["bytes"] == len(data) < MAX_PRINT_BYTES
        assert entry["inches"] == [round(size[0] / 300, 2), round(size[1] / 300, 2)]
        assert entry["upscaler"] == "lanczos"
    assert entries["item-000.png"]["quality"] == 95
    assert manifest["dpi"] == 300
    assert result.main == job.key(MANIFEST)
    assert dict(result.metadata) == {"images": 3, "upscaler": "lanczos", "jpeg": 2, "png": 1,
                                     "bytes": sum(e["bytes"] for e in entries.values())}


def test_a_transparent_source_prints_as_a_png_keeping_its_transparency(exported):
    job, _ = exported
    printed = opened(job.read("item-002.png"))
    assert has_transparency(printed)
    # Noise hardly compresses: the full-colour PNG is about 6.8 MB, so the palette fallback is taken and recorded.
    entry = next(e for e in json.loads(job.read(MANIFEST))["images"] if e["file"] == "item-002.png")
    assert entry["colours"] == PNG_FALLBACK_COLOURS and printed.mode == "P"
    corner = printed.convert("RGBA").getpixel((0, 0))
    assert corner[3] == 0


def test_the_written_package_validates(exported):
    job, result = exported
    assert EXPORTER.validate(job, result) == []


def test_validation_reads_the_files_back(exported, tmp_path):
    job, result = exported
    original = job.read("item-000.jpg")
    small = io.BytesIO()
    Image.open(io.BytesIO(original)).resize((1024, 1024)).save(small, "JPEG", dpi=(72, 72))
    job.write("item-000.jpg", small.getvalue(), "image/jpeg")
    try:
        problems = EXPORTER.validate(job, result)
    finally:
        job.write("item-000.jpg", original, "image/jpeg")
    assert problems == [
        f"item-000.jpg is {len(small.getvalue()):,} bytes, {MANIFEST} says {len(original):,}",
        "item-000.jpg is 1024×1024, not 2048×2048",
        "item-000.jpg has no embedded ICC profile",
        "item-000.jpg is 1024×1024 px, below the 2048×2048 px print minimum (6.83×6.83 in at 300 DPI)",
        "item-000.jpg has a resolution of (72, 72) DPI written in it, not 300",
    ]


def test_validation_finds_missing_and_unknown_entries(exported):
    job, result = exported
    original = job.read(MANIFEST)
    manifest = json.loads(original)
    manifest["images"][0]["source"] = "other.png"
    job.write(MANIFEST, json.dumps(manifest).encode())
    try:
        problems = EXPORTER.validate(job, result)
    finally:
        job.write(MANIFEST, original)
    assert problems == [
        f"{MANIFEST} lists no print of item-000.png", f"{MANIFEST} lists other.png, which is not in the batch"]


def test_kind_scene_prints_a_square_at_the_scene_minimum(tmp_path):
    job = make_job(tmp_path, EXPORTER, [image_row(0, width=64, height=64)],
                   {"kind": "scene", "sharpen_percent": 0, "saturation": 0.5})
    EXPORTER.export(job)
    [entry] = json.loads(job.read(MANIFEST))["images"]
    assert (entry["kind"], entry["px"]) == ("scene", [3000, 3000])
    assert opened(job.read("item-000.jpg")).size == (3000, 3000)
    assert EXPORTER.validate(job, EXPORTER.export(job)) == []


def test_a_source_already_at_print_size_is_not_upscaled(tmp_path):
    job = make_job(tmp_path, EXPORTER, [image_row(0, width=2048, height=2048)],
                   images=[noise_image(0, (64, 64)).resize((2048, 2048))])
    EXPORTER.export(job)
    [entry] = json.loads(job.read(MANIFEST))["images"]
    assert entry["upscaler"] == "none (already at print size)" and entry["px"] == [2048, 2048]


@pytest.mark.parametrize(("options", "message"), [
    ({"kind": "poster"}, "kind must be one of auto, portrait, scene, got 'poster'"),
    ({"upscaler": 4}, "upscaler must be 'lanczos' or the path of a local folder holding a "
                      "StableDiffusionUpscalePipeline, got 4"),
    ({"sharpen_percent": 600}, "sharpen_percent must be an integer from 0 to 500, got 600"),
    ({"brightness": -1}, "brightness must be a number from 0 to 3, got -1"),
    ({"quality": 101}, "quality must be an integer from 40 to 100, got 101"),
    ({"auto_contrast": "yes"}, "auto_contrast must be true or false, got 'yes'"),
    ({"upscale": "lanczos"}, "unknown option 'upscale'; did you mean 'upscaler'?"),
])
def test_option_errors_name_the_option_and_the_value(options, message):
    with pytest.raises(ExportOptionsError, match=re.escape(message)):
        EXPORTER.parse_options(options)


def test_a_missing_upscaler_folder_is_said_precisely(tmp_path):
    missing = tmp_path / "x4-upscaler"
    with pytest.raises(ExportOptionsError) as error:
        EXPORTER.parse_options({"upscaler": str(missing)})
    assert str(error.value) == (
        "upscaler must be 'lanczos' or the path of a local folder holding a StableDiffusionUpscalePipeline, but "
        f"upscaler folder {str(missing)!r} does not exist (resolved to {str(missing)!r}); save a "
        "StableDiffusionUpscalePipeline there with save_pretrained() (it is never downloaded)"
    )


def test_an_upscaler_folder_must_hold_an_upscale_pipeline(tmp_path):
    with pytest.raises(ExportOptionsError, match="holds no model_index.json"):
        EXPORTER.parse_options({"upscaler": str(tmp_path)})
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ExportOptionsError, match="holds a 'StableDiffusionPipeline' pipeline, expected "
                                                 "'StableDiffusionUpscalePipeline'"):
        EXPORTER.parse_options({"upscaler": str(tmp_path)})
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionUpscalePipeline"}))
    (tmp_path / "unet").mkdir()
    with pytest.raises(ExportOptionsError, match="misses the component folder.s. low_res_scheduler, scheduler, "
                                                 "text_encoder, tokenizer, vae"):
        EXPORTER.parse_options({"upscaler": str(tmp_path)})
    (tmp_path / "file").write_text("")
    with pytest.raises(ExportOptionsError, match="is a file, not a folder"):
        EXPORTER.parse_options({"upscaler": str(tmp_path / "file")})


def build_tiny_upscale_pipeline():
    """A StableDiffusionUpscalePipeline with random weights, shaped like diffusers' own tests'
    `get_dummy_components` for it (7-channel UNet with noise-level class embeddings, a VAE that
    upscales 4×, a CLIP text encoder, a DDPM low-res scheduler), only smaller."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from resources.tiny_tokenizer import TOKENIZER_MAX_LENGTH, load_tiny_tokenizer, text_encoder_token_ids

    tokenizer = load_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            sample_size=32, block_out_channels=(4, 8), layers_per_block=1, norm_num_groups=2,
            in_channels=7, out_channels=4,  # 4 latent channels + the 3 channels of the low-res image
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32, attention_head_dim=2,
            num_class_embeds=351,  # the noise level is a class label, up to max_noise_level
        )
        vae = AutoencoderKL(  # three blocks: 2**(3-1) = 4× from latents to pixels
            block_out_channels=(4, 8, 8), norm_num_groups=2, in_channels=3, out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
            latent_channels=4, scaling_factor=0.08333,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            **text_encoder_token_ids(tokenizer), hidden_size=32, intermediate_size=64, num_attention_heads=4,
            num_hidden_layers=2, max_position_embeddings=TOKENIZER_MAX_LENGTH,
        ))
    return StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"), max_noise_level=350,
    )


@pytest.fixture(scope="module")
def tiny_upscaler_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-x4-upscaler")
    build_tiny_upscale_pipeline().save_pretrained(folder)
    return folder


def test_the_diffusers_upscaler_runs_the_saved_pipeline_then_lanczos_to_print_size(tmp_path, tiny_upscaler_folder):
    from resources.models import load_count

    rows = [image_row(0, width=32, height=32), image_row(1, width=40, height=24)]
    images = [noise_image(0, (32, 32)), with_transparent_border(noise_image(1, (40, 24)))]
    options = {"upscaler": str(tiny_upscaler_folder), "upscaler_steps": 2, "sharpen_percent": 0}
    loads = load_count("diffusers")
    job = make_job(tmp_path / "model", EXPORTER, rows, options, images)
    result = EXPORTER.export(job)
    assert load_count("diffusers") == loads + 1
    label = f"StableDiffusionUpscalePipeline {tiny_upscaler_folder}"
    entries = json.loads(job.read(MANIFEST))["images"]
    assert [(e["file"], e["px"], e["upscaler"]) for e in entries] == [
        ("item-000.jpg", [2048, 2048], label), ("item-001.png", [3333, 2000], label)]
    assert result.metadata["upscaler"] == label
    assert EXPORTER.validate(job, result) == []

    # The model made the pixels: its print differs from Lanczos alone, and the seed makes it repeatable.
    lanczos = make_job(tmp_path / "lanczos", EXPORTER, rows[:1], {"sharpen_percent": 0}, images[:1])
    EXPORTER.export(lanczos)
    again = make_job(tmp_path / "again", EXPORTER, rows[:1], options, images[:1])
    EXPORTER.export(again)
    by_model = np.asarray(opened(job.read("item-000.jpg")), dtype=np.float32)
    assert np.abs(by_model - np.asarray(opened(lanczos.read("item-000.jpg")), dtype=np.float32)).mean() > 5
    assert np.array_equal(by_model, np.asarray(opened(again.read("item-000.jpg")), dtype=np.float32))
    assert load_count("diffusers") == loads + 1  # loaded once per process
    assert has_transparency(opened(job.read("item-001.png")))

