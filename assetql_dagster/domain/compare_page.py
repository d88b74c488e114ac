"""A standalone HTML page comparing the versions of one image side by side (`assetql versions --html`).

The page is built from the same document `assetql versions --json` prints. It has no scripts and no
external resources: thumbnails come in as embedded data URIs, so the file still works when copied
or mailed on its own. Every value from the batch (prompts, names, reasons) is HTML-escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from numbers import Real
from typing import Any

from assetql_dagster.domain.scoring import PARAMETERS

_IMAGE_DATA_URI = re.compile(r"data:image/(png|jpeg|webp);base64,[A-Za-z0-9+/=]+")
_FILE_URI = re.compile(r"file:///[^\s\"'<>]*")

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;background:#fafafa}
h1{margin:0 0 .3rem;overflow-wrap:anywhere}
.facts{display:flex;flex-wrap:wrap;gap:.5rem;margin:.5rem 0 1.2rem}
.fact{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.3rem .7rem}
.fact b{display:block;font-size:1.1rem}
.versions{display:flex;gap:1rem;overflow-x:auto;align-items:stretch;padding-bottom:.5rem}
.version{flex:0 0 260px;background:#fff;border:1px solid #ddd;border-radius:8px;padding:.6rem;box-sizing:border-box}
.version.current{border:3px solid #2e7d32;box-shadow:0 0 0 3px #c8e6c9}
.version h2{font-size:1.05rem;margin:0 0 .4rem;display:flex;gap:.4rem;align-items:center;flex-wrap:wrap}
.version img{width:100%;height:auto;display:block;border-radius:4px;background:#eee}
.badge{display:inline-block;padding:0 .4rem;border-radius:4px;color:#fff;font-size:.75rem;font-weight:600}
.badge-current{background:#2e7d32}.badge-pass{background:#2e7d32}.badge-review{background:#ef6c00}
.badge-other{background:#757575}.badge-reason{background:#455a64}
.score{font-size:1.4rem;font-weight:700;margin:.4rem 0 .2rem}
.score small{font-size:.75rem;font-weight:400;color:#666}
table{width:100%;border-collapse:collapse;font-size:.85rem}
td{padding:.1rem .2rem;vertical-align:middle}
td.num{text-align:right;font-variant-numeric:tabular-nums;width:3.2rem}
td.meter{width:100%}
td.name{white-space:nowrap;padding-right:.4rem}
.bar{height:.5rem;background:#e0e0e0;border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%;background:#5c6bc0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .6rem;font-size:.85rem;margin:.5rem 0}
dt{color:#666}dd{margin:0;overflow-wrap:anywhere}
.prompt{font-size:.85rem;color:#444;margin:.4rem 0 0;overflow-wrap:anywhere}
.changes{font-size:.9rem}
"""
_VERDICT_BADGES = {"pass": "badge-pass", "review": "badge-review"}


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _number(value: object, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, Real) and not isinstance(value, bool) else "–"


def _bar(value: object) -> str:
    """A bar as wide as a 0-1 score; only a number computed here reaches the style attribute."""
    if not isinstance(value, Real) or isinstance(value, bool):
        return ""
    width = round(max(0.0, min(1.0, float(value))) * 100, 1)
    return f'<div class="bar"><span style="width:{width}%"></span></div>'


def _card(version: Mapping[str, Any], thumb: str | None, link: str | None) -> str:
    e = html.escape
    number = _text(version.get("version"))
    current = bool(version.get("current"))
    verdict = _text(version.get("verdict"))
    scores = version.get("scores") if isinstance(version.get("scores"), Mapping) else {}
    rows = "".join(
        f"<tr><td class=\"name\">{e(name)}</td><td class=\"meter\">{_bar(scores.get(name))}</td>"
        f"<td class=\"num\">{_number(scores.get(name))}</td></tr>"
        for name in PARAMETERS
    )
    rows += (
        f"<tr><td>CLIP cosine</td><td></td><td class=\"num\">{_number(version.get('clip_similarity'))}</td></tr>"
    )
    image = ""
    if thumb is not None and _IMAGE_DATA_URI.fullmatch(thumb):
        image = f'<img src="{e(thumb)}" alt="version {e(number)}">'
        if link is not None and _FILE_URI.fullmatch(link):
            image = f'<a href="{e(link)}">{image}</a>'
    facts = [
        ("seed", _text(version.get("seed"))),
        ("style boost", _number(version.get("style_boost"))),
        ("palette pull", _number(version.get("palette_pull"))),
        ("created", _text(version.get("created_at")) or "–"),
    ]
    details = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts)
    badges = '<span class="badge badge-current">current</span>' if current else ""
    badges += f'<span class="badge badge-reason">{e(_text(version.get("reason")))}</span>'
    verdict_badge = f'<span class="badge {_VERDICT_BADGES.get(verdict, "badge-other")}">{e(verdict)}</span>'
    return (
        f'<section class="version{" current" if current else ""}" id="v{e(number)}">'
        f"<h2>v{e(number)} {badges}</h2>{image}"
        f'<div class="score"><small>style score</small> {_number(version.get("style_score"))} {verdict_badge}</div>'
        f"<table>{rows}</table><dl>{details}</dl>"
        f'<p class="prompt">{e(_text(version.get("prompt")))}</p></section>'
    )


def compare_page_html(
    document: Mapping[str, Any], thumbs: Mapping[int, str], links: Mapping[int, str] | None = None
) -> str:
    """The page for `document` (what `assetql versions --json` prints): one card per version, in
    order, the current one highlighted; `thumbs` are the versions' thumbnails as data URIs and
    `links` (optional, file URIs only) where each full image is."""
    e = html.escape
    links = links or {}
    versions = [v for v in document.get("versions") or () if isinstance(v, Mapping)]
    name = _text(document.get("file_name"))
    manual = document.get("manual_regenerations") if isinstance(document.get("manual_regenerations"), Mapping) else {}
    facts = [
        ("batch", _text(document.get("batch"))),
        ("variant", f"{_text(document.get('variant_id'))} #{_text(document.get('variation'))}"),
        ("current", f"v{_text(document.get('current'))}" + (" (pinned)" if document.get("pinned") else "")),
        ("versions", str(len(versions))),
        ("threshold", _number(document.get("threshold"))),
        ("manual regenerations", f"{_text(manual.get('used'))} of {_text(manual.get('max'))}"),
    ]
    header = "".join(f'<div class="fact"><b>{e(v)}</b>{e(k)}</div>' for k, v in facts)
    cards = "\n".join(
        _card(v, thumbs.get(v.get("version")), links.get(v.get("version"))) for v in versions
    )
    changes = "".join(
        f"<li>{e(_text(c.get('at')))}: {e(_text(c.get('action')))} "
        f"v{e(_text(c.get('from')))} → v{e(_text(c.get('to')))}</li>"
        for c in document.get("changes") or () if isinstance(c, Mapping)
    )
    history = f'<h2>Changes</h2><ul class="changes">{changes}</ul>' if changes else ""
    title = f"{name} — versions"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head>\n"
        f'<body><header><h1>{e(title)}</h1><div class="facts">{header}</div></header>\n'
        f'<main class="versions">\n{cards}\n</main>\n{history}</body></html>\n'
    )
