"""Small previews: JPEG thumbnails and a markdown contact sheet with the images inlined as data URIs."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence

from PIL import Image

from assetql_dagster.domain.palette import check_has_pixels, to_rgb
from assetql_dagster.domain.validation import check_int

THUMBNAIL_QUALITY = 85
CONTACT_SHEET_COLUMNS = 4
# Characters that would end a table cell or alt text, start markup, or open raw HTML.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|<>])")


def thumbnail_bytes(img: Image.Image, size: int = 256) -> bytes:
    """JPEG (quality 85, RGB) of `img` scaled down to at most `size` px per side, aspect kept."""
    check_int("thumbnail size", size, 1)
    check_has_pixels(img)
    thumb = to_rgb(img)
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()


def escape_markdown(text: str) -> str:
    """`text` on one line with markdown and table syntax escaped, safe inside a table cell."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _data_uri(img: Image.Image, size: int) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(thumbnail_bytes(img, size)).decode("ascii")


def _row(cells: list[str]) -> str:
    padded = cells + [""] * (CONTACT_SHEET_COLUMNS - len(cells))
    return "| " + " | ".join(padded) + " |"


def contact_sheet_markdown(
    items: Sequence[tuple[str, Image.Image]], max_items: int = 12, thumb: int = 96
) -> str:
    """Markdown table, 4 columns wide, of up to `max_items` thumbnails with their captions beneath."""
    check_int("max_items", max_items, 1)
    check_int("thumb", thumb, 1, 256)
    if not items:
        return "_No images._"
    lines = [_row([" "] * CONTACT_SHEET_COLUMNS), _row(["---"] * CONTACT_SHEET_COLUMNS)]
    shown = list(items[:max_items])
    for start in range(0, len(shown), CONTACT_SHEET_COLUMNS):
        chunk = shown[start : start + CONTACT_SHEET_COLUMNS]
        captions = [escape_markdown(caption) for caption, _ in chunk]
        images = [f"![{caption}]({_data_uri(img, thumb)})" for caption, (_, img) in zip(captions, chunk)]
        lines += [_row(images), _row(captions)]
    if len(items) > max_items:
        lines.append(f"\n_... and {len(items) - max_items} more._")
    return "\n".join(lines)
