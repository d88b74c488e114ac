"""Export formats for a finished batch: CSV and JSON manifests, a ZIP package and a static HTML gallery."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from numbers import Real
from os import PathLike
from typing import IO, Any
from urllib.parse import urlsplit

# What an export can contain: the ZIP package (images, manifests and gallery inside), the standalone
# manifest CSV/JSON, the standalone gallery page, and the links manifest.
EXPORT_FORMATS = ("zip", "manifest", "gallery", "links")

MANIFEST_COLUMNS = [
    "batch",
    "variant_id",
    "variation",
    "file_name",
    "prompt",
    "negative_prompt",
    "seed",
    "model",
    "width",
    "height",
    "steps",
    "guidance_scale",
    "style_score",
    "clip_similarity",
    "color_similarity",
    "verdict",
    "tags",
    "category",
    "sku",
    "language",
    "extra",
]
LIST_SEPARATOR = "; "
# OWASP CSV injection: spreadsheet apps treat cells starting with these as formulas.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Already-compressed formats gain nothing from DEFLATE.
STORED_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
LINK_SCHEMES = ("", "http", "https", "file")

_DRIVE = re.compile(r"^[A-Za-z]:")


def _json_default(value: object) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} value {value!r} as JSON")


def _dumps(value: object, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=indent, default=_json_default)


def _cell_text(value: object) -> str:
    """Text of a manifest value: lists joined with "; ", dicts as JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return _dumps(value)
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(_cell_text(item) for item in value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def neutralize_cell(value: object) -> str:
    """CSV cell text that a spreadsheet cannot run as a formula (leading apostrophe when risky)."""
    text = _cell_text(value)
    # Numbers cannot carry a formula, and quoting "-0.5" would turn it into text in a spreadsheet.
    if isinstance(value, Real) and not isinstance(value, bool):
        return text
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def write_manifest_csv(rows: Iterable[Mapping[str, Any]], columns: list[str]) -> bytes:
    """UTF-8 CSV with a header of `columns` and one neutralised line per row; other keys are ignored."""
    if not columns:
        raise ValueError("manifest CSV needs at least one column, got none")
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise ValueError(f"manifest CSV columns must be unique, got duplicates {duplicates}")
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow([neutralize_cell(c) for c in columns])
    for row in rows:
        writer.writerow([neutralize_cell(row.get(c)) for c in columns])
    return buffer.getvalue().encode("utf-8")


def manifest_json(rows: Iterable[Mapping[str, Any]], batch_meta: Mapping[str, Any]) -> bytes:
    """Pretty-printed UTF-8 JSON {"batch": batch_meta, "images": rows}; values are kept as data."""
    document = {"batch": dict(batch_meta), "images": [dict(row) for row in rows]}
    return (_dumps(document, indent=2) + "\n").encode("utf-8")


def safe_zip_entry(name: str) -> str:
    """`name` unchanged if it is a safe relative "/"-separated ZIP entry name, else ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"ZIP entry name must be a non-empty string, got {name!r}")
    if "\\" in name:
        raise ValueError(f"ZIP entry name must use '/' separators, not backslashes: {name!r}")
    if name.startswith("/") or _DRIVE.match(name):
        raise ValueError(f"ZIP entry name must be relative, got absolute path {name!r}")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"ZIP entry name must not contain empty, '.' or '..' components: {name!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"ZIP entry name must not contain control characters: {name!r}")
    return name


class ZipPackage:
    """ZIP archive written entry by entry to a path or binary file; use as a context manager."""

    def __init__(self, target: str | PathLike[str] | IO[bytes]):
        self._zip = zipfile.ZipFile(target, mode="w")
        self._names: list[str] = []
        self._folded: set[str] = set()

    def add_bytes(self, name: str, data: bytes) -> None:
        """Add one entry; images are stored as is, everything else deflated."""
        safe_zip_entry(name)
        # Case-insensitive file systems would silently merge entries differing only in case.
        if name.casefold() in self._folded:
            raise ValueError(f"ZIP entry {name!r} was already added (names are compared case-insensitively)")
        stored = name.lower().endswith(STORED_EXTENSIONS)
        self._zip.writestr(name, data, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        self._names.append(name)
        self._folded.add(name.casefold())

    @property
    def names(self) -> list[str]:
        """Entry names in the order they were added."""
        return list(self._names)

    def close(self) -> None:
        """Write the central directory; further calls do nothing."""
        self._zip.close()

    def __enter__(self) -> ZipPackage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_GALLERY_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;background:#fafafa}
header dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
header dt{font-weight:600}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:1rem}
figure{margin:0;padding:.5rem;background:#fff;border:1px solid #ddd;border-radius:6px}
figure img{width:100%;height:auto;display:block}
figcaption{font-size:.85rem;margin-top:.4rem;overflow-wrap:anywhere}
.name{font-weight:600}
.badge{display:inline-block;padding:0 .4rem;border-radius:4px;color:#fff;font-size:.75rem}
.badge-pass{background:#2e7d32}.badge-review{background:#ef6c00}.badge-other{background:#757575}
.tags{list-style:none;padding:0;margin:.3rem 0;display:flex;flex-wrap:wrap;gap:.2rem}
.tags li{background:#eee;border-radius:3px;padding:0 .3rem}
.prompt{color:#555;margin:.3rem 0 0}
"""
_BADGE_CLASSES = {"pass": "badge-pass", "review": "badge-review"}


def _safe_href(url: str) -> str:
    """`url` if its scheme is a plain link (not e.g. "javascript:"), else ValueError."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in LINK_SCHEMES:
        raise ValueError(f"image link must be relative or use one of {list(LINK_SCHEMES[1:])}, got {url!r}")
    return url


def _tag_labels(tags: object) -> list[str]:
    if isinstance(tags, str):
        return [t for t in tags.split(LIST_SEPARATOR) if t]
    return [_cell_text(t) for t in tags or ()]


def _figure(row: Mapping[str, Any], href: str) -> str:
    e = html.escape
    name = _cell_text(row.get("file_name"))
    score = row.get("style_score")
    score_text = "no reference" if score is None else f"score {score:.2f}"
    verdict = _cell_text(row.get("verdict"))
    badge = _BADGE_CLASSES.get(verdict, "badge-other")
    tags = "".join(f"<li>{e(label)}</li>" for label in _tag_labels(row.get("tags")))
    return (
        f'<figure><a href="{e(href)}"><img src="{e(href)}" alt="{e(name)}" loading="lazy"></a>'
        f'<figcaption><div class="name">{e(name)}</div>'
        f'<div>{e(score_text)} <span class="badge {badge}">{e(verdict)}</span></div>'
        f'<ul class="tags">{tags}</ul><p class="prompt">{e(_cell_text(row.get("prompt")))}</p>'
        "</figcaption></figure>"
    )


def gallery_html(
    batch_meta: Mapping[str, Any],
    rows: Iterable[Mapping[str, Any]],
    image_href: Callable[[Mapping[str, Any]], str],
) -> str:
    """Self-contained static HTML page (no scripts, no external resources) showing every image."""
    e = html.escape
    title = f"Batch {_cell_text(batch_meta.get('batch', ''))}".strip()
    meta = "".join(f"<dt>{e(str(k))}</dt><dd>{e(_cell_text(v))}</dd>" for k, v in batch_meta.items())
    figures = "\n".join(_figure(row, _safe_href(image_href(row))) for row in rows)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_GALLERY_CSS}</style></head>\n"
        f"<body><header><h1>{e(title)}</h1><dl>{meta}</dl></header>\n"
        f"<main>\n{figures}\n</main></body></html>\n"
    )
