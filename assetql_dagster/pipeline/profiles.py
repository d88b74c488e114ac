"""Style profiles in storage, and what a batch's `style` setting brings to it at registration.

Version N of profile `name` is `style-profiles/{name}/v{N}/profile.json` (a `StyleProfileSpec`) plus
its images under `style-profiles/{name}/v{N}/references/`. A version is never rewritten: creating a
profile whose name exists writes the next version, and profile.json is written after the images, so
only complete versions are listed or read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import yaml

from assetql_dagster.domain.batch_loader import REFERENCES_DIR, SETTINGS_NAME, BatchSource, check_references
from assetql_dagster.domain.errors import BatchValidationError, Problem
from assetql_dagster.domain.profiles import (
    CREATED_AT_FORMAT,
    ProfileReference,
    StyleProfileSpec,
    parse_batch_style,
    parse_ref,
)
from assetql_dagster.domain.settings import identifier_error
from assetql_dagster.domain.style_refs import PRESETS, StyleRef
from resources.storage import AssetStorage

PROFILES_PREFIX = "style-profiles/"
PROFILE_FILE = "profile.json"
_PROFILE_KEY_RE = re.compile(r"style-profiles/([^/]+)/v([1-9][0-9]*)/profile\.json")
# How many existing names an error lists before "and N more".
_MAX_LISTED = 20


class ProfileNotFound(LookupError):
    """No stored profile, or no such version of one; the message says what exists."""


def version_prefix(name: str, version: int) -> str:
    return f"{PROFILES_PREFIX}{name}/v{version}/"


def _stored_versions(storage: AssetStorage, prefix: str = PROFILES_PREFIX) -> dict[str, list[int]]:
    """Complete versions (those with a profile.json) of every profile under `prefix`, ascending."""
    versions: dict[str, list[int]] = {}
    for key in storage.list_keys(prefix):
        match = _PROFILE_KEY_RE.fullmatch(key)
        if match:
            versions.setdefault(match[1], []).append(int(match[2]))
    return {name: sorted(found) for name, found in sorted(versions.items())}


def profile_versions(storage: AssetStorage, name: str) -> list[int]:
    """The stored versions of profile `name`, ascending (empty when there is none)."""
    return _stored_versions(storage, f"{PROFILES_PREFIX}{name}/").get(name, [])


def _listed(items: list[str]) -> str:
    more = len(items) - _MAX_LISTED
    if not items:
        return "none"
    return ", ".join(items[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def get_profile(storage: AssetStorage, ref: str | StyleRef) -> StyleProfileSpec:
    """The profile named by `ref` (`brand-x`: its latest version, `brand-x@2`: version 2).

    Raises ValueError for a malformed name or a preset, ProfileNotFound naming what exists.
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    if ref.preset:
        raise ValueError(f"'{ref}' is a built-in preset, not a stored profile")
    versions = profile_versions(storage, ref.name)
    if not versions:
        names = _listed(list(_stored_versions(storage)))
        raise ProfileNotFound(f"no style profile {ref.name!r} in storage; existing profiles: {names}")
    version = versions[-1] if ref.version is None else ref.version
    if version not in versions:
        existing = _listed([f"{ref.name}@{v}" for v in versions])
        raise ProfileNotFound(f"style profile {ref.name!r} has no version {version}; existing versions: {existing}")
    data = json.loads(storage.read_text(version_prefix(ref.name, version) + PROFILE_FILE))
    return StyleProfileSpec.from_dict(data)


def list_profiles(storage: AssetStorage) -> list[StyleProfileSpec]:
    """The latest version of every stored profile, by name."""
    return [get_profile(storage, StyleRef(name, versions[-1])) for name, versions in _stored_versions(storage).items()]


def create_profile(
    storage: AssetStorage,
    name: str,
    refs_dir: Path,
    locks: Mapping[str, int] | None = None,
    threshold: float | None = None,
    notes: str = "",
    preset: str | None = None,
) -> StyleProfileSpec:
    """Store the images of `refs_dir` as the next version of profile `name` and return it.

    The images are checked exactly like a batch's references/ (BatchValidationError listing every
    problem); a missing or empty folder and invalid fields raise ValueError. Nothing is stored
    unless all of it is valid.
    """
    problem = identifier_error(name, "profile name")
    if problem:
        raise ValueError(problem)
    refs_dir = Path(refs_dir)
    if not refs_dir.exists() and not refs_dir.is_symlink():
        raise ValueError(f"reference folder {str(refs_dir)!r} does not exist")
    # The folder itself is the root: no image may be a link leaving it.
    paths, problems = check_references(refs_dir, refs_dir.resolve())
    # check_references names files as in a batch's references/ folder; name the folder given.
    problems = [dataclasses.replace(p, file=refs_dir.name + p.file[len(REFERENCES_DIR):]) for p in problems]
    if not paths and not problems:
        raise ValueError(
            f"reference folder {str(refs_dir)!r} holds no images; a profile needs 1 to 5 (JPEG, PNG or WebP)"
        )
    if problems:
        raise BatchValidationError(problems)
    versions = profile_versions(storage, name)
    version = versions[-1] + 1 if versions else 1
    prefix = version_prefix(name, version)
    images = {f"{prefix}{REFERENCES_DIR}/{path.name}": path.read_bytes() for path in paths}
    spec = StyleProfileSpec(
        name=name,
        version=version,
        created_at=datetime.now(timezone.utc).strftime(CREATED_AT_FORMAT),
        references=tuple(ProfileReference(key, hashlib.sha256(data).hexdigest()) for key, data in images.items()),
        locks=dict(locks or {}),
        threshold=threshold,
        notes=notes,
        preset=preset,
    )
    marker = prefix + PROFILE_FILE
    # Storage has no create-if-absent, so two creates at once may pick the same version. Checking
    # before the images and again before profile.json keeps a version another create completed from
    # being rewritten, in all but the moments between a check and a write.
    _check_unclaimed(storage, marker, spec)
    for key, data in images.items():
        storage.write_bytes(key, data)
    _check_unclaimed(storage, marker, spec)
    storage.write_text(marker, json.dumps(spec.to_dict(), indent=2) + "\n", "application/json")
    return spec


def _check_unclaimed(storage: AssetStorage, marker: str, spec: StyleProfileSpec) -> None:
    if storage.exists(marker):
        raise FileExistsError(f"profile {spec.ref} was created by another command meanwhile; run the command again")


def copy_profile_references(storage: AssetStorage, spec: StyleProfileSpec, folder: Path) -> None:
    """Write the profile's reference images into `folder`, checking that their bytes are unchanged."""
    folder.mkdir(parents=True, exist_ok=True)
    for ref in spec.references:
        data = storage.read_bytes(ref.key)
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ValueError(
                f"stored reference {ref.key!r} of profile {spec.ref} changed after the profile was created"
            )
        (folder / ref.file_name).write_bytes(data)


@dataclasses.dataclass(frozen=True)
class BatchStyle:
    """A batch's `style` resolved at registration: batch.yaml settings to write, and the profile
    version whose references the batch uses (None for a preset alone)."""

    settings: dict[str, object]
    profile: StyleProfileSpec | None


def _appended(text: str, words: str) -> str:
    return ", ".join(part for part in (text.strip(), words) if part)


def resolve_style(storage: AssetStorage, source: BatchSource) -> BatchStyle:
    """Resolve `source`'s `style` against storage, pinning the profile version in use.

    The pinned `style` names `name@N`; the profile's threshold and locks become `style_threshold`
    and `locks` unless batch.yaml sets them; the preset (the batch's, else the profile's) appends
    its words to `modifiers` and `negative_prompt`. Raises BatchValidationError at batch.yaml's
    `style` for a missing profile or version, and for a batch that also has references of its own.
    """
    file = source.settings_path.name if source.settings_path else SETTINGS_NAME
    refs = parse_batch_style(source.settings.style)
    profile_ref = next((ref for ref in refs if not ref.preset), None)
    preset = next((ref.name for ref in refs if ref.preset), None)
    settings: dict[str, object] = {}
    profile = None
    if profile_ref is not None:
        try:
            profile = get_profile(storage, profile_ref)
        except ProfileNotFound as error:
            raise BatchValidationError([Problem(file, str(error), column="style")]) from None
        if source.reference_paths:
            message = (
                f"names reference profile '{profile_ref}' and the batch has its own {REFERENCES_DIR}/ "
                f"({len(source.reference_paths)} image(s)); remove {REFERENCES_DIR}/ to use the profile's "
                f"references, or remove '{profile_ref}' from 'style' to use the batch's own"
            )
            raise BatchValidationError([Problem(file, message, column="style")])
        pinned = [profile.ref if ref is profile_ref else str(ref) for ref in refs]
        settings["style"] = pinned[0] if isinstance(source.settings.style, str) else pinned
        own = own_settings(source)
        if profile.threshold is not None and "style_threshold" not in own:
            settings["style_threshold"] = profile.threshold
        if profile.locks and "locks" not in own:
            settings["locks"] = profile.locks
        preset = preset or profile.preset
    if preset is not None:
        words = PRESETS[preset]
        settings["modifiers"] = _appended(source.settings.modifiers, words.modifiers)
        settings["negative_prompt"] = _appended(source.settings.negative_prompt, words.negative_prompt)
    return BatchStyle(settings, profile)


def own_settings(source: BatchSource) -> set[str]:
    """The settings the batch's batch.yaml sets itself (already validated, so safe to load)."""
    if source.settings_path is None:
        return set()
    data = yaml.safe_load(source.settings_path.read_text(encoding="utf-8-sig"))
    return set(data or {})
