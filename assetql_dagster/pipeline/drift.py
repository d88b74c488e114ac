"""A batch's style report in storage, and its drift against earlier batches of its style profile.

Every batch whose `style` names a profile (`brand-x@2`) leaves a `ProfileBatch` at
`style-profiles/{name}/batches/{batch}.json`: its mean style score, spread, and the centroid of its
final images' CLIP embeddings (embedded from their thumbnails, which CLIP's 224 px input barely
differs from). A later batch of the same profile compares itself with the latest of these (see
`domain.style_report.drift`). Every batch's report and drift are kept at
`batches/{batch}/style_report.json`, where the gallery reads them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from assetql_dagster.domain.layout import record_key
from assetql_dagster.domain.profiles import parse_batch_style
from assetql_dagster.domain.records import BatchInput, Curation, StoredImage
from assetql_dagster.domain.style_refs import StyleRef
from assetql_dagster.domain.style_report import (
    Drift,
    ProfileBatch,
    StyleReport,
    centroid,
    curation_report,
    drift,
    no_profile_drift,
)
from assetql_dagster.pipeline.profiles import PROFILES_PREFIX
from resources.storage import AssetStorage

STYLE_REPORT = "style_report"
# Thumbnails decoded and embedded at once.
CHUNK = 64


def named_profile(batch: BatchInput) -> StyleRef | None:
    """The stored profile the batch's `style` names (pinned at registration), None without one."""
    return next((ref for ref in parse_batch_style(batch.settings.style) if not ref.preset), None)


def history_prefix(profile: str) -> str:
    return f"{PROFILES_PREFIX}{profile}/batches/"


def history_key(profile: str, batch: str) -> str:
    return f"{history_prefix(profile)}{batch}.json"


def load_history(storage: AssetStorage, profile: str) -> list[ProfileBatch]:
    """Every batch of `profile` that has left its record, in registration order."""
    keys = [k for k in storage.list_keys(history_prefix(profile)) if k.endswith(".json")]
    return sorted((ProfileBatch.from_dict(json.loads(storage.read_text(k))) for k in keys), key=lambda b: b.order)


def save_profile_batch(storage: AssetStorage, record: ProfileBatch) -> None:
    storage.write_text(history_key(record.profile, record.batch), json.dumps(record.to_dict()), "application/json")


def images_centroid(storage: AssetStorage, stored: Sequence[StoredImage], clip) -> tuple[float, ...]:
    """Unit-length mean of the CLIP embeddings of `stored`'s current thumbnails."""
    vectors = []
    for start in range(0, len(stored), CHUNK):
        thumbs = [
            Image.open(io.BytesIO(storage.read_bytes(r.thumb_key))).convert("RGB") for r in stored[start : start + CHUNK]
        ]
        vectors.append(clip.embed_images(thumbs))
    return centroid(np.concatenate(vectors))


def batch_drift(
    storage: AssetStorage, batch: BatchInput, curation: Curation, report: StyleReport, clip_model: str,
    load_clip: Callable[[], Any],
) -> Drift:
    """The batch against the earlier batches of its named profile; records the batch in the profile's history.

    `load_clip` is only called for a batch that names a profile and has scored images.
    """
    ref = named_profile(batch)
    if ref is None:
        return no_profile_drift()
    if not report.scored or report.mean is None:
        return no_profile_drift(f"no scored image to compare with profile {ref.name}")
    current = ProfileBatch(
        batch=batch.batch,
        profile=ref.name,
        version=ref.version,
        registered_at=batch.registered_at,
        clip_model=clip_model,
        images=report.scored,
        mean_style_score=round(report.mean, 6),
        style_score_cv=None if report.cv is None else round(report.cv, 6),
        centroid=images_centroid(storage, curation.images.stored, load_clip()),
    )
    result = drift(current, load_history(storage, ref.name))
    save_profile_batch(storage, current)
    return result


def save_style_report(storage: AssetStorage, batch: str, report: StyleReport, drift_result: Drift) -> str:
    document = {"report": report.to_dict(), "drift": drift_result.to_dict()}
    return storage.write_text(record_key(batch, STYLE_REPORT), json.dumps(document, indent=1), "application/json")


def load_style_report(storage: AssetStorage, batch: str) -> tuple[StyleReport, Drift] | None:
    """The report `curated_images` stored for `batch`, None when it has not (a batch run before it existed)."""
    key = record_key(batch, STYLE_REPORT)
    if not storage.exists(key):
        return None
    document = json.loads(storage.read_text(key))
    return StyleReport.from_dict(document["report"]), Drift.from_dict(document["drift"])


def batch_style(
    storage: AssetStorage, batch: BatchInput, curation: Curation, clip_model: str, load_clip: Callable[[], Any]
) -> tuple[StyleReport, Drift]:
    """The batch's style report and drift, both stored (report with the batch, the batch in its profile's history)."""
    report = curation_report(curation)
    result = batch_drift(storage, batch, curation, report, clip_model, load_clip)
    save_style_report(storage, batch.batch, report, result)
    return report, result
