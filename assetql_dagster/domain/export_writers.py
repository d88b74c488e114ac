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

from assetql_dagster.domain.style_report import (
    MAX_STYLE_CV,
    Drift,
    StyleReport,
    distribution_svg,
    drift_text,
    percent,
)

# What an export can contain: the ZIP package (images, manifests and gallery inside), the standalone
# manifest CSV/JSON, the standalone gallery page, and the links manifest.
EXPORT_FORMATS = ("zip", "manifest", "gallery", "links")

MANIFEST_COLUMNS = [
    "batch",
    "variant_id",
    "variation",
    "file_name",
    "prompt",
    "model_prompt",
    "prompt_tokens_dropped",
    "negative_prompt",
    "seed",
    "model",
    "width",
    "height",
    "steps",
    "guidance_scale",
    "style_score",
    "palette_score",
    "lighting_score",
    "composition_score",
    "texture_score",
    "embedding_score",
    "clip_similarity",
    "verdict",
    "version",
    "attempts",
    "tags",
    "category",
    "category_source",
    "tags_localized",
    "category_localized",
    "sku",
    "language",
    "original_prompt",
    "season",
    "campaign",
    "cost_usd",
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
header h1{margin:0 0 .5rem}
.summary{display:flex;flex-wrap:wrap;gap:.6rem;margin:.5rem 0 1rem}
.stat{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.4rem .8rem}
.stat b{display:block;font-size:1.3rem}
.style{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem;margin:.5rem 0}
.style img{height:64px;border-radius:4px;border:1px solid #ddd}
.swatch{display:inline-block;width:2.2rem;height:2.2rem;border-radius:4px;border:1px solid #ccc}
.failed{color:#b71c1c}
details{margin:.5rem 0}
details dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
details dt{font-weight:600}
.controls{margin:1rem 0;display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center}
body>input[type=radio]{display:none}
.controls label{cursor:pointer;padding:.2rem .6rem;border:1px solid #bbb;border-radius:4px;background:#fff}
#all:checked~.controls label[for=all],#pass:checked~.controls label[for=pass],
#review:checked~.controls label[for=review],#plan:checked~.controls label[for=plan],
#best:checked~.controls label[for=best]{background:#222;color:#fff}
#pass:checked~main .card:not(.pass),#review:checked~main .card:not(.review){display:none}
#best:checked~main .card{order:var(--rank)}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:1rem}
figure{margin:0;padding:.5rem;background:#fff;border:1px solid #ddd;border-radius:6px;height:100%;box-sizing:border-box}
figure img{width:100%;height:auto;display:block;image-rendering:auto}
figcaption{font-size:.85rem;margin-top:.4rem;overflow-wrap:anywhere}
.name{font-weight:600}
.badge{display:inline-block;padding:0 .4rem;border-radius:4px;color:#fff;font-size:.75rem}
.badge-pass{background:#2e7d32}.badge-review{background:#ef6c00}.badge-other{background:#757575}
.tags{list-style:none;padding:0;margin:.3rem 0;display:flex;flex-wrap:wrap;gap:.2rem}
.tags li{background:#eee;border-radius:3px;padding:0 .3rem}
.prompt{color:#555;margin:.3rem 0 0}
.version{color:#555;font-size:.8rem}
.report{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6rem .9rem;margin:.5rem 0 1rem}
.report h2{font-size:1.1rem;margin:0 0 .4rem}
.report .summary{margin:.3rem 0 .6rem}
.report .stat.over{border-color:#b71c1c;color:#b71c1c}
.report-body{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
.attempts{border-collapse:collapse;font-size:.85rem}
.attempts caption{text-align:left;font-weight:600;margin-bottom:.2rem}
.attempts td,.attempts th{padding:.1rem .5rem;text-align:left}
.attempts .bar{display:inline-block;height:.7rem;background:#90caf9;vertical-align:middle}
.plot svg{max-width:100%;height:auto}
"""
_BADGE_CLASSES = {"pass": "badge-pass", "review": "badge-review"}
# Tags the gallery shows: below this confidence a CLIP label is more noise than description (the
# manifest keeps them all).
TAG_CONFIDENCE_FLOOR = 0.2
_HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_IMAGE_DATA_URI = re.compile(r"data:image/(png|jpeg|webp);base64,[A-Za-z0-9+/=]+")


def _safe_href(url: str) -> str:
    """`url` if its scheme is a plain link (not e.g. "javascript:"), else ValueError."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in LINK_SCHEMES:
        raise ValueError(f"image link must be relative or use one of {list(LINK_SCHEMES[1:])}, got {url[:200]!r}")
    return url


def _safe_src(url: str) -> str:
    """An image source: a safe link, or an embedded PNG/JPEG/WebP data URI."""
    return url if _IMAGE_DATA_URI.fullmatch(url) else _safe_href(url)


def _tag_labels(tags: object) -> list[str]:
    if isinstance(tags, str):
        return [t for t in tags.split(LIST_SEPARATOR) if t]
    return [_cell_text(t) for t in tags or ()]


def _shown_tag(label: str) -> bool:
    """Whether a "label:0.87" tag clears the confidence floor; tags without a confidence are shown."""
    _, sep, confidence = label.rpartition(":")
    try:
        return not sep or float(confidence) >= TAG_CONFIDENCE_FLOOR
    except ValueError:
        return True


def _version_text(row: Mapping[str, Any]) -> str:
    """"v2 · 3 attempts": which version of the image is exported and how many generations it had."""
    version, attempts = row.get("version"), row.get("attempts")
    parts = []
    if isinstance(version, int) and not isinstance(version, bool):
        parts.append(f"v{version}")
    if isinstance(attempts, int) and not isinstance(attempts, bool):
        parts.append(f"{attempts} attempt" + ("" if attempts == 1 else "s"))
    return " · ".join(parts)


def _figure(row: Mapping[str, Any], href: str, src: str, rank: int) -> str:
    e = html.escape
    name = _cell_text(row.get("file_name"))
    score = row.get("style_score")
    score_text = "no reference" if score is None else f"score {score:.2f}"
    verdict = _cell_text(row.get("verdict"))
    badge = _BADGE_CLASSES.get(verdict, "badge-other")
    tags = "".join(f"<li>{e(label)}</li>" for label in _tag_labels(row.get("tags")) if _shown_tag(label))
    version = _version_text(row)
    return (
        f'<div class="card {e(verdict)}" style="--rank:{rank}">'
        f'<figure><a href="{e(href)}"><img src="{e(src)}" alt="{e(name)}" loading="lazy"></a>'
        f'<figcaption><div class="name">{e(name)}</div>'
        f'<div>{e(score_text)} <span class="badge {badge}">{e(verdict)}</span></div>'
        + (f'<div class="version">{e(version)}</div>' if version else "")
        + f'<ul class="tags">{tags}</ul><p class="prompt">{e(_cell_text(row.get("prompt")))}</p>'
        + "</figcaption></figure></div>"
    )


def _summary(batch_meta: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> str:
    """Counts, verdicts, the spread of style scores and the failed rows, as a row of figures."""
    e = html.escape
    verdicts = [_cell_text(r.get("verdict")) for r in rows]
    scores = [float(r["style_score"]) for r in rows if isinstance(r.get("style_score"), Real)]
    failed = list(batch_meta.get("failed_rows") or [])
    stats = [("images", len(rows)), ("pass", verdicts.count("pass")), ("review", verdicts.count("review"))]
    if scores:
        mean = sum(scores) / len(scores)
        spread = (sum((x - mean) ** 2 for x in scores) / len(scores)) ** 0.5
        stats.append(("style score", f"{mean:.2f} ± {spread:.2f}"))
    else:
        stats.append(("style score", "no reference"))
    stats.append(("failed rows", len(failed)))
    cells = "".join(f'<div class="stat"><b>{e(str(v))}</b>{e(k)}</div>' for k, v in stats)
    failures = "".join(
        f"<li>{e(_cell_text(f.get('variant_id')))} #{e(_cell_text(f.get('variation')))}: "
        f"{e(_cell_text(f.get('reason'))[:300])}</li>"
        for f in failed if isinstance(f, Mapping)
    )
    return f'<div class="summary">{cells}</div>' + (f'<ul class="failed">{failures}</ul>' if failures else "")


def _stat(value: str, label: str, over: bool = False) -> str:
    e = html.escape
    return f'<div class="stat{" over" if over else ""}"><b>{e(value)}</b>{e(label)}</div>'


def _style_report(report: StyleReport, drift: Drift | None) -> str:
    """The style report block: mean ± CV, pass rates around the loop, regeneration time, drift,
    the attempts histogram and the per-parameter box plots (inline SVG)."""
    if report.scored:
        over = report.cv is None or report.cv >= MAX_STYLE_CV
        limit = percent(MAX_STYLE_CV, 0)
        before, after = percent(report.pass_rate_before, 0), percent(report.pass_rate_after, 0)
        stats = [
            _stat(f"{report.mean:.2f} ± {percent(report.cv)}", f"style score mean ± CV (limit < {limit})", over),
            _stat(f"{before} → {after}", "pass rate before → after the loop"),
        ]
    else:
        stats = [_stat("not scored", "no style reference")]
    per_image = report.seconds_per_regenerated_image
    stats += [
        _stat(f"{report.regenerated} of {report.budget}", "regenerated (of the budget)"),
        _stat(
            f"{report.regeneration_seconds:.1f} s",
            "generation time in the loop (GPU)" + (f", {per_image:.2f} s per image" if per_image else ""),
        ),
    ]
    if drift is not None:
        if drift.score_delta is not None and drift.centroid_distance is not None:
            stats.append(_stat(
                f"{drift.score_delta:+.3f} / {drift.centroid_distance:.3f}",
                f"drift: mean score / centroid distance vs {len(drift.compared)} earlier batch(es) of {drift.profile}",
                not drift.passed,
            ))
        else:
            stats.append(_stat("no drift", drift_text(drift)))
    most = max(report.attempts.values(), default=0) or 1
    histogram = "".join(
        f'<tr><td>{attempts}</td><td>{count}</td>'
        f'<td><span class="bar" style="width:{round(120 * count / most)}px"></span></td></tr>'
        for attempts, count in sorted(report.attempts.items())
    )
    attempts = (
        '<table class="attempts"><caption>attempts per image</caption>'
        f"<tr><th>generations</th><th>images</th><th></th></tr>{histogram}</table>"
    )
    plot = distribution_svg(report)
    figure = f'<figure class="plot">{plot}</figure>' if plot else ""
    return (
        f'<section class="report"><h2>Style report</h2><div class="summary">{"".join(stats)}</div>'
        f'<div class="report-body">{attempts}{figure}</div></section>'
    )


def _style(palette: Iterable[tuple[str, float]], references: Iterable[str]) -> str:
    e = html.escape
    refs = "".join(f'<img src="{e(_safe_src(src))}" alt="style reference">' for src in references)
    swatches = "".join(
        f'<span class="swatch" title="{e(hex_color)} {share:.0%}" style="background:{hex_color}"></span>'
        for hex_color, share in palette
        if _HEX_COLOR.fullmatch(hex_color)
    )
    return f'<div class="style">{refs}{swatches}</div>' if refs or swatches else ""


def gallery_html(
    batch_meta: Mapping[str, Any],
    rows: Iterable[Mapping[str, Any]],
    image_href: Callable[[Mapping[str, Any]], str],
    thumb_src: Callable[[Mapping[str, Any]], str] | None = None,
    palette: Iterable[tuple[str, float]] = (),
    references: Iterable[str] = (),
    style_report: StyleReport | None = None,
    drift: Drift | None = None,
    title: str | None = None,
) -> str:
    """Self-contained static HTML page (no scripts, no external resources) showing every image.

    A summary (images, verdicts, style score mean ± spread, failed rows) and the style references
    and palette come first; verdict filters and a best-score-first order work by CSS alone. Each
    image links to `image_href(row)` and shows `thumb_src(row)` (default: the image itself), which
    may be an embedded data URI so the page also works on its own. With `style_report` (and the
    batch's `drift`), a "Style report" block follows the summary, and each card shows its version
    and attempts when the rows have them. `title` defaults to "Batch {batch}".
    """
    e = html.escape
    rows = list(rows)
    title = title or f"Batch {_cell_text(batch_meta.get('batch', ''))}".strip()
    details = "".join(
        f"<dt>{e(str(k))}</dt><dd>{e(_cell_text(v))}</dd>" for k, v in batch_meta.items() if k != "failed_rows"
    )
    by_score = sorted(range(len(rows)), key=lambda i: -(rows[i].get("style_score") or -1.0))
    rank = {index: position for position, index in enumerate(by_score)}
    figures = "\n".join(
        _figure(row, _safe_href(image_href(row)), _safe_src((thumb_src or image_href)(row)), rank[i])
        for i, row in enumerate(rows)
    )
    controls = (
        '<input type="radio" name="v" id="all" checked><input type="radio" name="v" id="pass">'
        '<input type="radio" name="v" id="review"><input type="radio" name="o" id="plan" checked>'
        '<input type="radio" name="o" id="best">'
        '<div class="controls">show <label for="all">all</label><label for="pass">pass</label>'
        '<label for="review">review</label> order <label for="plan">as planned</label>'
        '<label for="best">best score first</label></div>'
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_GALLERY_CSS}</style></head>\n"
        f"<body><header><h1>{e(title)}</h1>{_summary(batch_meta, rows)}"
        f"{_style_report(style_report, drift) if style_report else ''}{_style(palette, references)}"
        f"<details><summary>batch details</summary><dl>{details}</dl></details></header>\n"
        f"{controls}\n<main>\n{figures}\n</main></body></html>\n"
    )
