"""Storage keys for everything a batch produces, following the bucket layout of the design:
`raw/`, `thumbnails/`, `exports/`, `style-references/`, plus `batches/` for per-stage records and
`versions/` for every generation of an image the style loop made."""

from __future__ import annotations

import hashlib
import re

_KEY_UNSAFE = re.compile(r"[^a-z0-9-]+")
KEY_NAME_MAX = 40


def batch_partition_key(name: str, content_hash: str) -> str:
    """`{name}-{hash8}`: readable in the UI, unique per content, safe as a path component."""
    if not re.fullmatch(r"[0-9a-f]{8,}", content_hash):
        raise ValueError(f"content_hash {content_hash!r} must be at least 8 lowercase hex digits")
    slug = _KEY_UNSAFE.sub("-", name.lower()).strip("-")[:KEY_NAME_MAX].strip("-") or "batch"
    return f"{slug}-{content_hash[:8]}"


def image_seed(batch_seed: int, variant_id: str, variation: int) -> int:
    """Seed per row × variation, stable across runs and independent of row order."""
    digest = hashlib.sha256(f"{batch_seed}:{variant_id}:{variation}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def source_key(batch: str, name: str) -> str:
    return f"batches/{batch}/source/{name}"


def record_key(batch: str, stage: str, ext: str = "json") -> str:
    return f"batches/{batch}/{stage}.{ext}"


def raw_image_key(batch: str, stem: str) -> str:
    return f"raw/{batch}/{stem}.png"


def thumbnail_key(batch: str, stem: str) -> str:
    return f"thumbnails/{batch}/{stem}_thumb.jpg"


def image_prefixes(batch: str) -> tuple[str, str]:
    """The folders holding a batch's full-size images: current ones and every version."""
    return f"raw/{batch}", f"versions/{batch}"


def version_key(batch: str, stem: str, version: int) -> str:
    return f"versions/{batch}/{stem}/v{version}.png"


def version_thumbnail_key(batch: str, stem: str, version: int) -> str:
    return f"versions/{batch}/{stem}/v{version}_thumb.jpg"


def reference_key(batch: str, name: str) -> str:
    return f"style-references/{batch}/{name}"


def export_key(batch: str, name: str) -> str:
    return f"exports/{batch}/{name}"
