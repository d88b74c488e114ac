"""One image's versions as people work with them, and more variations for a finished batch.

`assetql versions` lists an image's versions (`version_document`) and can write a page comparing
them (`compare_page`); `assetql rollback` makes an earlier version current (`rollback`);
`assetql regenerate` generates one more version by hand (`regenerate`); `assetql more` adds
variations per row to a batch (`extend_batch`, after `freeze_existing`). Images are named by
variant and variation (`find_image`), and every lookup that fails says what exists.

Rollback and manual regeneration pin the image, so the style loop never replaces the version a
person chose. Neither adds a version for the rollback itself: the version numbers stay those of
generations, and the manifest's `version` column says the version that was rolled back to. What
people changed is logged instead, in `batches/{batch}/version-changes.json`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from assetql_dagster.domain.compare_page import compare_page_html
from assetql_dagster.domain.layout import record_key
from assetql_dagster.domain.records import (
    BatchInput,
    ImageHistory,
    ImageJob,
    ImagePlan,
    ImageScore,
    ImageVersion,
    StoredImage,
    StyleProfile,
)
from assetql_dagster.domain.scoring import PARAMETERS, PASS
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.pipeline.packaging import data_uri
from assetql_dagster.pipeline.records import read_record, write_record
from assetql_dagster.pipeline.regeneration import (
    INITIAL,
    MANUAL,
    ROLLBACK,
    Generate,
    Score,
    initial_history,
    loop_functions,
    load_histories,
    make_current,
    manual_count,
    manual_seed,
    needs_another,
    now_iso,
    rolled_back,
    save_histories,
    with_manual_version,
)
from assetql_dagster.pipeline.registration import registered_batch
from resources.storage import AssetStorage

CHANGES = "version-changes"
MORE = "more"
LISTED = 10
# A manual prompt is one line of text a person typed; the CSV's prompts are bounded much the same.
PROMPT_MAX = 2000
SEED_MAX = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """One image of a batch, found by variant and variation: its plan, stored files and current score."""

    batch: BatchInput
    job: ImageJob
    record: StoredImage
    score: ImageScore
    threshold: float | None

    @property
    def key(self) -> str:
        return self.batch.batch


def listing(names: Sequence[object], limit: int = LISTED) -> str:
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def registered_batches(storage: AssetStorage) -> list[str]:
    """The partition keys of every batch registered in `storage`."""
    keys = (k.split("/") for k in storage.list_keys("batches/"))
    return sorted({parts[1] for parts in keys if len(parts) == 3 and parts[2] == "source.json"})


def open_batch(storage: AssetStorage, key: str) -> BatchInput:
    """The registered batch `key`; LookupError naming the registered ones."""
    if not storage.exists(record_key(key, "source")):
        known = registered_batches(storage)
        there = f"registered batches: {listing(known)}" if known else "no batch is registered there yet"
        raise LookupError(f"no batch {key!r} in {storage.uri('batches')}; {there}")
    return registered_batch(storage, key)


def stage(storage: AssetStorage, key: str, name: str, missing: str) -> Any:
    try:
        return read_record(storage, key, name)
    except FileNotFoundError:
        raise LookupError(f"batch {key!r} {missing}: run it first (assetql run), then try again") from None


def find_job(plan: ImagePlan, key: str, variant_id: str, variation: int) -> ImageJob:
    """The planned image of `variant_id` × `variation`; LookupError naming the variants or variations there are."""
    variants = list(dict.fromkeys(j.variant_id for j in plan.jobs))
    if variant_id not in variants:
        raise LookupError(f"batch {key!r} has no variant {variant_id!r}; its variants: {listing(variants)}")
    jobs = {j.variation: j for j in plan.jobs if j.variant_id == variant_id}
    if variation not in jobs:
        raise LookupError(
            f"variant {variant_id!r} of batch {key!r} has variation(s) {listing(sorted(jobs))}; "
            f"there is no variation {variation}"
        )
    return jobs[variation]


def find_image(storage: AssetStorage, key: str, variant_id: str, variation: int) -> ImageRef:
    """The stored image of `variant_id` × `variation` in batch `key`, with its current score."""
    batch = open_batch(storage, key)
    job = find_job(stage(storage, key, "prompts", "has no planned images yet"), key, variant_id, variation)
    images = stage(storage, key, "images", "has no generated images yet")
    stored = {r.image_id: r for r in images.stored}
    if job.image_id not in stored:
        failed = {f.image_id: f for f in images.failed}
        why = f": {failed[job.image_id].reason[:200]}; re-run it with: assetql retry-failed {key}" if job.image_id in failed else " yet"
        raise LookupError(f"image {job.file_name} ({variant_id} #{variation}) of batch {key!r} was not generated{why}")
    # What the batch exports (after the style loop) when there is one, else the first scoring.
    try:
        scores = read_record(storage, key, "curated_images").scores
    except FileNotFoundError:
        scores = stage(storage, key, "scores", "has no scored images yet")
    score = next((s for s in scores.images if s.image_id == job.image_id), None)
    if score is None:
        raise LookupError(f"image {job.file_name} of batch {key!r} has no score yet: run the batch first (assetql run)")
    return ImageRef(batch, job, stored[job.image_id], score, scores.threshold)


def image_history(storage: AssetStorage, ref: ImageRef) -> tuple[ImageHistory, bool]:
    """The image's version history and whether it is stored; an image the style loop never touched
    has one version, its own files, with the score of the batch's records."""
    history = load_histories(storage, ref.key).get(ref.job.image_id)
    if history is not None:
        return history, True
    only = ImageVersion(
        version=1, seed=ref.record.seed, prompt=ref.job.prompt, style_boost=0.0, key=ref.record.raw_key,
        thumb_key=ref.record.thumb_key, score=ref.score, reason=INITIAL, created_at="",
    )
    return ImageHistory(ref.job.image_id, current=1, versions=(only,)), False


def palette_pull(settings: BatchSettings, boost: float) -> float:
    """The palette pull strength (0 to 1) a version was generated with: the lock / 100 plus its boost."""
    return round(max(0.0, min(1.0, settings.lock_weights.get("palette", 0) / 100 + boost)), 4)


def version_entry(version: ImageVersion, current: bool, settings: BatchSettings) -> dict:
    s = version.score
    return {
        "version": version.version,
        "current": current,
        "seed": version.seed,
        "prompt": version.prompt,
        "style_boost": version.style_boost,
        # Unscored: the batch has no references, so nothing to pull toward.
        "palette_pull": None if s.style_score is None else palette_pull(settings, version.style_boost),
        "style_score": s.style_score,
        "verdict": s.verdict,
        "scores": {name: getattr(s, f"{name}_score") for name in PARAMETERS},
        "clip_similarity": s.clip_similarity,
        "reason": version.reason,
        "created_at": version.created_at or None,
        "key": version.key,
        "thumb_key": version.thumb_key,
    }


def version_document(storage: AssetStorage, ref: ImageRef) -> dict:
    """Everything `assetql versions` shows of one image, JSON-ready."""
    history, _ = image_history(storage, ref)
    settings = ref.batch.settings
    return {
        "batch": ref.key,
        "variant_id": ref.job.variant_id,
        "variation": ref.job.variation,
        "image_id": ref.job.image_id,
        "file_name": ref.job.file_name,
        "raw_key": ref.record.raw_key,
        "current": history.current,
        "pinned": history.pinned,
        "threshold": ref.threshold,
        "manual_regenerations": {"used": manual_count(history), "max": settings.max_manual_regenerations},
        "versions": [version_entry(v, v.version == history.current, settings) for v in history.versions],
        "changes": [c for c in load_changes(storage, ref.key) if c.get("image_id") == ref.job.image_id],
    }


def compare_page(storage: AssetStorage, document: dict) -> str:
    """The standalone HTML page comparing the versions of `document` (see `version_document`)."""
    thumbs = {v["version"]: data_uri(storage.read_bytes(v["thumb_key"])) for v in document["versions"]}
    links = {v["version"]: storage.uri(v["key"]) for v in document["versions"]} if storage.links_are_local else {}
    return compare_page_html(document, thumbs, links)


def load_changes(storage: AssetStorage, key: str) -> list[dict]:
    """What people changed in the batch's versions (rollbacks, manual regenerations, added variations)."""
    at = record_key(key, CHANGES)
    return json.loads(storage.read_text(at))["changes"] if storage.exists(at) else []


def log_change(storage: AssetStorage, key: str, change: dict) -> None:
    changes = [*load_changes(storage, key), {"at": now_iso(), **change}]
    storage.write_text(record_key(key, CHANGES), json.dumps({"changes": changes}, indent=1), "application/json")


def rollback(storage: AssetStorage, ref: ImageRef, version: int) -> ImageHistory:
    """Make `version` of the image current and pin it; its files are copied to the image's own keys.

    An image the loop never touched has only version 1: rolling back to it keeps that generation
    as version 1 of a stored history and pins it, so the loop leaves it as it is from then on.
    """
    histories = load_histories(storage, ref.key)
    history = histories.get(ref.job.image_id)
    if history is None:
        rolled_back(image_history(storage, ref)[0], version)  # LookupError for any version but 1
        history = initial_history(storage, ref.key, ref.record, ref.job, ref.score)
    updated = rolled_back(history, version)
    make_current(storage, ref.record, updated)
    histories[ref.job.image_id] = updated
    save_histories(storage, ref.key, histories)
    log_change(storage, ref.key, {"action": ROLLBACK, "image_id": ref.job.image_id, "from": history.current, "to": version})
    return updated


def check_regeneration(
    ref: ImageRef, history: ImageHistory | None, seed: int | None, prompt: str | None, strength: float | None
) -> None:
    """ValueError when a manual regeneration of the image with these options cannot be made: the
    image has had every manual regeneration its batch allows, or an option is out of range."""
    allowed, used = ref.batch.settings.max_manual_regenerations, manual_count(history)
    if used >= allowed:
        raise ValueError(
            f"image {ref.job.file_name} has had {used} manual regeneration(s), the most batch {ref.key!r} "
            f"allows (max_manual_regenerations: {allowed}); roll back to one of its versions instead: "
            f"assetql rollback {ref.key} {ref.job.variant_id} --variation {ref.job.variation} --to N"
        )
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise ValueError(f"--seed must be from 0 to {SEED_MAX}, got {seed}")
    if prompt is not None and (not prompt.strip() or len(prompt) > PROMPT_MAX or any(ord(c) < 32 for c in prompt)):
        raise ValueError(f"--prompt must be one line of 1 to {PROMPT_MAX} characters")
    if strength is not None and not 0 <= strength <= 1:
        raise ValueError(f"--style-strength must be from 0 to 1, got {strength:g}")


def manual_job(ref: ImageRef, history: ImageHistory | None, seed: int | None, prompt: str | None) -> ImageJob:
    """The job of the image's next manual regeneration: `seed` (default a fresh one derived from the
    planned seed), `prompt` (default the planned one)."""
    versions = history.versions if history is not None else ()
    number = max((v.version for v in versions), default=1) + 1
    if seed is None:
        seed = manual_seed(ref.job.seed, number, [v.seed for v in versions] or [ref.record.seed])
    job = dataclasses.replace(ref.job, seed=seed)
    if prompt is not None:
        job = dataclasses.replace(job, prompt=prompt, model_prompt=None, prompt_tokens_dropped=0)
    return job


def regenerate(
    storage: AssetStorage,
    ref: ImageRef,
    generate: Generate,
    score: Score,
    seed: int | None = None,
    prompt: str | None = None,
    strength: float | None = None,
) -> ImageHistory:
    """One manual regeneration of the image, stored as its next version, current and pinned.

    `strength` is the palette pull (0 to 1; default the batch's palette lock / 100); the version
    records it as its style boost over the lock, as the loop's versions record theirs, and
    `generate` is called with that boost exactly as the loop calls it.
    """
    histories = load_histories(storage, ref.key)
    history = histories.get(ref.job.image_id)
    check_regeneration(ref, history, seed, prompt, strength)
    job = manual_job(ref, history, seed, prompt)
    lock = ref.batch.settings.lock_weights.get("palette", 0) / 100
    boost = (lock if strength is None else strength) - lock
    [image] = generate([job], boost)
    if history is None:
        history = initial_history(storage, ref.key, ref.record, ref.job, ref.score)
    updated = with_manual_version(storage, ref.key, ref.record, history, job, boost, image, score)
    histories[ref.job.image_id] = updated
    save_histories(storage, ref.key, histories)
    log_change(storage, ref.key, {
        "action": MANUAL, "image_id": ref.job.image_id, "from": history.current, "to": updated.current,
        "seed": job.seed, "palette_pull": palette_pull(ref.batch.settings, boost),
    })
    return updated


VARIATIONS_CHECK = {f.name: f for f in dataclasses.fields(BatchSettings)}["variations"].metadata["check"]


def extended(batch: BatchInput, count: int) -> BatchInput:
    """`batch` with `count` more variations per row; ValueError when that is more than a batch may have."""
    if count < 1:
        raise ValueError(f"--variations must be at least 1, got {count}")
    total = batch.settings.variations + count
    problem = VARIATIONS_CHECK(total)
    if problem:
        raise ValueError(
            f"batch {batch.batch!r} has {batch.settings.variations} variation(s) per row; adding {count} makes "
            f"{total}, but variations {problem}"
        )
    settings = dataclasses.replace(batch.settings, variations=total)
    return dataclasses.replace(batch, settings=settings, added_variations=(*batch.added_variations, count))


def freeze_existing(storage: AssetStorage, key: str, settings: BatchSettings) -> list[str]:
    """Pin the batch's stored images the style loop could still regenerate, so that adding
    variations (which adds regeneration budget) leaves every existing image as it is; returns them.

    Those are the images below the threshold whose history has room for another attempt, and
    those below it without a history (the loop had no budget for them): these get their one
    generation kept as version 1, as the loop would keep it.
    """
    if settings.max_attempts <= 1:
        return []  # The loop is off for this batch.
    try:
        images, scores, plan = (read_record(storage, key, name) for name in ("images", "scores", "prompts"))
    except FileNotFoundError:
        return []  # Nothing scored yet: the loop never ran on this batch.
    histories = load_histories(storage, key)
    initial = {s.image_id: s for s in scores.images}
    jobs = {j.image_id: j for j in plan.jobs}
    frozen = []
    for record in images.stored:
        history = histories.get(record.image_id)
        if history is None:
            first = initial.get(record.image_id)
            if first is None or first.style_score is None or first.verdict == PASS or record.image_id not in jobs:
                continue
            history = initial_history(storage, key, record, jobs[record.image_id], first)
        elif not needs_another(history, lambda s: s.verdict == PASS, settings.max_attempts):
            continue
        histories[record.image_id] = dataclasses.replace(history, pinned=True)
        frozen.append(record.image_id)
    if frozen:
        save_histories(storage, key, histories)
    return frozen


def extend_batch(storage: AssetStorage, key: str, count: int) -> tuple[BatchInput, list[str]]:
    """Add `count` variations per row to registered batch `key`, in place: the same partition,
    its stored `BatchInput` updated (settings.variations and added_variations). The images it has
    keep their names and files (see `plan_images`) and are frozen (see `freeze_existing`); running
    the batch then generates only the new ones. Returns the updated batch and the frozen images."""
    batch = extended(open_batch(storage, key), count)
    frozen = freeze_existing(storage, key, batch.settings)
    write_record(storage, record_key(key, "source"), batch)
    log_change(storage, key, {"action": MORE, "added": count, "variations": batch.settings.variations, "frozen": frozen})
    return batch, frozen
