"""File names for generated images from a user pattern such as "{batch}_{variant_id}_{hash}".

Patterns are parsed here rather than with str.format, so a pattern can only name plain
placeholders and never reach attributes or indexes ("{0.__class__}" is rejected).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

from assetql_dagster.domain.validation import check_int

DEFAULT_PATTERN = "{batch}_{variant_id}_{timestamp}_{hash}"
BUILTIN_PLACEHOLDERS = frozenset(
    {"batch", "variant_id", "variation", "timestamp", "hash", "seq", "category", "sku"}
)
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
HASH_LENGTH = 8
MAX_STEM_LENGTH = 80

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
# Windows refuses these as file names whatever the extension, so an extracted ZIP would break.
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
)


def _parse(pattern: str) -> list[str]:
    """Pattern split into alternating literal text and placeholder names (odd indexes)."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"naming pattern must be a non-empty string, got {pattern!r}")
    parts = _PLACEHOLDER.split(pattern)
    for i, part in enumerate(parts):
        if i % 2 and not _NAME.fullmatch(part):
            raise ValueError(
                f"invalid placeholder '{{{part}}}' in naming pattern {pattern!r}: "
                "placeholders are plain names of letters, digits and underscores, like {batch}"
            )
        if not i % 2 and ("{" in part or "}" in part):
            raise ValueError(f"unbalanced brace in naming pattern {pattern!r} near {part!r}")
    return parts


def available_placeholders(extra_columns: Iterable[str] = ()) -> set[str]:
    """Placeholders a pattern may use: the built-in ones plus the input's extra column names."""
    return set(BUILTIN_PLACEHOLDERS) | set(extra_columns)


def _parse_known(pattern: str, available: set[str]) -> list[str]:
    """Parsed pattern (see _parse), after checking every placeholder is in `available`."""
    parts = _parse(pattern)
    for name in parts[1::2]:
        if name not in available:
            allowed = ", ".join(f"{{{a}}}" for a in sorted(available))
            raise ValueError(
                f"unknown placeholder '{{{name}}}' in naming pattern {pattern!r}; allowed: {allowed}"
            )
    return parts


def validate_pattern(pattern: str, available: set[str]) -> None:
    """Raise ValueError if `pattern` is malformed or names a placeholder not in `available`."""
    _parse_known(pattern, available)


def _portable(s: str) -> str:
    """`s` as a portable, traversal-free file name part of [A-Za-z0-9._-], however long; may be empty."""
    # NFKD folds compatibility forms (as NFKC does) and also splits accents off letters,
    # so "Café" keeps its "e" instead of becoming "Caf-".
    decomposed = unicodedata.normalize("NFKD", str(s))
    text = "".join(c for c in decomposed if not unicodedata.combining(c))
    text = _UNSAFE_RUN.sub("-", text)
    text = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", ".", text))
    head, dot, tail = text.strip(".-").partition(".")
    if head.upper() in _WINDOWS_RESERVED:
        head += "-x"
    return f"{head}{dot}{tail}"


def sanitize_component(s: str) -> str:
    """Portable, traversal-free file name part: [A-Za-z0-9._-] only, at most 80 chars, never empty."""
    return _portable(s)[:MAX_STEM_LENGTH].rstrip(".-") or "x"


def check_literal_text(pattern: str) -> None:
    """ValueError when the text of `pattern` outside its placeholders holds a character a file name
    cannot (a path separator, a space, ...): such a pattern is refused rather than quietly changed."""
    literal = "".join(_parse(pattern)[::2])
    unsafe = sorted({c for c in literal if _UNSAFE_RUN.fullmatch(c)})
    if unsafe:
        shown = " ".join(repr(c) for c in unsafe)
        raise ValueError(
            f"naming pattern {pattern!r} has {shown} outside its placeholders; file names hold only "
            "letters, digits, '.', '_' and '-' (no path separators)"
        )


def render_name(pattern: str, values: Mapping[str, str], *, strict: bool = False) -> str:
    """File name stem (no extension) from `pattern` with placeholders replaced by `values`, sanitised.

    A name longer than MAX_STEM_LENGTH is cut and an empty one becomes "x", unless `strict`, which
    raises ValueError instead: a rename must not make names that collide only because they were cut.
    """
    parts = _parse_known(pattern, set(values))
    rendered = "".join(str(values[part]) if i % 2 else part for i, part in enumerate(parts))
    if strict:
        full = _portable(rendered)
        if not full:
            raise ValueError(f"naming pattern {pattern!r} gives an empty name (its placeholders are empty)")
        if len(full) > MAX_STEM_LENGTH:
            raise ValueError(
                f"naming pattern {pattern!r} gives the name {full[:40]!r}... of {len(full)} characters; "
                f"names are at most {MAX_STEM_LENGTH}"
            )
    return sanitize_component(rendered)


def format_timestamp(moment: datetime) -> str:
    """`moment` in UTC as "YYYYMMDDTHHMMSSZ"; naive datetimes are rejected as ambiguous."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamp must be timezone-aware, got naive datetime {moment.isoformat()}")
    return moment.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)


def format_seq(seq: int) -> str:
    """1-based sequence number zero-padded to 4 digits."""
    check_int("sequence number", seq, 1)
    return f"{seq:04d}"


def image_identity(batch: str, variant_id: str, variation: int, seed: int) -> str:
    """Unambiguous identity of one generated image (JSON, so no separator can be forged)."""
    return json.dumps([batch, variant_id, variation, seed])


def short_hash(identity: str) -> str:
    """First 8 hex characters of the SHA-256 of `identity`."""
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def placeholder_values(
    *,
    batch: str,
    variant_id: str,
    variation: int,
    identity: str,
    created_at: datetime,
    seq: int,
    category: str = "",
    sku: str = "",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every placeholder's value for one image; built-ins win over same-named extra columns."""
    builtins = {
        "batch": batch,
        "variant_id": variant_id,
        "variation": str(variation),
        "timestamp": format_timestamp(created_at),
        "hash": short_hash(identity),
        "seq": format_seq(seq),
        "category": category,
        "sku": sku,
    }
    return {**(extra or {}), **builtins}


class NameAllocator:
    """Hands out file name stems that are unique case-insensitively, suffixing "-2", "-3", ..."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        # Reserved names are never handed out (e.g. names images were renamed to, and their old names).
        self._taken: set[str] = {name.casefold() for name in reserved}
        self._next_suffix: dict[str, int] = {}

    def allocate(self, stem: str) -> str:
        """`stem` sanitised, or the first free "<stem>-N" (N >= 2) if it is already taken."""
        base = sanitize_component(stem)
        candidate = base
        while candidate.casefold() in self._taken:
            n = self._next_suffix.get(base.casefold(), 2)
            self._next_suffix[base.casefold()] = n + 1
            suffix = f"-{n}"
            candidate = base[: MAX_STEM_LENGTH - len(suffix)].rstrip(".-") + suffix
        self._taken.add(candidate.casefold())
        return candidate
