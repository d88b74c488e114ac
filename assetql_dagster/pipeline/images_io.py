"""Reading stored images a chunk at a time, so later stages never hold a whole batch in memory."""

from __future__ import annotations

import io
from typing import Iterator, Sequence

from PIL import Image

from resources.storage import AssetStorage

CHUNK = 16


def iter_image_chunks(
    storage: AssetStorage, records: Sequence[dict], chunk: int = CHUNK
) -> Iterator[tuple[list[dict], list[Image.Image]]]:
    for start in range(0, len(records), chunk):
        part = list(records[start : start + chunk])
        yield part, [Image.open(io.BytesIO(storage.read_bytes(r["raw_key"]))).convert("RGB") for r in part]
