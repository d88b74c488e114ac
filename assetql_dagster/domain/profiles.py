"""Style profiles: named, versioned sets of style references with the scoring settings that go with them.

A `StyleProfileSpec` is one version of a profile, as `pipeline/profiles.py` stores it in
`style-profiles/{name}/v{N}/profile.json`. Versions are never edited: every change is a new version,
and a batch pins the version it uses when it is registered. The built-in presets (PRESETS) are the
prompt-only kind of profile; `style_refs.py` holds them and the `brand-x@2` syntax.
"""

from __future__ import annotations

import dataclasses
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from assetql_dagster.domain.batch_loader import MAX_REFERENCES
from assetql_dagster.domain.scoring import parameter_weights
from assetql_dagster.domain.settings import identifier_error
from assetql_dagster.domain.style_refs import PRESETS, StyleRef, parse_style, parse_style_ref
from assetql_dagster.domain.validation import check_int, check_unit

CREATED_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_NOTES = 2_000
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def parse_ref(text: object) -> StyleRef:
    """`brand-x`, `brand-x@2` or `preset:watercolor`, profile names following the batch-name rule."""
    return parse_style_ref(text, identifier_error)


def parse_batch_style(value: object) -> tuple[StyleRef, ...]:
    """The entries of a checked `style` setting (see style_refs.parse_style)."""
    return parse_style(value, identifier_error)


@dataclass(frozen=True)
class ProfileReference:
    """One reference image of a profile version: its storage key and the sha256 of its bytes."""

    key: str
    sha256: str

    @property
    def file_name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class StyleProfileSpec:
    """One version of a style profile; constructing it checks every field (ValueError)."""

    name: str
    version: int
    created_at: str
    references: tuple[ProfileReference, ...]
    # Parameter locks 0-100 (see scoring.parameter_weights) and the pass threshold that batches
    # using the profile take unless their batch.yaml sets `locks` / `style_threshold` itself.
    locks: dict[str, int] = field(default_factory=dict)
    threshold: float | None = None
    notes: str = ""
    preset: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"profile name must be text, got {reprlib.repr(self.name)}")
        problem = identifier_error(self.name, "profile name")
        if problem:
            raise ValueError(problem)
        check_int("profile version", self.version, 1)
        try:
            datetime.strptime(self.created_at, CREATED_AT_FORMAT)
        except (TypeError, ValueError):
            raise ValueError(
                f"created_at must be a UTC time like '2025-01-31T12:00:00Z', got {reprlib.repr(self.created_at)}"
            ) from None
        self._check_references()
        if not isinstance(self.locks, Mapping):
            raise ValueError(f"locks must be a mapping of parameter to 0-100, got {reprlib.repr(self.locks)}")
        parameter_weights(self.locks)  # raises naming an unknown parameter or a lock out of range
        if self.threshold is not None:
            check_unit("threshold", self.threshold)
        if not isinstance(self.notes, str) or len(self.notes) > MAX_NOTES:
            raise ValueError(f"notes must be text of at most {MAX_NOTES:,} characters, got {reprlib.repr(self.notes)}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {reprlib.repr(self.preset)}; expected one of {', '.join(PRESETS)}")
        # Normalisation only: JSON gives lists for tuples and may give ints for whole floats.
        object.__setattr__(self, "references", tuple(self.references))
        object.__setattr__(self, "locks", dict(self.locks))
        if self.threshold is not None:
            object.__setattr__(self, "threshold", float(self.threshold))

    def _check_references(self) -> None:
        refs = self.references
        if not isinstance(refs, (list, tuple)) or not 1 <= len(refs) <= MAX_REFERENCES:
            raise ValueError(f"a profile has 1 to {MAX_REFERENCES} references, got {reprlib.repr(refs)}")
        for ref in refs:
            if not isinstance(ref, ProfileReference) or not _SHA256_RE.fullmatch(str(ref.sha256)):
                raise ValueError(f"reference {reprlib.repr(ref)} must have a storage key and a sha256 hex digest")
        names = [ref.file_name for ref in refs]
        if len(set(names)) != len(names):
            raise ValueError(f"reference file names repeat: {reprlib.repr(names)}")

    @property
    def ref(self) -> str:
        """`name@version`, as a batch's `style` pins it."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, object]:
        """JSON-safe fields; `from_dict` reverses it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> StyleProfileSpec:
        """A spec from `to_dict` output (e.g. a stored profile.json), checked like a new one."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a style profile must be a JSON object, got {reprlib.repr(data)}")
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields]
        unknown = sorted(str(key) for key in data if key not in names)
        if unknown:
            raise ValueError(f"unknown style profile field(s) {reprlib.repr(unknown)}; expected among {names}")
        missing = [
            f.name for f in fields
            if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"incomplete style profile: missing {missing}")
        refs = data.get("references")
        if not isinstance(refs, (list, tuple)) or not all(
            isinstance(r, Mapping) and set(r) == {"key", "sha256"} for r in refs
        ):
            raise ValueError(f"references must be a list of {{key, sha256}} objects, got {reprlib.repr(refs)}")
        return cls(**{**data, "references": tuple(ProfileReference(**r) for r in refs)})


def _locks_text(locks: Mapping[str, int], name: str) -> str:
    return str(locks[name]) if name in locks else "none"


def _threshold_text(threshold: float | None) -> str:
    return "the batch's own" if threshold is None else f"{threshold:g}"


def diff_profiles(a: StyleProfileSpec, b: StyleProfileSpec) -> list[str]:
    """What changed from `a` to `b`, one human-readable line per difference (none when equal).

    References are compared by content: a renamed file with the same bytes is not a difference.
    """
    changes: list[str] = []
    before = {ref.sha256: ref for ref in a.references}
    after = {ref.sha256: ref for ref in b.references}
    changes += [f"reference removed: {ref.file_name} (sha256 {h[:12]})" for h, ref in before.items() if h not in after]
    changes += [f"reference added: {ref.file_name} (sha256 {h[:12]})" for h, ref in after.items() if h not in before]
    for name in sorted(set(a.locks) | set(b.locks)):
        if a.locks.get(name) != b.locks.get(name):
            changes.append(f"lock {name}: {_locks_text(a.locks, name)} -> {_locks_text(b.locks, name)}")
    if a.threshold != b.threshold:
        changes.append(f"threshold: {_threshold_text(a.threshold)} -> {_threshold_text(b.threshold)}")
    if a.preset != b.preset:
        changes.append(f"preset: {a.preset or 'none'} -> {b.preset or 'none'}")
    if a.notes != b.notes:
        changes.append(f"notes: {reprlib.repr(a.notes)} -> {reprlib.repr(b.notes)}")
    return changes

