"""The names a rename (`assetql rename`) gave a batch's images, kept at `batches/{batch}/names.json`.

Storage is the source of truth for file names: planning reads this record (`plan_images`), so any
later run of the batch keeps the names, and the catalog reads it for the old names (its aliases), so
a catalog rebuilt from storage still resolves them. Only renamed images are listed; the others keep
the name planning gives them, their image id.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from assetql_dagster.domain.layout import record_key
from resources.storage import AssetStorage

NAMES = "names"


@dataclasses.dataclass(frozen=True)
class ImageName:
    """An image's file stem now, and the stems it had before (oldest first): its aliases, whose
    files stay in storage so that links to them keep working."""

    name: str
    aliases: tuple[str, ...] = ()

    def held(self) -> tuple[str, ...]:
        """Every stem that refers to the image: its name and its aliases."""
        return (self.name, *self.aliases)


def load_names(storage: AssetStorage, batch: str) -> dict[str, ImageName]:
    """The batch's renamed images by image id (none before its first rename)."""
    key = record_key(batch, NAMES)
    if not storage.exists(key):
        return {}
    images = json.loads(storage.read_text(key))["images"]
    return {image_id: ImageName(entry["name"], tuple(entry["aliases"])) for image_id, entry in images.items()}


def save_names(storage: AssetStorage, batch: str, names: Mapping[str, ImageName]) -> None:
    images = {image_id: {"name": n.name, "aliases": list(n.aliases)} for image_id, n in sorted(names.items())}
    storage.write_text(record_key(batch, NAMES), json.dumps({"images": images}, indent=1), "application/json")
