import base64
import io
import re

import pytest
from PIL import Image

from assetql_dagster.domain.contact_sheet import (
    CONTACT_SHEET_COLUMNS,
    contact_sheet_markdown,
    escape_markdown,
    thumbnail_bytes,
)

DATA_URI = re.compile(r"!\[[^\]]*\]\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)")


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_thumbnail_keeps_aspect_and_fits_size():
    size = 256
    thumb = decode(thumbnail_bytes(Image.new("RGB", (1024, 512), (10, 20, 30)), size=size))
    assert thumb.format == "JPEG"
    assert thumb.mode == "RGB"
    assert thumb.size == (size, size // 2)


def test_thumbnail_does_not_enlarge_and_flattens_alpha():
    small = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    thumb = decode(thumbnail_bytes(small))
    assert thumb.size == small.size
    # Transparent areas become white, not black.
    assert min(thumb.getpixel((20, 15))) > 240


def test_thumbnail_validates_size():
    with pytest.raises(ValueError, match="thumbnail size must be an integer >= 1, got 0"):
        thumbnail_bytes(Image.new("RGB", (4, 4)), size=0)


def test_contact_sheet_inlines_small_thumbnails_in_four_columns():
    thumb = 96
    items = [(f"image {i}", Image.new("RGB", (300, 200), (i * 40, 0, 0))) for i in range(6)]
    markdown = contact_sheet_markdown(items, thumb=thumb)
    payloads = DATA_URI.findall(markdown)
    assert len(payloads) == len(items)
    assert all(max(decode(base64.b64decode(p)).size) <= thumb for p in payloads)
    table_rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert all(row.count("|") == CONTACT_SHEET_COLUMNS + 1 for row in table_rows)
    # Header and separator, then an image row and a caption row per group of four.
    groups = -(-len(items) // CONTACT_SHEET_COLUMNS)
    assert len(table_rows) == 2 + 2 * groups
    assert "image 5" in markdown


def test_contact_sheet_caps_items_and_says_how_many_were_left_out():
    max_items = 2
    items = [(str(i), Image.new("RGB", (8, 8))) for i in range(5)]
    markdown = contact_sheet_markdown(items, max_items=max_items)
    assert len(DATA_URI.findall(markdown)) == max_items
    assert f"{len(items) - max_items} more" in markdown


def test_contact_sheet_escapes_captions():
    caption = "a | b\nc ![x](javascript:alert(1)) <img>"
    markdown = contact_sheet_markdown([(caption, Image.new("RGB", (8, 8)))])
    table_rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table_rows) == 4
    assert all(row.count("|") - row.count("\\|") == CONTACT_SHEET_COLUMNS + 1 for row in table_rows)
    assert "<img>" not in markdown
    assert escape_markdown(caption) in markdown


def test_escape_markdown_puts_text_on_one_line():
    escaped = escape_markdown("line one\nline | two\r\n[three]")
    assert "\n" not in escaped and "\r" not in escaped
    assert "\\|" in escaped and "\\[three\\]" in escaped


def test_empty_contact_sheet():
    assert "No images" in contact_sheet_markdown([])
