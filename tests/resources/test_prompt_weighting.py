from unittest.mock import MagicMock

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from resources.diffusion import LoadedPipeline
from resources.generator import ImageGenerator
from resources.prompt_weighting import weighted_prompt_encoder
from resources.tiny_models import build_tiny_vae
from resources.tiny_tokenizer import load_tiny_tokenizer, text_encoder_token_ids

PROMPTS = ["a red fox in the snow", "an old sailor, state-of-the-art", ""]
NEGATIVES = ["blurry", "", "text, watermark"]
SEEDS = [11, 22, 33]
STEPS, GUIDANCE = 2, 5.0
LONG_PROMPT = " ".join(["a very long prompt about a castle on a hill at dusk"] * 12)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def tiny() -> LoadedPipeline:
    return ImageGenerator(device="cpu").load("tiny")


def direct(pipeline, prompts, negatives, seeds, guidance=GUIDANCE):
    """The call `generate` made before prompt weighting: prompt text straight to the pipeline."""
    with torch.inference_mode():
        return pipeline(
            prompt=list(prompts),
            negative_prompt=list(negatives),
            generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
            width=64,
            height=64,
            num_inference_steps=STEPS,
            guidance_scale=guidance,
            output_type="pil",
        ).images


def weighted(loaded, prompt, seed=SEEDS[0], negative=""):
    (image,) = loaded.generate([prompt], [negative], [seed], 64, 64, STEPS, GUIDANCE)
    return pixels(image)


@pytest.mark.parametrize("guidance", [GUIDANCE, 1.0])
def test_plain_prompts_give_the_images_of_the_direct_call(tiny, guidance):
    prompts, negatives, seeds = [*PROMPTS, LONG_PROMPT], [*NEGATIVES, "blurry"], [*SEEDS, 44]
    new = tiny.generate(prompts, negatives, seeds, 64, 64, STEPS, guidance)
    old = direct(tiny.pipeline, prompts, negatives, seeds, guidance)
    for mine, theirs in zip(new, old):
        assert np.array_equal(pixels(mine), pixels(theirs))


def test_plain_prompt_embeddings_equal_the_pipelines_own(tiny):
    encoder = weighted_prompt_encoder(tiny.pipeline)
    with torch.inference_mode():
        (mine,) = encoder([PROMPTS[0]], [NEGATIVES[0]], guidance=True)
        theirs, negative = tiny.pipeline.encode_prompt(PROMPTS[0], "cpu", 1, True, NEGATIVES[0])
    assert torch.equal(mine.kwargs["prompt_embeds"], theirs)
    assert torch.equal(mine.kwargs["negative_prompt_embeds"], negative)


def test_a_weight_changes_the_image_and_weight_one_is_no_weight(tiny):
    plain = weighted(tiny, "a sword, crimson and teal palette")
    assert np.array_equal(weighted(tiny, "a sword, (crimson and teal palette)1.0"), plain)
    up = weighted(tiny, "a sword, (crimson and teal palette)1.5")
    down = weighted(tiny, "a sword, (crimson and teal palette)0.5")
    assert np.abs(up - plain).mean() > 0.1
    assert np.abs(down - plain).mean() > 0.1
    assert np.abs(up - down).mean() > 0.1
    # The further the weight from 1, the further the image from the plain prompt's.
    slightly = weighted(tiny, "a sword, (crimson and teal palette)1.1")
    assert 0 < np.abs(slightly - plain).mean() < np.abs(up - plain).mean()


def test_negative_prompts_are_weighted_too(tiny):
    plain = weighted(tiny, PROMPTS[0], negative="blurry, text")
    assert not np.array_equal(weighted(tiny, PROMPTS[0], negative="(blurry)1.5, text"), plain)


def test_weighted_image_alone_equals_the_same_image_in_a_micro_batch(tiny):
    prompts = ["a sword, (crimson and teal palette)1.4", '("a fox", "snow").and()', PROMPTS[1]]
    batch = tiny.generate(prompts, NEGATIVES, SEEDS, 64, 64, STEPS, GUIDANCE)
    for i, image in enumerate(batch):
        (alone,) = tiny.generate([prompts[i]], [NEGATIVES[i]], [SEEDS[i]], 64, 64, STEPS, GUIDANCE)
        assert np.array_equal(pixels(alone), pixels(image))


def test_a_conjunction_is_twice_as_long_and_its_negative_is_padded(tiny):
    encoder = weighted_prompt_encoder(tiny.pipeline)
    with torch.inference_mode():
        (conditioning,) = encoder(['("a fox", "snow").and()'], ["blurry"], guidance=True)
    assert conditioning.length == 154
    assert conditioning.kwargs["negative_prompt_embeds"].shape == conditioning.kwargs["prompt_embeds"].shape


def test_pipelines_compel_does_not_cover_take_the_prompt_text():
    pipeline = MagicMock()
    pipeline.device = torch.device("cpu")
    assert weighted_prompt_encoder(pipeline) is None
    LoadedPipeline("mock", pipeline).generate(["(a fox)1.3"], ["blurry"], [1], 64, 64, 2, 5.0)
    kwargs = pipeline.call_args.kwargs
    assert kwargs["prompt"] == ["(a fox)1.3"] and kwargs["negative_prompt"] == ["blurry"]


def tiny_sdxl_pipeline() -> StableDiffusionXLPipeline:
    """A random-weight SDXL pipeline in the shape of diffusers' own SDXL tests, with the tiny tokenizer."""
    tokenizer = load_tiny_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six micro-conditioning values + pooled text
        cross_attention_dim=64,  # both text encoders side by side
        norm_num_groups=2,
    )
    vae = build_tiny_vae()
    config = CLIPTextConfig(
        **text_encoder_token_ids(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        projection_dim=32,
        max_position_embeddings=77,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
        ),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl() -> LoadedPipeline:
    return LoadedPipeline("tiny-sdxl", tiny_sdxl_pipeline())


def test_sdxl_plain_prompt_embeddings_equal_the_pipelines_own(sdxl):
    encoder = weighted_prompt_encoder(sdxl.pipeline)
    with torch.inference_mode():
        (mine,) = encoder([PROMPTS[0]], [NEGATIVES[0]], guidance=True)
        theirs = sdxl.pipeline.encode_prompt(PROMPTS[0], device="cpu", negative_prompt=NEGATIVES[0])
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    for name, expected in zip(names, theirs):
        assert torch.equal(mine.kwargs[name], expected), name


def test_sdxl_plain_prompts_give_the_images_of_the_direct_call_and_weights_change_them(sdxl):
    new = sdxl.generate(PROMPTS, NEGATIVES, SEEDS, 64, 64, STEPS, GUIDANCE)
    # The direct call encodes the prompts as one batch, and this SDXL UNet's matrix products round
    # differently in the last bit per batch size: one grey level at most. One prompt at a time, equal.
    old = direct(sdxl.pipeline, PROMPTS, NEGATIVES, SEEDS)
    for i, (mine, theirs) in enumerate(zip(new, old)):
        assert np.abs(pixels(mine) - pixels(theirs)).max() <= 1
        one = (PROMPTS[i : i + 1], NEGATIVES[i : i + 1], SEEDS[i : i + 1])
        (mine_alone,) = sdxl.generate(*one, 64, 64, STEPS, GUIDANCE)
        (theirs_alone,) = direct(sdxl.pipeline, *one)
        assert np.array_equal(pixels(mine_alone), pixels(theirs_alone))
    up = weighted(sdxl, "a sword, (crimson and teal palette)1.5")
    assert np.abs(up - weighted(sdxl, "a sword, crimson and teal palette")).mean() > 0.1
