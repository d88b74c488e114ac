import open_clip
import torch

from resources.tiny_models import TINY_CLIP_CONFIG, TINY_CLIP_NAME, build_tiny_sd_pipeline, register_tiny_clip
from resources.tiny_tokenizer import load_tiny_tokenizer

from harness.offline import offline  # noqa: F401 - the fixture, used by name

PROMPTS = ["a watercolor painting of a red fox in the snow", "portrait of an old sailor with a pipe"]


def test_tiny_pipeline_is_seeded_and_leaves_global_rng_alone(offline):
    rng_before = torch.get_rng_state()
    first, again, other = build_tiny_sd_pipeline(0), build_tiny_sd_pipeline(0), build_tiny_sd_pipeline(1)
    assert torch.equal(torch.get_rng_state(), rng_before)
    for name in ("unet", "vae", "text_encoder"):
        a, b, c = (getattr(p, name).state_dict() for p in (first, again, other))
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point() and a[k].numel() > 1)


def test_tiny_pipeline_has_64px_native_size_and_matching_text_encoder(offline):
    pipe = build_tiny_sd_pipeline()
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)
    assert pipe.text_encoder.config.max_position_embeddings == pipe.tokenizer.model_max_length
    assert pipe.safety_checker is None


def test_register_tiny_clip_is_idempotent_and_offline(offline):
    register_tiny_clip()
    register_tiny_clip()
    assert open_clip.list_models().count(TINY_CLIP_NAME) == 1
    assert open_clip.get_model_config(TINY_CLIP_NAME) == TINY_CLIP_CONFIG
    tokenizer = open_clip.get_tokenizer(TINY_CLIP_NAME)
    assert isinstance(tokenizer, open_clip.SimpleTokenizer)
    tokens = tokenizer(PROMPTS)
    assert tuple(tokens.shape) == (len(PROMPTS), TINY_CLIP_CONFIG["text_cfg"]["context_length"])
    assert int(tokens.max()) < TINY_CLIP_CONFIG["text_cfg"]["vocab_size"]
