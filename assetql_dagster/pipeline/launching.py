"""Submitting batches from outside the Dagster UI: preview an upload, register and launch it, follow
its run, and quick generate (one prompt, four variations).

Everything Dagster-specific goes through a `RunLauncher`: `defs.launching.InstanceLauncher` (a
Dagster instance, e.g. the local embedded one) and `defs.launching.GraphQLLauncher` (a Dagster
webserver's GraphQL API). What is planned, stored and scored is read from storage, the source of
truth, so progress reads the same whichever launcher started the run, or whether the UI, a sensor
or `assetql run` did.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Protocol

import yaml

from assetql_dagster.domain.batch_loader import CSV_NAME, SETTINGS_NAME, BatchSource
from assetql_dagster.domain.errors import BatchValidationError, Problem
from assetql_dagster.domain.layout import record_key
from assetql_dagster.domain.priority import run_priority
from assetql_dagster.domain.progress import ImageProgress
from assetql_dagster.domain.records import BatchInput
from assetql_dagster.domain.scoring import pass_rate
from assetql_dagster.pipeline.analysis import UNSCORED
from assetql_dagster.pipeline.planning import offline_translator, overlong_prompts, row_prompts, untranslated_words
from assetql_dagster.pipeline.profiles import resolve_style
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import check_batch, register_batch, registered_batch
from assetql_dagster.pipeline.versions import extend_batch, open_batch
from resources.models import TINY_MODEL
from resources.prompt_tokens import load_prompt_tokenizer
from resources.storage import AssetStorage

PREVIEW_PROMPTS = 5
# Generation seconds per image and denoising step, at the model's native size, when no finished run
# of the model was measured. tiny: docs/benchmarks.md's CPU figure (about 25 images/s at 4 steps);
# Stable Diffusion 1.x and SDXL: the one-GPU targets there (8 and 1.15 images/s at 30 steps).
SECONDS_PER_IMAGE_STEP = {"tiny": 0.01, "sd": 1 / (8 * 30), "sdxl": 1 / (1.15 * 30)}
# Finished `images` materializations looked at for a measured estimate.
MEASURED_RUNS = 20

# Dagster run statuses (DagsterRunStatus names) as the library shows them.
RUN_STATUSES = {
    "QUEUED": "queued", "NOT_STARTED": "queued", "STARTING": "queued",
    "STARTED": "running", "CANCELING": "running",
    "SUCCESS": "succeeded", "FAILURE": "failed", "CANCELED": "failed",
}
REGISTERED = "registered"

QUICK_PROMPT_MAX = 500
QUICK_VARIATIONS = 4
QUICK_NAME = "quick"
# The origin every quick batch is registered with: `more_of` only extends batches that have it.
QUICK_ORIGIN = "quick-generate"


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """A Dagster run of a batch, as a launcher reads it: status is the DagsterRunStatus name; times
    in epoch seconds; progress is the images progress the run reported, if any yet."""

    run_id: str
    status: str
    started: float | None = None
    ended: float | None = None
    progress: ImageProgress | None = None


@dataclasses.dataclass(frozen=True)
class GenerationSample:
    """One finished `images` materialization: how many images it generated and the seconds it spent in the model."""

    batch: str
    generated: int
    seconds: float


class RunLauncher(Protocol):
    """Adds batch partitions and launches `batch_job` runs of them on a Dagster deployment."""

    def add_partition(self, key: str) -> None:
        """Adds partition `key` of the `batches` dynamic partitions (nothing when it exists)."""

    def launch(self, key: str, assets: Sequence[str] | None = None, origin: str | None = None,
               priority: int = 0) -> str:
        """Launches `batch_job` for partition `key` (only `assets`, by name, when given), tagged as
        every batch run is, with `origin` (default: the key), queued at run `priority`; returns the run id."""

    def latest_run(self, key: str) -> RunInfo | None:
        """The newest run of batch `key`, or None."""

    def generation_samples(self, limit: int = MEASURED_RUNS) -> list[GenerationSample]:
        """The newest finished `images` materializations, newest first."""


@dataclasses.dataclass(frozen=True)
class BatchPreview:
    """What an uploaded batch would make, before anything is registered: every problem (file, row,
    column), the first rendered prompts, and an estimate of the generation time and its basis."""

    rows: int
    images: int
    prompts: tuple[str, ...]
    problems: tuple[Problem, ...]
    estimated_seconds: float
    estimate_basis: str
    warnings: tuple[Problem, ...] = ()
    model: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def preview_upload(folder: Path, storage: AssetStorage | None = None, launcher: RunLauncher | None = None) -> BatchPreview:
    """Validates the batch at `folder` as `assetql validate` does (registration's `check_batch`), and
    returns what it would make; invalid input is returned as problems, never raised.

    With `storage`, a `style` naming a style profile is also looked up, as registration will; with
    `storage` and `launcher`, the time estimate is measured from finished runs of the same model.
    """
    try:
        source = check_batch(Path(folder))
        if storage is not None and source.settings.style is not None:
            resolve_style(storage, source)
    except BatchValidationError as invalid:
        return BatchPreview(0, 0, (), tuple(invalid.problems), 0.0, "no estimate: the batch has problems")
    rows = source.rows[:PREVIEW_PROMPTS]
    prompts = tuple(p.prompt for p in row_prompts(source.settings, rows, date.today(),
                                                  translate=offline_translator(source.settings)))
    warnings = overlong_prompts(source, lambda: load_prompt_tokenizer(source.settings.model)) + untranslated_words(source)
    images = len(source.rows) * source.settings.variations
    measured = None
    if storage is not None and launcher is not None:
        measured = measured_seconds_per_step(storage, launcher.generation_samples(), source.settings.model)
    per_image, basis = seconds_per_image(source, measured)
    return BatchPreview(
        rows=len(source.rows), images=images, prompts=prompts, problems=(), estimated_seconds=round(images * per_image, 1),
        estimate_basis=basis, warnings=tuple(warnings), model=source.settings.model,
    )


def model_kind(model: str) -> str:
    """`tiny`, `sdxl` or `sd`, by the model's name (an SDXL hub id or folder says XL)."""
    if model == TINY_MODEL:
        return "tiny"
    return "sdxl" if "xl" in model.lower() else "sd"


def measured_seconds_per_step(
    storage: AssetStorage, samples: Iterable[GenerationSample], model: str
) -> tuple[float, int] | None:
    """Seconds per image and step over `samples` of batches in `storage` that used `model`, with
    how many samples that is; None without one."""
    seconds, image_steps, runs = 0.0, 0, 0
    for sample in samples:
        # A run that generated nothing (every image stored already) measured nothing, and a batch
        # this storage does not hold (the instance serves another) has no settings to go by.
        if sample.generated <= 0 or not storage.exists(record_key(sample.batch, "source")):
            continue
        settings = registered_batch(storage, sample.batch).settings
        if settings.model == model:
            seconds, image_steps, runs = seconds + sample.seconds, image_steps + sample.generated * settings.steps, runs + 1
    return (seconds / image_steps, runs) if runs else None


def seconds_per_image(source: BatchSource, measured: tuple[float, int] | None) -> tuple[float, str]:
    """Generation seconds per image of `source`, and where the figure comes from."""
    steps, model = source.settings.steps, source.settings.model
    if measured is not None:
        per_step, runs = measured
        return per_step * steps, f"measured: {runs} finished run(s) of model {model!r}, {per_step:.3g} s per image step"
    kind = model_kind(model)
    per_step = SECONDS_PER_IMAGE_STEP[kind]
    return per_step * steps, f"estimated: {per_step:.3g} s per image step for a {kind} model (no finished run of {model!r})"


def submit_batch(
    storage: AssetStorage, folder: Path, creator: str, overrides: dict | None, launcher: RunLauncher,
    origin: str | None = None,
) -> str:
    """Registers the batch at `folder` (BatchValidationError listing every problem, nothing
    registered), adds its partition and launches its `batch_job` run; returns the partition key.

    `origin` is what the batch came from, as its record and run tags show it (default: the folder).
    """
    registration = register_batch(storage, Path(folder), origin=origin, overrides=overrides, creator=creator)
    key = registration.key
    launcher.add_partition(key)
    launcher.launch(key, origin=origin or str(Path(folder).resolve()),
                    priority=run_priority(registration.source.settings.priority))
    return key


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where a batch stands: status (registered, queued, running, succeeded or failed), images done
    out of planned, the share of scored images passing the style threshold (None before scoring or
    without references), seconds left while running, and the latest run's id."""

    status: str
    done: int
    planned: int
    pass_rate: float | None
    eta_seconds: float | None
    run_id: str | None


def batch_progress(launcher: RunLauncher, storage: AssetStorage, batch: str, now: float | None = None) -> Progress:
    """The progress of registered batch `batch` (LookupError naming the registered ones otherwise),
    from its latest run (through `launcher`) and its stored records."""
    registered = open_batch(storage, batch)
    run = launcher.latest_run(batch)
    status = REGISTERED if run is None else run_status(run.status)
    planned = len(registered.rows) * registered.settings.variations
    done, eta = 0, None
    stored = _stored_images(storage, batch)
    if run is not None and run.progress is not None and status != "succeeded":
        # The run's own count: it includes images an earlier run stored, which it skips.
        done, planned = run.progress.done, run.progress.total
        if status == "running":
            eta = run.progress.eta(time.time() if now is None else now)
    elif stored is not None and status not in ("queued", "running"):
        done, planned = stored
    return Progress(status, done, planned, batch_pass_rate(storage, batch), eta, None if run is None else run.run_id)


def run_status(dagster_status: str) -> str:
    if dagster_status not in RUN_STATUSES:
        raise ValueError(f"unknown Dagster run status {dagster_status!r}; expected one of {sorted(RUN_STATUSES)}")
    return RUN_STATUSES[dagster_status]


def _stored_images(storage: AssetStorage, batch: str) -> tuple[int, int] | None:
    try:
        images = read_record(storage, batch, "images")
    except FileNotFoundError:
        return None
    return len(images.stored), images.planned


def batch_pass_rate(storage: AssetStorage, batch: str) -> float | None:
    """Over the final verdicts (after the style loop), else the first scores; None when unscored."""
    for stage, verdicts in (("curated_images", lambda r: r.scores.images), ("scores", lambda r: r.images)):
        try:
            record = read_record(storage, batch, stage)
        except FileNotFoundError:
            continue
        scored = [s.verdict for s in verdicts(record) if s.verdict != UNSCORED]
        return pass_rate(scored) if scored else None
    return None


def quick_generate(
    storage: AssetStorage, prompt: str, user: str, launcher: RunLauncher, profile: str | None, lora: str | None,
    more_of: str | None = None, model: str | None = None,
) -> str:
    """Starts four variations of `prompt` as a one-row batch made by `user`, in the style of
    `profile` (a style profile `name` or `name@N`) with the brand LoRA `lora` (a `.safetensors`
    file or folder) on `model` (default: the batch default, `tiny`), or, with `more_of`, four more
    variations of that earlier quick batch (its prompt, profile, LoRA and model; `prompt` is not
    used), up to the eight a batch may have. Returns the batch key whose images to show.

    The batch is written to a temporary folder and registered like any upload, so it is validated
    the same (BatchValidationError) and lands in the catalog like any other batch. The same prompt,
    profile and LoRA again make the same batch, whose images are already there.
    """
    if more_of is not None:
        return _more_of(storage, more_of, launcher)
    text = " ".join(prompt.split())
    if not text:
        raise ValueError("the prompt is empty; describe the image to generate")
    if len(text) > QUICK_PROMPT_MAX:
        raise ValueError(f"the prompt has {len(text)} characters; quick generate takes at most {QUICK_PROMPT_MAX}")
    settings: dict[str, object] = {"name": QUICK_NAME, "variations": QUICK_VARIATIONS}
    if profile:
        settings["style"] = profile
    if lora:
        settings["lora"] = [{"path": lora}]
    if model:
        settings["model"] = model
    with tempfile.TemporaryDirectory(prefix="assetql-quick-") as tmp:
        folder = Path(tmp) / QUICK_NAME
        folder.mkdir()
        rows = io.StringIO()
        csv.writer(rows, lineterminator="\n").writerows([["variant_id", "prompt"], [QUICK_NAME, text]])
        (folder / CSV_NAME).write_text(rows.getvalue(), encoding="utf-8")
        (folder / SETTINGS_NAME).write_text(yaml.safe_dump(settings, sort_keys=True), encoding="utf-8")
        return submit_batch(storage, folder, user, None, launcher, origin=QUICK_ORIGIN)


def _more_of(storage: AssetStorage, key: str, launcher: RunLauncher) -> str:
    batch: BatchInput = open_batch(storage, key)
    if batch.origin != QUICK_ORIGIN:
        raise ValueError(f"batch {key!r} is not a quick generate batch (its origin is {batch.origin!r}); "
                         "add variations to other batches with `assetql more`")
    run = launcher.latest_run(key)
    if run is not None and run_status(run.status) in ("queued", "running"):
        raise ValueError(f"batch {key!r} has a run {run_status(run.status)} ({run.run_id}); generate more when it has ended")
    try:
        extend_batch(storage, key, QUICK_VARIATIONS)
    except ValueError as full:
        raise ValueError(f"{full}; start a new quick generate for more") from None
    launcher.add_partition(key)
    launcher.launch(key, origin=QUICK_ORIGIN, priority=run_priority(batch.settings.priority))
    return key
