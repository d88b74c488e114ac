"""Materialization metadata rendered for the Dagster UI: tables and contact sheets."""

from __future__ import annotations

import io
from typing import Any, Sequence

import dagster as dg
from PIL import Image

from assetql_dagster.domain.contact_sheet import contact_sheet_markdown, escape_markdown
from assetql_dagster.domain.records import StoredImage
from resources.storage import AssetStorage

CONTACT_SHEET_IMAGES = 12


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dg.MetadataValue:
    head = "| " + " | ".join(escape_markdown(c) for c in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(escape_markdown(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join([head, rule, *body]))


def contact_sheet(
    storage: AssetStorage, images: Sequence[StoredImage], captions: dict[str, str] | None = None
) -> dg.MetadataValue:
    """Thumbnails of the first images, inline, with their file names (or `captions`)."""
    items = [
        ((captions or {}).get(r.image_id, r.file_name), Image.open(io.BytesIO(storage.read_bytes(r.thumb_key))))
        for r in images[:CONTACT_SHEET_IMAGES]
    ]
    return dg.MetadataValue.md(contact_sheet_markdown(items))

