"""Turning a batch folder into a registered, immutable batch.

Registration validates the batch (before any model loads) — the only time its CSV, settings and
references are checked — copies its files into storage under `batches/{key}/source/` and its
references under `style-references/{key}/`, and only then writes the typed `BatchInput` record
`batches/{key}/source.json`, which marks the registration complete. Every stage starts from that
record, so editing or deleting the original folder can never change a registered batch.

A batch whose `style` names a style profile is registered as derived from it (`resolve_style`): its
batch.yaml pins the profile version then in use (`brand-x` becomes `brand-x@2`) and its references
are that version's, so creating later versions never changes a registered batch either.

A batch whose `campaign` names a campaign profile of $ASSETQL_CAMPAIGNS is registered with that
campaign applied (`campaign_overrides`): its brand colours, palette lock, modifiers, exports and
settings, and its style_profile's references when the batch has neither references nor `style` of
its own. What the batch's batch.yaml sets itself wins, except modifiers, which are appended to.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

import yaml

from assetql_dagster.domain.batch_loader import (
    CSV_NAME,
    REFERENCES_DIR,
    SETTINGS_NAME,
    BatchSource,
    load_batch,
)
from assetql_dagster.domain.campaigns import Campaign, campaign_overrides
from assetql_dagster.domain.errors import BatchValidationError, Problem
from assetql_dagster.domain.layout import batch_partition_key, record_key, reference_key, source_key
from assetql_dagster.domain.links import parse_expiry
from assetql_dagster.domain.records import BatchInput
from assetql_dagster.domain.seasons import AUTO, season_for
from assetql_dagster.pipeline.campaigns import find_campaign
from assetql_dagster.pipeline.exporters.registry import export_problems
from assetql_dagster.pipeline.profiles import own_settings, copy_profile_references, resolve_style
from assetql_dagster.pipeline.records import read_record_at, write_record
from resources.models import missing_adapter, missing_model, remote_model
from resources.storage import AssetStorage


@dataclasses.dataclass(frozen=True)
class Registration:
    key: str
    source: BatchSource
    created: bool


def default_partition_key(source: BatchSource) -> str:
    return batch_partition_key(source.name, source.content_hash)


def register_batch(
    storage: AssetStorage,
    path: Path,
    origin: str | None = None,
    overrides: Mapping[str, object] | None = None,
    references: Path | None = None,
    partition_key: Callable[[BatchSource], str] = default_partition_key,
    models_dir: str | None = None,
    creator: str = "",
    campaign: str = "",
) -> Registration:
    """Validate `path` and snapshot it into storage; registering the same content again is a no-op.

    `overrides` replace settings of the batch's batch.yaml and `references` replaces its
    references folder; a `campaign` setting is applied from its campaign profile, then a `style`
    setting is resolved against the stored style profiles. The snapshot then holds the derived
    batch. `creator` and `campaign` are kept with it (the first registration's, when the same
    content comes again): `campaign` names the campaign the caller applied through `overrides`
    itself (a campaign schedule), else the batch.yaml's campaign is applied and kept.
    """
    path = Path(path)
    origin = origin or str(path.resolve())
    if overrides is None and references is None:
        source = check_batch(path, models_dir, campaign)
        if source.settings.style is None and source.settings.campaign in (None, campaign):
            return _snapshot(storage, source, origin, partition_key, {"creator": creator, "campaign": campaign})
    else:
        load_batch(path)  # problems are reported against the user's own files first
    with tempfile.TemporaryDirectory(prefix="assetql-derived-") as tmp:
        if overrides is not None or references is not None:
            path = derive_batch(path, Path(tmp) / "given", overrides or {}, references)
            source = check_batch(path, models_dir, campaign)
        if source.settings.campaign not in (None, campaign):
            profile = _batch_campaign(source)
            path = derive_batch(
                path, Path(tmp) / "campaign", campaign_overrides(profile, source.settings, _file(source),
                                                                 own_settings(source)),
                _campaign_references(storage, profile, source, Path(tmp)),
            )
            campaign = profile.name
            source = check_batch(path, models_dir, campaign)
        if source.settings.style is not None:
            style = resolve_style(storage, source)
            profile_references = None
            if style.profile is not None:
                profile_references = Path(tmp) / "profile-references"
                copy_profile_references(storage, style.profile, profile_references)
            path = derive_batch(path, Path(tmp) / "styled", style.settings, profile_references)
            source = check_batch(path, models_dir, campaign)
        return _snapshot(storage, source, origin, partition_key, {"creator": creator, "campaign": campaign})


def _file(source: BatchSource) -> str:
    return source.settings_path.name if source.settings_path else SETTINGS_NAME


def _batch_campaign(source: BatchSource) -> Campaign:
    """The campaign profile the batch's `campaign` setting names (BatchValidationError when unknown)."""
    return find_campaign(source.settings.campaign, _file(source))


def reference_batch(storage: AssetStorage, name: str) -> str:
    """The partition whose stored style references `name` means: that partition key, or the
    newest registered batch of that name."""
    stored = {key.split("/")[1] for key in storage.list_keys("style-references")}
    if name in stored:
        return name
    # Partition keys are "{slug}-{8 hex}"; a batch name maps to the slug.
    slug = batch_partition_key(name, "0" * 8)[:-8]
    matches = [key for key in stored if key.startswith(slug) and len(key) == len(slug) + 8]
    if not matches:
        raise ValueError(
            f"style_profile {name!r} names no batch with stored style references under "
            f"'style-references/' (found {sorted(stored) or 'none'}); materialize that batch first "
            "or give a references folder"
        )
    return max(matches, key=lambda key: registered_batch(storage, key).registered_at)


def campaign_references(campaign: Campaign, storage: AssetStorage, target: Path) -> Path | None:
    """The references folder of the campaign's style_profile (copied under `target` when it names a
    batch), or None when it has none."""
    profile = campaign.style_profile
    if profile is None:
        return None
    # load_campaigns made folders absolute; a bare word names a batch.
    if "/" in profile:
        return Path(profile)
    folder = target / "style-references"
    copy_stored(storage, reference_key(reference_batch(storage, profile), ""), folder)
    return folder


def _campaign_references(storage: AssetStorage, campaign: Campaign, source: BatchSource, target: Path) -> Path | None:
    """The campaign's references for a batch naming it: none when the batch brings its own
    references or `style`, whose explicit choice wins."""
    if source.reference_paths or source.settings.style is not None:
        return None
    try:
        return campaign_references(campaign, storage, target)
    except ValueError as error:
        message = f"campaign {campaign.name!r}: {error}"
        raise BatchValidationError([Problem(_file(source), message, column="campaign")]) from None


def check_batch(path: Path, models_dir: str | None = None, applied_campaign: str = "") -> BatchSource:
    """`load_batch`, also checking that the batch's model and adapters are on this machine (in `models_dir`)
    and that its `campaign` is a campaign profile of $ASSETQL_CAMPAIGNS (unless it is `applied_campaign`,
    the one the caller applies itself)."""
    source = load_batch(path, missing_model=lambda model: missing_model(model, models_dir))
    settings, file = source.settings, _file(source)
    adapters = [("ip_adapter", settings.ip_adapter, "ip_adapter")] if settings.ip_adapter else []
    adapters += [("lora", lora, "lora") for lora, _ in settings.lora]
    if remote_model(settings.model) is not None:
        # A remote endpoint draws with its own weights: found here, not when the first shard starts.
        problems = [Problem(file, f"remote model {settings.model!r} takes no {column}; leave it out", column=column)
                    for column in dict.fromkeys(column for column, _, _ in adapters)]
    else:
        problems = [
            Problem(file, message, column=column)
            for column, adapter, kind in adapters
            if (message := missing_adapter(adapter, kind, models_dir))
        ]
    # Which exporters exist depends on what is installed here, as the model does.
    problems += export_problems(settings, file)
    if settings.season == AUTO:
        try:  # the registration day is today: what `auto` will pick must be known
            season_for(datetime.now(timezone.utc).date(), settings.region)
        except ValueError as error:
            problems.append(Problem(file, str(error), column="season"))
    if settings.palette == "season" and settings.season is None:
        problems.append(Problem(file, "is 'season' but the batch names no season; set 'season' (or 'auto' "
                                      "with 'region') or give the colours", column="palette"))
    if settings.campaign not in (None, applied_campaign):
        try:
            _batch_campaign(source)
        except BatchValidationError as error:
            problems += error.problems
    if problems:
        raise BatchValidationError(problems)
    return source


def check_links(storage: AssetStorage, source: BatchSource) -> None:
    """BatchValidationError when `storage` cannot make links lasting the batch's `link_expiry` (30d without CDN)."""
    settings = source.settings
    try:
        storage.link_signing(parse_expiry(settings.link_expiry))
    except ValueError as error:
        file = source.settings_path.name if source.settings_path else SETTINGS_NAME
        message = f"{settings.link_expiry!r} cannot be served by this storage: {error}"
        raise BatchValidationError([Problem(file, message, column="link_expiry")]) from None


def _snapshot(
    storage: AssetStorage, source: BatchSource, origin: str, partition_key: Callable[[BatchSource], str],
    made_by: Mapping[str, str],
) -> Registration:
    # Checked here, the one step every registration passes, before anything is stored.
    check_links(storage, source)
    key = partition_key(source)
    marker = record_key(key, "source")
    if storage.exists(marker):
        return Registration(key, source, created=False)
    storage.write_bytes(source_key(key, CSV_NAME), source.csv_path.read_bytes(), "text/csv")
    if source.settings_path is not None:
        storage.write_bytes(source_key(key, SETTINGS_NAME), source.settings_path.read_bytes())
    references = tuple(reference_key(key, ref.name) for ref in source.reference_paths)
    for ref, ref_key in zip(source.reference_paths, references):
        storage.write_bytes(ref_key, ref.read_bytes())
    batch = BatchInput(
        batch=key,
        name=source.name,
        origin=origin,
        content_hash=source.content_hash,
        registered_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        settings=source.settings,
        references=references,
        rows=source.rows,
        **made_by,
    )
    write_record(storage, marker, batch)
    return Registration(key, source, created=True)


def derive_batch(
    path: Path, target: Path, overrides: Mapping[str, object], references: Path | None
) -> Path:
    """A batch folder under `target` with `path`'s CSV, its settings updated by `overrides`, and
    the references of `references` (else `path`'s own)."""
    csv_path, folder = (path / CSV_NAME, path) if path.is_dir() else (path, path.parent)
    derived = target / (path.name if path.is_dir() else path.stem)
    derived.mkdir(parents=True)
    shutil.copyfile(csv_path, derived / CSV_NAME)
    settings_path = folder / SETTINGS_NAME
    settings = yaml.safe_load(settings_path.read_text(encoding="utf-8-sig")) if settings_path.exists() else None
    settings = {**(settings or {}), **overrides}
    if settings:
        (derived / SETTINGS_NAME).write_text(yaml.safe_dump(settings, sort_keys=True), encoding="utf-8")
    own = folder / REFERENCES_DIR
    if references is not None or own.exists():
        shutil.copytree(own if references is None else references, derived / REFERENCES_DIR)
    return derived


def copy_stored(storage: AssetStorage, prefix: str, folder: Path) -> None:
    """Write every object under `prefix` into `folder`, at its key relative to `prefix`."""
    for key in storage.list_keys(prefix):
        path = folder / key[len(prefix):]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(storage.read_bytes(key))


def registered_batch(storage: AssetStorage, key: str) -> BatchInput:
    """The `BatchInput` that registration stored for partition `key`."""
    return read_record_at(
        storage,
        record_key(key, "source"),
        f"batch partition {key!r} has no registered source; register the batch first: launch the "
        "register_batch job from the Launchpad, `assetql run PATH`, or drop it into the inbox / S3",
    )
