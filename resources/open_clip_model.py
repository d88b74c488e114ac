"""open_clip models for image/text embeddings and zero-shot labels, each loaded once per process.

Imports torch and open_clip. A model name other than the tiny one is an open_clip architecture such
as "ViT-B-32", with `pretrained` an open_clip tag (open_clip fetches its weights into its cache when
absent) or the path of a checkpoint file.

A CLIP may also carry a CSD-style checkpoint (see `resources.style_descriptor`); its style embeddings
are then that descriptor's, loaded on first use, while image and text embeddings stay CLIP's.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from resources.device import pick_device
from resources.models import TINY_MODEL, record_load
from resources.style_backbone import CLIP_BACKBONE, check_style_backbone, style_backbone_name
from resources.style_descriptor import StyleDescriptor, build_style_descriptor
from resources.tiny_models import TINY_CLIP_NAME, register_tiny_clip

# Bounds memory on large batches while still keeping a GPU busy.
EMBED_BATCH_SIZE = 64
# `record_load` kind of a style descriptor built from a checkpoint.
STYLE_LOAD_KIND = "csd"


class LoadedClip:
    """An open_clip model in eval mode with its inference transform and tokenizer.

    With a `style_checkpoint` (a CSD-style checkpoint for this architecture, see
    `resources.style_descriptor`) its style embeddings come from that descriptor, else they are the
    image embeddings. `style_backbone` names which: "clip" or "csd:<checkpoint file name>".
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        device: torch.device,
        style_checkpoint: str | None = None,
        model_name: str = "",
        pretrained: str | None = None,
    ):
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.model_name = model_name
        self.pretrained = pretrained or None
        self.style_checkpoint = style_checkpoint or None
        self.style_backbone = style_backbone_name(self.style_checkpoint)
        self._style: StyleDescriptor | None = None
        self._style_lock = threading.Lock()
        # Zero-shot class embeddings by their texts: a tagging vocabulary is encoded once per model.
        self._classifiers: dict[tuple[tuple[str, ...], ...], np.ndarray] = {}
        self._classifiers_lock = threading.Lock()

    def with_style(self, style_checkpoint: str) -> LoadedClip:
        """This CLIP (the same model, not a copy) with its style embeddings from `style_checkpoint`."""
        return LoadedClip(
            self.model, self.preprocess, self.tokenizer, self.device, style_checkpoint, self.model_name, self.pretrained
        )

    @property
    def embedding_model(self) -> str:
        """Which embedding space `embed_images`/`embed_texts` map into: "ViT-B-32:openai", "tiny", ...
        Embeddings of different models never compare."""
        return f"{self.model_name}:{self.pretrained}" if self.pretrained else self.model_name

    def embed_images(self, imgs: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised image embeddings, float32 [n, d]."""
        return self._embed("imgs", imgs, self._encode_images)

    def style_embeddings(self, imgs: Sequence[Image.Image], expected_backbone: str | None = None) -> np.ndarray:
        """L2-normalised style embeddings, float32 [n, d]: the CSD style descriptor with a style checkpoint,
        else `embed_images`.

        `expected_backbone`, when given, is the backbone of the embeddings these are compared with (a
        style profile's); ValueError when it is not this one's, since the two would not compare.
        """
        if expected_backbone is not None:
            check_style_backbone(expected_backbone, self.style_backbone)
        if self.style_checkpoint is None:
            return self.embed_images(imgs)
        descriptor = self.style_descriptor() if len(imgs) else None
        return self._embed("imgs", imgs, lambda part: descriptor(self._pixels(part)))

    def style_descriptor(self) -> StyleDescriptor:
        """The style checkpoint's descriptor, built on first use (once per cached CLIP, so once per process)."""
        if self.style_checkpoint is None:
            raise ValueError(f"no style checkpoint is configured: style embeddings are {CLIP_BACKBONE!r} image embeddings")
        with self._style_lock:
            if self._style is None:
                self._style = build_style_descriptor(self.model.visual, self.style_checkpoint, self.model_name)
                record_load(STYLE_LOAD_KIND)
            return self._style

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings, float32 [n, d]."""
        return self._embed("texts", texts, self._encode_texts)

    def zero_shot_classifier(self, prompts: Sequence[Sequence[str]]) -> np.ndarray:
        """Unit class embeddings [n_labels, d] as open_clip's `build_zero_shot_classifier` makes them:
        label i's texts `prompts[i]` (one per template) embedded, averaged and renormalised. Kept on
        this model, so each vocabulary is encoded once per process."""
        key = tuple(tuple(texts) for texts in prompts)
        if not all(key):
            raise ValueError(f"`prompts` must hold at least one text per label, got {[list(t) for t in key]!r}.")
        with self._classifiers_lock:
            if key not in self._classifiers:
                embedded = self.embed_texts([text for texts in key for text in texts])
                ends = np.cumsum([len(texts) for texts in key])
                means = np.stack([part.mean(axis=0) for part in np.split(embedded, ends[:-1])])
                self._classifiers[key] = means / np.linalg.norm(means, axis=1, keepdims=True)
            return self._classifiers[key]

    def zero_shot(
        self, image_embeddings: np.ndarray, labels: Sequence[str], prompts: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """Softmax probabilities [n_images, n_labels]; label i is scored through its texts prompts[i]
        (one per template, averaged: see `zero_shot_classifier`)."""
        if len(labels) == 0:
            raise ValueError("`labels` must contain at least one label but is empty.")
        if len(prompts) != len(labels):
            raise ValueError(
                f"`prompts` must hold one list of texts per label but there are {len(labels)} labels "
                f"and {len(prompts)} lists."
            )
        text = self.zero_shot_classifier(prompts)
        images = np.asarray(image_embeddings, dtype=np.float32)
        if images.ndim != 2 or images.shape[1] != text.shape[1]:
            raise ValueError(
                f"`image_embeddings` must have shape [n_images, {text.shape[1]}] but has shape {images.shape}."
            )
        with torch.inference_mode():
            # logit_scale is learned in log space; its exp() is CLIP's inverse softmax temperature.
            scale = self.model.logit_scale.exp().float().cpu()
            return (scale * torch.from_numpy(images @ text.T)).softmax(dim=-1).numpy()

    def _pixels(self, imgs: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([self.preprocess(img) for img in imgs]).to(self.device)

    def _encode_images(self, imgs: Sequence[Image.Image]) -> torch.Tensor:
        return self.model.encode_image(self._pixels(imgs), normalize=True)

    def _encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(list(texts)).to(self.device), normalize=True)

    def _embed(self, name: str, items: Sequence, encode: Callable[[Sequence], torch.Tensor]) -> np.ndarray:
        if len(items) == 0:
            raise ValueError(f"`{name}` must contain at least one item but is empty.")
        with torch.inference_mode():
            parts = [
                encode(items[i : i + EMBED_BATCH_SIZE]).float().cpu()
                for i in range(0, len(items), EMBED_BATCH_SIZE)
            ]
        return torch.cat(parts).numpy()


_CLIPS: dict[tuple, LoadedClip] = {}
# The same CLIPs with a style checkpoint, by (CLIP key, absolute checkpoint path).
_STYLED: dict[tuple, LoadedClip] = {}
_CLIPS_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every loaded CLIP model and style descriptor, so the next `load_clip` builds them again."""
    with _CLIPS_LOCK:
        _CLIPS.clear()
        _STYLED.clear()


def load_clip(
    model_name: str = TINY_MODEL, pretrained: str | None = None, device: str = "auto", style_checkpoint: str | None = None
) -> LoadedClip:
    """The model on the requested device, loading it on first use in this process.

    With `style_checkpoint` it is the same model whose style embeddings come from that checkpoint's
    descriptor, built on the first `style_embeddings` call (so steps that only tag never load it).
    """
    torch_device = pick_device(device)
    key = (model_name, pretrained, str(torch_device))
    with _CLIPS_LOCK:
        if key not in _CLIPS:
            _CLIPS[key] = _build(model_name, pretrained, torch_device)
            record_load("open_clip")
        clip = _CLIPS[key]
        if not style_checkpoint:
            return clip
        path = str(Path(style_checkpoint).expanduser().absolute())
        if (key, path) not in _STYLED:
            _STYLED[key, path] = clip.with_style(path)
        return _STYLED[key, path]


class _RandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextmanager
def _quiet_random_init(expected: bool) -> Iterator[None]:
    """Drop open_clip's root-logger warning about random weights when random weights are the point
    (the tiny model); for a real model it stays, since it means a checkpoint is missing."""
    notice = _RandomInitNotice()
    if expected:
        logging.getLogger().addFilter(notice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(notice)


def _build(model_name: str, pretrained: str | None, device: torch.device) -> LoadedClip:
    name = TINY_CLIP_NAME if model_name == TINY_MODEL else model_name
    tiny = name == TINY_CLIP_NAME
    if tiny:
        register_tiny_clip()
    # Seeded so the tiny model's random weights are reproducible; forked so the caller's RNG stream
    # is left as it was.
    with torch.random.fork_rng(devices=[]), _quiet_random_init(tiny):
        torch.manual_seed(0)
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
    return LoadedClip(
        model, preprocess, open_clip.get_tokenizer(name), device, model_name=model_name, pretrained=pretrained
    )
