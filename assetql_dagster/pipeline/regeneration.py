"""The closed style loop: images below the pass threshold are generated again until they pass.

A new seed first, then stronger style: from the third attempt on, the palette pull is stepped up by
STYLE_STEP per attempt. Every attempt is kept as a version under `versions/{batch}/{image}/`; the
best-scoring version is copied to the image's own keys (raw/ and thumbnails/), so every later stage
reads the current version without knowing about versions. An image still below the threshold
after `max_attempts` generations, or when the batch's `regeneration_budget` is spent, stays at its
best version and is marked `review`. The version history is saved after every round, so a retried
or re-run step continues where it stopped and never repeats an attempt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from PIL import Image

from assetql_dagster.domain.layout import record_key, version_key, version_thumbnail_key
from assetql_dagster.domain.records import (
    BatchInput,
    ImageHistory,
    ImageJob,
    ImageScore,
    ImageVersion,
    ScoreSet,
    StoredImage,
    StyleProfile,
    VersionSet,
)
from assetql_dagster.domain.scoring import PASS
from assetql_dagster.pipeline.analysis import scorer
from assetql_dagster.pipeline.generation import (
    adapter_style,
    job_generator,
    micro_batch_size,
    palette_hold,
    render_settings,
    store_image,
)
from assetql_dagster.pipeline.records import read_record_at, write_record
from assetql_dagster.pipeline.style import ip_adapter_references
from resources.storage import AssetStorage

VERSIONS = "versions"

STYLE_STEP = 0.25
INITIAL, AUTO, MANUAL, ROLLBACK = "initial", "auto-regenerate", "manual", "rollback"

# (jobs, style boost) -> one image per job; (stored records, images) -> their scores.
Generate = Callable[[list[ImageJob], float], list[Image.Image]]
Score = Callable[[list[StoredImage], list[Image.Image]], list[ImageScore]]


@dataclasses.dataclass
class LoopReport:
    regenerated: int = 0
    rounds: int = 0
    seconds_generating: float = 0.0
    budget_left: int = 0


def attempt_seed(seed: int, attempt: int) -> int:
    """The seed of an image's `attempt`-th generation: its planned seed first, then derived ones."""
    if attempt == 1:
        return seed
    digest = hashlib.sha256(f"{seed}:attempt:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def style_boost(attempt: int) -> float:
    """How much harder attempt `attempt` holds the style: nothing for the first two (the second only
    changes the seed), then STYLE_STEP more per attempt."""
    return max(0, attempt - 2) * STYLE_STEP


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_record(batch: str, record: StoredImage, version: int, seed: int) -> StoredImage:
    """Where version `version` of `record`'s image is kept."""
    return dataclasses.replace(
        record,
        raw_key=version_key(batch, record.image_id, version),
        thumb_key=version_thumbnail_key(batch, record.image_id, version),
        seed=seed,
    )


def extra_generations(histories: Sequence[ImageHistory]) -> int:
    """Generations beyond each image's first that the loop has made so far."""
    return sum(1 for h in histories for v in h.versions if v.reason == AUTO)


def regeneration_budget(fraction: float, planned: int) -> int:
    return math.floor(fraction * planned + 1e-9)


def needs_another(history: ImageHistory, threshold_met: Callable[[ImageScore], bool], max_attempts: int) -> bool:
    current = history.current_version
    return (
        not history.pinned
        and current.score.style_score is not None
        and not threshold_met(current.score)
        and len(history.versions) < max_attempts
    )


def make_current(storage: AssetStorage, record: StoredImage, history: ImageHistory) -> None:
    """Copy the current version's files to the image's own keys, which every later stage reads."""
    current = history.current_version
    storage.write_bytes(record.raw_key, storage.read_bytes(current.key), "image/png")
    storage.write_bytes(record.thumb_key, storage.read_bytes(current.thumb_key), "image/jpeg")


def best(versions: Sequence[ImageVersion]) -> int:
    """The version number with the highest style score (the earliest among equals)."""
    return max(versions, key=lambda v: (v.score.style_score or 0.0, -v.version)).version


def run_loop(
    storage: AssetStorage,
    batch: str,
    jobs: dict[str, ImageJob],
    stored: Sequence[StoredImage],
    scores: ScoreSet,
    histories: dict[str, ImageHistory],
    max_attempts: int,
    budget: int,
    generate: Generate,
    score: Score,
    save: Callable[[dict[str, ImageHistory]], None],
) -> LoopReport:
    """Regenerate the images of `stored` below `scores.threshold`, updating `histories` in place."""
    records = {r.image_id: r for r in stored}
    initial = {s.image_id: s for s in scores.images}

    def passes(s: ImageScore) -> bool:
        return s.verdict == PASS

    for image_id, record in records.items():
        if image_id not in histories and not passes(initial[image_id]) and initial[image_id].style_score is not None:
            # The first generation is kept as version 1 before any other can replace it.
            job, kept = jobs[image_id], version_record(batch, record, 1, record.seed)
            storage.write_bytes(kept.raw_key, storage.read_bytes(record.raw_key), "image/png")
            storage.write_bytes(kept.thumb_key, storage.read_bytes(record.thumb_key), "image/jpeg")
            version = ImageVersion(
                version=1, seed=job.seed, prompt=job.prompt, style_boost=0.0, key=kept.raw_key,
                thumb_key=kept.thumb_key, score=initial[image_id], reason=INITIAL, created_at=now_iso(),
            )
            histories[image_id] = ImageHistory(image_id, current=1, versions=(version,))
    report = LoopReport(budget_left=max(0, budget - extra_generations(list(histories.values()))))
    pending = [i for i in records if i in histories and needs_another(histories[i], passes, max_attempts)]
    while pending and report.budget_left > 0:
        this_round = pending[: report.budget_left]
        report.rounds += 1
        by_boost: dict[float, list[str]] = {}
        for image_id in this_round:
            by_boost.setdefault(style_boost(len(histories[image_id].versions) + 1), []).append(image_id)
        for boost, ids in sorted(by_boost.items()):
            attempt_jobs = [
                dataclasses.replace(jobs[i], seed=attempt_seed(jobs[i].seed, len(histories[i].versions) + 1))
                for i in ids
            ]
            began = time.perf_counter()
            images = generate(attempt_jobs, boost)
            report.seconds_generating += time.perf_counter() - began
            numbers = [len(histories[i].versions) + 1 for i in ids]
            targets = [version_record(batch, records[i], n, job.seed) for i, n, job in zip(ids, numbers, attempt_jobs)]
            for target, img in zip(targets, images):
                store_image(storage, target, img)
            for i, n, job, target, new in zip(ids, numbers, attempt_jobs, targets, score(targets, images)):
                version = ImageVersion(
                    version=n, seed=job.seed, prompt=job.prompt, style_boost=boost, key=target.raw_key,
                    thumb_key=target.thumb_key, score=new, reason=AUTO, created_at=now_iso(),
                )
                history = histories[i]
                versions = (*history.versions, version)
                updated = dataclasses.replace(history, versions=versions, current=best(versions))
                if updated.current != history.current:
                    make_current(storage, records[i], updated)
                histories[i] = updated
            report.regenerated += len(ids)
            report.budget_left -= len(ids)
        save(histories)
        pending = [i for i in this_round if needs_another(histories[i], passes, max_attempts)]
    return report


def final_scores(scores: ScoreSet, histories: dict[str, ImageHistory]) -> ScoreSet:
    """`scores` with each image's current version's score, version number and attempt count."""
    images = []
    for s in scores.images:
        history = histories.get(s.image_id)
        if history is None:
            images.append(s)
            continue
        current = history.current_version.score
        images.append(dataclasses.replace(current, version=history.current, attempts=len(history.versions)))
    return dataclasses.replace(scores, images=tuple(images))


def load_histories(storage: AssetStorage, batch: str) -> dict[str, ImageHistory]:
    """The batch's saved version histories by image id (none before the loop first ran)."""
    key = record_key(batch, VERSIONS)
    if not storage.exists(key):
        return {}
    return {h.image_id: h for h in read_record_at(storage, key, "").images}


def save_histories(storage: AssetStorage, batch: str, histories: dict[str, ImageHistory]) -> None:
    write_record(storage, record_key(batch, VERSIONS), VersionSet(tuple(histories[i] for i in sorted(histories))))


# A person's changes to an image's versions (`assetql rollback`, `assetql regenerate`): both pin the
# image, so the loop leaves the version they chose current.


def manual_count(history: ImageHistory | None) -> int:
    """Manual regenerations the image has had."""
    return 0 if history is None else sum(1 for v in history.versions if v.reason == MANUAL)


def manual_seed(seed: int, version: int, taken: Sequence[int] = ()) -> int:
    """A fresh seed for a manual regeneration stored as `version`: derived from the planned seed,
    never one of `taken` (the seeds of the image's other versions)."""
    salt = 0
    while True:
        digest = hashlib.sha256(f"{seed}:manual:{version}:{salt}".encode()).digest()
        candidate = int.from_bytes(digest[:4], "big")
        if candidate not in taken:
            return candidate
        salt += 1


def initial_history(storage: AssetStorage, batch: str, record: StoredImage, job: ImageJob, score: ImageScore) -> ImageHistory:
    """The history of an image the loop never touched: its one generation kept as version 1 (as the
    loop keeps it before replacing anything)."""
    kept = version_record(batch, record, 1, record.seed)
    storage.write_bytes(kept.raw_key, storage.read_bytes(record.raw_key), "image/png")
    storage.write_bytes(kept.thumb_key, storage.read_bytes(record.thumb_key), "image/jpeg")
    version = ImageVersion(
        version=1, seed=job.seed, prompt=job.prompt, style_boost=0.0, key=kept.raw_key, thumb_key=kept.thumb_key,
        score=dataclasses.replace(score, version=1, attempts=1), reason=INITIAL, created_at=now_iso(),
    )
    return ImageHistory(record.image_id, current=1, versions=(version,))


def rolled_back(history: ImageHistory, version: int) -> ImageHistory:
    """`history` with `version` current and pinned; LookupError naming the versions there are."""
    if version not in {v.version for v in history.versions}:
        numbers = ", ".join(str(v.version) for v in history.versions)
        raise LookupError(f"image {history.image_id!r} has version(s) {numbers}; there is no version {version}")
    return dataclasses.replace(history, current=version, pinned=True)


def with_manual_version(
    storage: AssetStorage, batch: str, record: StoredImage, history: ImageHistory, job: ImageJob, boost: float,
    image: Image.Image, score: Score,
) -> ImageHistory:
    """`history` with `image` (generated from `job` with style boost `boost`) stored and scored as its
    next version, which becomes current and pinned; the image's own keys hold it afterwards."""
    number = max(v.version for v in history.versions) + 1
    target = version_record(batch, record, number, job.seed)
    store_image(storage, target, image)
    [new] = score([target], [image])
    version = ImageVersion(
        version=number, seed=job.seed, prompt=job.prompt, style_boost=round(boost, 4), key=target.raw_key,
        thumb_key=target.thumb_key, score=new, reason=MANUAL, created_at=now_iso(),
    )
    updated = dataclasses.replace(history, versions=(*history.versions, version), current=number, pinned=True)
    make_current(storage, record, updated)
    return updated


def loop_functions(storage: AssetStorage, batch: BatchInput, profile: StyleProfile, generator, clip) -> tuple[Generate, Score]:
    """`generate` and `score` for one batch as the style loop (`curated_images`) makes them: the
    same pipeline, palette pull, IP-Adapter conditioning and scoring. `generator` and `clip` are
    the code location's resources."""
    settings = batch.settings
    pipe = generator.load(settings.model, settings.ip_adapter, settings.lora)
    references = ip_adapter_references(storage, batch)
    render = render_settings(settings, pipe)
    micro = micro_batch_size(settings.micro_batch, pipe.device.type, render.width, render.height)
    _, score = scorer(profile, settings, clip.load())
    palette_lock = settings.lock_weights.get("palette", 0)

    def generate(jobs: list[ImageJob], boost: float) -> list:
        # A manual strength below the lock is a negative boost; the adapter's scale stays at least 0.
        adapter = adapter_style(pipe, references, settings.style_strength, max(boost, -settings.style_strength))
        run = job_generator(pipe, render, palette_hold(profile, palette_lock, boost), adapter)
        return [img for start in range(0, len(jobs), micro) for img in run(jobs[start : start + micro])]

    return generate, score
