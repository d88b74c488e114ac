"""Image categories: found for the `tags` stage and the catalog, and set by hand.

An image's category comes from its CSV `category`, else keywords in its prompt (`found_category`),
else zero-shot CLIP (done by the `tags` stage, which has the model); the `tags` record keeps what
was found. A category set by hand (`assetql categorize`) overrides it. Overrides live in storage,
`batches/{batch}/category_overrides.json`, the source of truth, and every cataloguing applies them
(`with_overrides`), so they survive pipeline re-runs and a catalog rebuilt from storage alone, and
clearing one brings back the found category.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from assetql_dagster.domain.categories import KEYWORD_CONFIDENCE, CategoryPath, category_from_prompt, resolve_category
from assetql_dagster.domain.layout import record_key
from assetql_dagster.domain.records import ImageJob, ImageTags, TagSet
from assetql_dagster.domain.tagging import category_tags, merge_tags
from resources.storage import AssetStorage

OVERRIDES = "category_overrides"


@dataclasses.dataclass(frozen=True)
class ManualCategory:
    """A category path set by hand, and when (ISO 8601, UTC)."""

    category: str
    set_at: str


def found_category(job: ImageJob) -> tuple[CategoryPath, str, float] | None:
    """(path, source, confidence) from the CSV `category`, else the prompt's keywords; None when
    neither names one (then zero-shot CLIP may)."""
    typed, keyword = resolve_category(job.category), category_from_prompt(job.prompt)
    if typed is not None:
        # A bare primary is refined by the prompt when it names one of that primary's subcategories
        # ("weapon" and "a longsword ..." give weapon/sword); the CSV still decides the primary.
        if not typed.sub and keyword is not None and keyword.primary == typed.primary:
            return keyword, "csv+keywords", KEYWORD_CONFIDENCE
        return typed, "csv", 1.0
    return (keyword, "keywords", KEYWORD_CONFIDENCE) if keyword is not None else None


def categorized(image: ImageTags, category: CategoryPath | None, source: str, confidence: float = 1.0) -> ImageTags:
    """`image` with `category` as its category path and category tags (uncategorised for None)."""
    others = [t for t in image.tags if t.kind != "category"]
    # A stored record is trusted as it is: replacing its category never fails on the tag count.
    tags = merge_tags(category_tags(category, source, confidence), others, min_tags=0)
    return dataclasses.replace(
        image, tags=tuple(tags), category=category.path if category else "", category_source=source if category else ""
    )


def with_overrides(tag_set: TagSet, overrides: Mapping[str, ManualCategory]) -> TagSet:
    """`tag_set` with every image in `overrides` (by image id) categorised by hand."""
    images = tuple(
        categorized(image, resolve_category(overrides[image.image_id].category), "override")
        if image.image_id in overrides else image
        for image in tag_set.images
    )
    return dataclasses.replace(tag_set, images=images)


def load_overrides(storage: AssetStorage, batch: str) -> dict[str, ManualCategory]:
    """The batch's hand-set categories by image id (none before the first `assetql categorize`)."""
    key = record_key(batch, OVERRIDES)
    if not storage.exists(key):
        return {}
    return {image_id: ManualCategory(**entry) for image_id, entry in json.loads(storage.read_text(key))["overrides"].items()}


def save_override(storage: AssetStorage, batch: str, image_id: str, override: ManualCategory | None) -> None:
    """Set (or, with None, remove) the hand-set category of one image of `batch` in storage."""
    overrides = load_overrides(storage, batch)
    if override is None:
        overrides.pop(image_id, None)
    else:
        overrides[image_id] = override
    document = {"overrides": {i: dataclasses.asdict(o) for i, o in sorted(overrides.items())}}
    storage.write_text(record_key(batch, OVERRIDES), json.dumps(document, indent=1), "application/json")
