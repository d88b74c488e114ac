"""Generating planned images into storage: resumable, OOM-adaptive, failure-classifying.

An image counts as done when both its PNG and its thumbnail are stored and decode. Storage writes
are atomic and names deterministic, so a re-run skips finished images and generates only the rest,
and a crash can never leave a half-written image that looks finished. A file damaged outside
AssetQL (a copy or sync cut short, a full disk) does not count: its image is generated again and
the file reported.

Failures are sorted into two kinds. Transient ones (out of memory, timeouts, storage hiccups)
propagate so the step's RetryPolicy retries the shard; on the last attempt they are recorded per
image instead, so the batch still completes and exports what it has. Permanent ones (an input the
model rejects) are recorded at once: retrying cannot fix them.
"""

from __future__ import annotations

import io
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Sequence

from PIL import Image

from assetql_dagster.domain.contact_sheet import thumbnail_bytes
from assetql_dagster.domain.layout import raw_image_key, thumbnail_key
from assetql_dagster.domain.color_transfer import transfer_palette
from assetql_dagster.domain.records import FailedRow, ImageJob, StoredImage, StyleProfile
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.domain.style_parameters import Palette
from resources.storage import AssetStorage

CPU_MICRO_BATCH = 4
GPU_PIXELS_PER_MICRO_BATCH = 8 * 1024 * 1024
PERMANENT_ERRORS = (ValueError, TypeError, KeyError)
# PNG encoding and uploads overlap with the next micro-batch on the accelerator; at most this many
# micro-batches of images wait to be written, so memory stays flat however big the batch is.
WRITER_THREADS = 2
PENDING_MICRO_BATCHES = 2
# A resumed batch reads back every stored file once; a few reads at once hide storage latency (S3).
CHECK_THREADS = 4
# What Pillow raises for a file cut short (OSError, UnidentifiedImageError among them) or one whose
# chunk or checksum is garbled (SyntaxError).
DECODE_ERRORS = (OSError, SyntaxError)


@dataclass(frozen=True)
class RenderSettings:
    width: int
    height: int
    steps: int
    guidance_scale: float


@dataclass
class GenerationReport:
    generated: list[StoredImage] = field(default_factory=list)
    skipped: list[StoredImage] = field(default_factory=list)
    failed: list[FailedRow] = field(default_factory=list)
    # Keys of stored files that did not decode; their images were generated again with the rest.
    corrupt: list[str] = field(default_factory=list)
    oom_backoffs: int = 0
    final_micro_batch: int = 0
    seconds_generating: float = 0.0


def render_settings(settings: BatchSettings, pipe) -> RenderSettings:
    """The batch's render settings, its size defaulting to the loaded model's native size."""
    width, height = settings.width or pipe.native_size[0], settings.height or pipe.native_size[1]
    return RenderSettings(width, height, settings.steps, settings.guidance_scale)


def micro_batch_size(requested: int | str, device_type: str, width: int, height: int) -> int:
    """`auto` fills a GPU with roughly 8 megapixels per call; CPUs gain little from batching."""
    if requested != "auto":
        return int(requested)
    if device_type != "cuda":
        return CPU_MICRO_BATCH
    return max(1, min(64, GPU_PIXELS_PER_MICRO_BATCH // (width * height)))


@dataclass(frozen=True)
class PaletteHold:
    """The profile palette decoded images are pulled toward, and how hard (0 to 1: the lock / 100)."""

    palette: Palette
    strength: float


def palette_hold(profile: StyleProfile, palette_lock: int, boost: float = 0.0) -> PaletteHold | None:
    """The palette pull for a batch's palette lock (plus `boost`, how far the loop steps it up)."""
    strength = min(1.0, palette_lock / 100 + boost)
    if not profile.has_reference or profile.parameters is None or strength <= 0:
        return None
    return PaletteHold(profile.parameters.palette, strength)


@dataclass(frozen=True)
class AdapterStyle:
    """The style references an IP-Adapter conditions every image on, and its scale (0 to 1)."""

    references: tuple[Image.Image, ...]
    scale: float


def adapter_style(pipe, references: Sequence[Image.Image], strength: float, boost: float = 0.0) -> AdapterStyle | None:
    """IP-Adapter conditioning for a pipeline loaded with one (else None), stepped up by `boost`."""
    if getattr(pipe, "ip_adapter", None) is None or not references:
        return None
    return AdapterStyle(tuple(references), min(1.0, strength + boost))


def job_generator(
    pipe, render: RenderSettings, hold: PaletteHold | None = None, adapter: AdapterStyle | None = None
) -> Callable[[list[ImageJob]], list]:
    """`generate` for `generate_images`: a loaded pipeline called on a micro-batch of planned jobs."""
    style = {} if adapter is None else {"style_images": list(adapter.references), "style_scale": adapter.scale}

    def generate(chunk: list[ImageJob]) -> list:
        images = pipe.generate(
            [j.prompt for j in chunk],
            [j.negative_prompt for j in chunk],
            [j.seed for j in chunk],
            render.width,
            render.height,
            render.steps,
            render.guidance_scale,
            **style,
        )
        if hold is None:
            return images
        # After decoding, deterministically: a palette lock holds colours that no prompt can.
        return [transfer_palette(img, hold.palette, hold.strength) for img in images]

    return generate


def is_out_of_memory(err: BaseException) -> bool:
    # Matched by name and message so this module needs no torch import, and so the OOMs that
    # surface as plain RuntimeErrors from some CUDA kernels are caught too.
    return type(err).__name__ == "OutOfMemoryError" or "out of memory" in str(err).lower()


def is_permanent(err: BaseException) -> bool:
    return isinstance(err, PERMANENT_ERRORS) and not is_out_of_memory(err)


def image_record(batch: str, job: ImageJob, render: RenderSettings) -> StoredImage:
    return StoredImage(
        image_id=job.image_id,
        file_name=job.file_name,
        # Named as the image is now called, which a rename may have changed since it was planned.
        raw_key=raw_image_key(batch, job.stem),
        thumb_key=thumbnail_key(batch, job.stem),
        width=render.width,
        height=render.height,
        seed=job.seed,
    )


def failed_row(job: ImageJob, err: BaseException, attempts: int) -> FailedRow:
    return FailedRow(
        image_id=job.image_id,
        variant_id=job.variant_id,
        variation=job.variation,
        row=job.row,
        # Bounded: an exception message may quote a whole prompt or tensor.
        reason=f"{type(err).__name__}: {err}"[:500],
        kind="permanent" if is_permanent(err) else "transient",
        attempts=attempts,
    )


def png_is_intact(data: bytes) -> bool:
    # verify() checks every chunk's CRC up to IEND without inflating the pixels: cheap, and a file
    # cut short misses IEND.
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except DECODE_ERRORS:
        return False
    return True


def thumbnail_is_intact(data: bytes) -> bool:
    # A JPEG carries no checksum for verify() to check, so the thumbnail is decoded in full; at
    # 256 px that takes about a millisecond, and a cut-off one raises as it runs out of data.
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except DECODE_ERRORS:
        return False
    return True


def check_stored(storage: AssetStorage, record: StoredImage) -> tuple[bool, list[str]]:
    """Whether the image counts as stored (both files exist and decode), and which of its stored
    files do not decode. Only files that exist are read."""
    present = [
        (key, intact)
        for key, intact in ((record.raw_key, png_is_intact), (record.thumb_key, thumbnail_is_intact))
        if storage.exists(key)
    ]
    corrupt = [key for key, intact in present if not intact(storage.read_bytes(key))]
    return len(present) == 2 and not corrupt, corrupt


def store_image(storage: AssetStorage, record: StoredImage, image) -> None:
    png = io.BytesIO()
    image.save(png, format="PNG")
    storage.write_bytes(record.thumb_key, thumbnail_bytes(image), "image/jpeg")
    storage.write_bytes(record.raw_key, png.getvalue(), "image/png")


def generate_images(
    storage: AssetStorage,
    batch: str,
    jobs: Sequence[ImageJob],
    generate: Callable[[list[ImageJob]], list],
    render: RenderSettings,
    micro_batch: int,
    attempt: int = 1,
    final_attempt: bool = True,
    progress: Callable[[int, int], None] = lambda done, total: None,
    on_oom: Callable[[], None] = lambda: None,
) -> GenerationReport:
    """Generate every job not yet stored intact, writing each image as soon as its micro-batch returns."""
    report = GenerationReport(final_micro_batch=micro_batch)
    by_id = {job.image_id: job for job in jobs}
    records = [image_record(batch, job, render) for job in jobs]
    pending = []
    with ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="assetql-check") as checkers:
        checks = checkers.map(partial(check_stored, storage), records)
        for record, (stored, corrupt) in zip(records, checks):
            (report.skipped if stored else pending).append(record)
            report.corrupt.extend(corrupt)

    with ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="assetql-writer") as writers:
        writing: deque[tuple[StoredImage, Future]] = deque()

        def finish_writes(keep: int) -> None:
            while len(writing) > keep:
                record, future = writing.popleft()
                future.result()  # a storage error surfaces here, as a transient failure of the step
                report.generated.append(record)

        size, start, isolate_until = micro_batch, 0, 0
        while start < len(pending):
            step = 1 if start < isolate_until else size
            chunk = pending[start : start + step]
            began = time.perf_counter()
            try:
                images = generate([by_id[r.image_id] for r in chunk])
            except Exception as err:  # noqa: BLE001 - classified below; anything unexpected re-raises
                report.seconds_generating += time.perf_counter() - began
                if is_out_of_memory(err) and step > 1:
                    # Same images again with half the micro-batch, before the step is allowed to fail.
                    size = max(1, step // 2)
                    report.oom_backoffs += 1
                    report.final_micro_batch = size
                    on_oom()
                    continue
                if not (is_permanent(err) or final_attempt):
                    raise
                if step > 1:
                    # Find the image(s) at fault one at a time; the rest of the chunk still gets made.
                    isolate_until = start + step
                    continue
                report.failed.append(failed_row(by_id[chunk[0].image_id], err, attempt))
                start += 1
                continue
            report.seconds_generating += time.perf_counter() - began
            for record, image in zip(chunk, images, strict=True):
                writing.append((record, writers.submit(store_image, storage, record, image)))
            finish_writes(keep=PENDING_MICRO_BATCHES * size)
            start += len(chunk)
            # Counted when generated; the writes of the last micro-batches finish in the background.
            progress(len(report.skipped) + len(report.generated) + len(writing) + len(report.failed), len(jobs))
        finish_writes(keep=0)
    # Writes finish after the last micro-batch: the final report is total/total (or what failed).
    progress(len(report.skipped) + len(report.generated) + len(report.failed), len(jobs))
    return report
