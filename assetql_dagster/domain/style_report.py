"""The batch style report: how consistent a batch's curated images are, and how far it drifts from
earlier batches of the same style profile.

From the final `ScoreSet` and the style loop's numbers (a `Curation`) it computes the mean, standard
deviation and coefficient of variation of the style score, each parameter's distribution (min,
quartiles, median, max), the pass rate before and after the loop, the attempts histogram and the
generation seconds the loop spent. It renders them as markdown for the asset metadata and as a
box-plot SVG (one row per parameter on a 0-1 axis) for the metadata and the gallery.

Drift compares a batch with the latest earlier batches (by registration time) of the same named
profile: the difference of the mean style scores and the cosine distance between the centroids of
the images' CLIP embeddings. The limits of the `curated_images` checks are the constants below.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# Light on purpose: export_writers (which settings.py imports) renders the report, so this module
# imports neither numpy nor records.py (records -> settings -> export_writers -> here would cycle);
# it reads a ScoreSet / Curation by their attributes.
from assetql_dagster.domain.scoring import PARAMETERS, PASS

# The limits of the `style_spread` and `style_drift` checks, in one place.
# The requirement: style scores within a batch vary by less than 15 % (coefficient of variation).
MAX_STYLE_CV = 0.15
# Drift passes while the batch's mean style score is within MAX_SCORE_DELTA of the earlier batches'
# and the cosine distance between the centroids of their images' CLIP embeddings is at most
# MAX_CENTROID_DISTANCE (both inclusive).
MAX_SCORE_DELTA = 0.1
MAX_CENTROID_DISTANCE = 0.15
# The baseline is the mean of this many of the latest earlier batches of the profile.
DRIFT_BASELINE = 5
NO_EARLIER_BATCH = "no earlier batch of this profile"

STYLE = "style"
# The rows of the report and the plot: the combined score first, then each parameter.
ROWS = (STYLE, *PARAMETERS)


@dataclass(frozen=True)
class Distribution:
    """Five-number summary and mean of some scores; quartiles by linear interpolation (numpy's default)."""

    count: int
    minimum: float
    q1: float
    median: float
    q3: float
    maximum: float
    mean: float


def _quantile(ordered: Sequence[float], p: float) -> float:
    position = p * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distribution(values: Iterable[float]) -> Distribution:
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise ValueError("a distribution needs at least one value, got none")
    return Distribution(
        count=len(ordered),
        minimum=ordered[0],
        q1=_quantile(ordered, 0.25),
        median=_quantile(ordered, 0.5),
        q3=_quantile(ordered, 0.75),
        maximum=ordered[-1],
        mean=math.fsum(ordered) / len(ordered),
    )


@dataclass(frozen=True)
class StyleReport:
    """What the style loop left: spread and distributions of the scores, pass rates, attempts, seconds.

    `mean`, `std` (population) and `cv` (std / mean) are of the style score, None when nothing is
    scored (no style reference); `cv` is also None when the mean is 0. The pass rates are None then
    too, and `pass_rate_before` when it is not known (a gallery of a batch run before the report).
    """

    images: int
    scored: int
    threshold: float
    mean: float | None
    std: float | None
    cv: float | None
    distributions: dict[str, Distribution]
    pass_rate_before: float | None
    pass_rate_after: float | None
    attempts: dict[int, int]
    regenerated: int = 0
    budget: int = 0
    regeneration_seconds: float = 0.0

    @property
    def seconds_per_regenerated_image(self) -> float | None:
        return self.regeneration_seconds / self.regenerated if self.regenerated else None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["attempts"] = {str(k): v for k, v in self.attempts.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> StyleReport:
        return cls(
            **{
                **data,
                "distributions": {k: Distribution(**v) for k, v in data["distributions"].items()},
                "attempts": {int(k): int(v) for k, v in data["attempts"].items()},
            }
        )


def style_report(
    scores: Any,
    pass_rate_before: float | None = None,
    regenerated: int = 0,
    budget: int = 0,
    regeneration_seconds: float = 0.0,
) -> StyleReport:
    """The report of `scores` (a batch's final `ScoreSet`) and what the loop did to get there."""
    images = scores.images
    scored = [s for s in images if s.style_score is not None]
    distributions = {}
    for row in ROWS:
        attribute = "style_score" if row == STYLE else f"{row}_score"
        values = [getattr(s, attribute) for s in scored if getattr(s, attribute) is not None]
        if values:
            distributions[row] = distribution(values)
    mean = std = cv = None
    if scored:
        values = [float(s.style_score) for s in scored]
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
        cv = std / mean if mean > 0 else None
    attempts: dict[int, int] = {}
    for s in images:
        attempts[s.attempts] = attempts.get(s.attempts, 0) + 1
    return StyleReport(
        images=len(images),
        scored=len(scored),
        threshold=scores.threshold,
        mean=mean,
        std=std,
        cv=cv,
        distributions=distributions,
        pass_rate_before=pass_rate_before if scored else None,
        pass_rate_after=sum(s.verdict == PASS for s in images) / len(images) if scored else None,
        attempts=dict(sorted(attempts.items())),
        regenerated=regenerated,
        budget=budget,
        regeneration_seconds=regeneration_seconds,
    )


def curation_report(curation: Any) -> StyleReport:
    """The report of a `Curation`: its final scores and the loop's numbers."""
    return style_report(
        curation.scores,
        pass_rate_before=curation.pass_rate_before,
        regenerated=curation.regenerated,
        budget=curation.budget,
        regeneration_seconds=curation.seconds_generating,
    )


def spread_passes(report: StyleReport) -> bool | None:
    """Whether the style scores vary by less than MAX_STYLE_CV; None when nothing is scored."""
    if not report.scored:
        return None
    return report.cv is not None and report.cv < MAX_STYLE_CV


# ---- drift ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileBatch:
    """One batch in its profile's history: what drift compares later batches with."""

    batch: str
    profile: str
    version: int | None
    registered_at: str
    clip_model: str
    images: int
    mean_style_score: float
    style_score_cv: float | None
    # Unit-length mean of the images' CLIP embeddings.
    centroid: tuple[float, ...] = field(repr=False)

    @property
    def order(self) -> tuple[str, str]:
        """Registration order; batches registered in the same second are ordered by key."""
        return self.registered_at, self.batch

    def to_dict(self) -> dict:
        return {**asdict(self), "centroid": list(self.centroid)}

    @classmethod
    def from_dict(cls, data: Mapping) -> ProfileBatch:
        return cls(**{**data, "centroid": tuple(float(v) for v in data["centroid"])})


@dataclass(frozen=True)
class Drift:
    """This batch against the earlier batches of its profile; deltas are None when there is nothing to compare."""

    passed: bool
    description: str
    profile: str | None = None
    compared: tuple[str, ...] = ()
    score_delta: float | None = None
    centroid_distance: float | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "compared": list(self.compared)}

    @classmethod
    def from_dict(cls, data: Mapping) -> Drift:
        return cls(**{**data, "compared": tuple(data["compared"])})


def _norm(vector: Sequence[float]) -> float:
    return math.sqrt(math.fsum(v * v for v in vector))


def centroid(vectors: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Unit-length mean of `vectors` (embeddings of one length, e.g. the rows of an [n, d] array)."""
    rows = [[float(v) for v in row] for row in vectors]
    if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        raise ValueError("a centroid needs at least one vector, all of one non-zero length")
    mean = [math.fsum(column) / len(rows) for column in zip(*rows)]
    norm = _norm(mean)
    if not norm:
        raise ValueError("the embeddings cancel out: their mean has length 0")
    return tuple(v / norm for v in mean)


def cosine_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """1 - cos(a, b): 0 for the same direction, 1 for orthogonal vectors, 2 for opposite ones."""
    if len(a) != len(b):
        raise ValueError(f"vectors of different lengths {len(a)} and {len(b)}")
    return 1.0 - math.fsum(x * y for x, y in zip(a, b)) / (_norm(a) * _norm(b))


def no_profile_drift(reason: str = "the batch names no style profile") -> Drift:
    return Drift(passed=True, description=f"{NO_EARLIER_BATCH} ({reason})")


def drift(current: ProfileBatch, history: Iterable[ProfileBatch], baseline: int = DRIFT_BASELINE) -> Drift:
    """`current` against the `baseline` latest batches of `history` registered before it.

    Only batches of the same profile embedded by the same CLIP model are comparable. The score delta
    is `current`'s mean style score minus the mean of theirs; the centroid distance is the cosine
    distance between `current`'s centroid and the (unit-length) mean of theirs.
    """
    earlier = sorted(
        (
            b for b in history
            if b.profile == current.profile and b.batch != current.batch and b.order < current.order
            and b.clip_model == current.clip_model and len(b.centroid) == len(current.centroid)
        ),
        key=lambda b: b.order,
    )[-baseline:]
    if not earlier:
        return Drift(passed=True, description=NO_EARLIER_BATCH, profile=current.profile)
    score_delta = current.mean_style_score - math.fsum(b.mean_style_score for b in earlier) / len(earlier)
    distance = cosine_distance(current.centroid, centroid([b.centroid for b in earlier]))
    passed = abs(score_delta) <= MAX_SCORE_DELTA + 1e-12 and distance <= MAX_CENTROID_DISTANCE + 1e-12
    description = (
        f"against {len(earlier)} earlier batch(es) of profile {current.profile}: mean style score "
        f"{score_delta:+.3f} (at most ±{MAX_SCORE_DELTA}), embedding centroid distance {distance:.3f} "
        f"(at most {MAX_CENTROID_DISTANCE})"
    )
    return Drift(
        passed=passed,
        description=description,
        profile=current.profile,
        compared=tuple(b.batch for b in earlier),
        score_delta=round(score_delta, 6),
        centroid_distance=round(distance, 6),
    )


# ---- rendering ----------------------------------------------------------------------------------

_LABELS = {STYLE: "style score"}
# Plot geometry, in px.
_LEFT, _RIGHT, _TOP, _ROW, _AXIS = 104, 24, 12, 26, 34
_WIDTH = 520
_BOX_FILL = {STYLE: "#90caf9", **{p: "#cfd8dc" for p in PARAMETERS}}
# As contact_sheet.escape_markdown, which this module cannot import (it pulls in the image libraries).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|<>])")


def escape_markdown(text: object) -> str:
    """`text` on one line with markdown, table and HTML characters escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def percent(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f} %"


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def distribution_svg(report: StyleReport) -> str:
    """Box plots of the style score and each parameter on one 0-1 axis: whiskers min-max, box q1-q3,
    median line, mean dot, and the pass threshold dashed on the style-score row. "" when nothing is scored.
    """
    rows = [r for r in ROWS if r in report.distributions]
    if not rows:
        return ""
    plot = _WIDTH - _LEFT - _RIGHT
    height = _TOP + _ROW * len(rows) + _AXIS

    def x(value: float) -> float:
        return round(_LEFT + plot * min(1.0, max(0.0, value)), 1)

    bottom = _TOP + _ROW * len(rows)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f"<title>style score distributions of {report.scored} image(s)</title>",
        f'<rect width="{_WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{x(tick)}" y1="{_TOP - 4}" x2="{x(tick)}" y2="{bottom}" stroke="#e0e0e0"/>')
        parts.append(
            f'<text x="{x(tick)}" y="{bottom + 14}" text-anchor="middle" fill="#555">{tick:g}</text>'
        )
    parts.append(f'<line x1="{x(0)}" y1="{bottom}" x2="{x(1)}" y2="{bottom}" stroke="#888"/>')
    for i, row in enumerate(rows):
        d = report.distributions[row]
        middle = _TOP + _ROW * i + _ROW / 2
        top, box = middle - 7, 14
        label = html.escape(_LABELS.get(row, row))
        parts.append(
            f'<g class="row" data-parameter="{html.escape(row)}">'
            f'<text x="{_LEFT - 8}" y="{middle + 4}" text-anchor="end" fill="#222">{label}</text>'
            f'<line x1="{x(d.minimum)}" y1="{middle}" x2="{x(d.maximum)}" y2="{middle}" stroke="#546e7a"/>'
            f'<line x1="{x(d.minimum)}" y1="{top + 3}" x2="{x(d.minimum)}" y2="{top + box - 3}" stroke="#546e7a"/>'
            f'<line x1="{x(d.maximum)}" y1="{top + 3}" x2="{x(d.maximum)}" y2="{top + box - 3}" stroke="#546e7a"/>'
            f'<rect x="{x(d.q1)}" y="{top}" width="{max(1.0, round(x(d.q3) - x(d.q1), 1))}" height="{box}" '
            f'fill="{_BOX_FILL[row]}" stroke="#37474f"/>'
            f'<line x1="{x(d.median)}" y1="{top}" x2="{x(d.median)}" y2="{top + box}" stroke="#0d47a1" stroke-width="2"/>'
            f'<circle cx="{x(d.mean)}" cy="{middle}" r="2.5" fill="#d32f2f"/>'
            "</g>"
        )
        if row == STYLE:
            parts.append(
                f'<line class="threshold" x1="{x(report.threshold)}" y1="{top - 4}" x2="{x(report.threshold)}" '
                f'y2="{top + box + 4}" stroke="#e65100" stroke-width="1.5" stroke-dasharray="3,2"/>'
            )
    parts.append(
        f'<text x="8" y="{bottom + 30}" fill="#555" font-size="10">box: q1-q3 · bar: median · dot: mean · '
        f"whiskers: min-max · dashed: pass threshold {report.threshold:.2f}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def attempts_text(attempts: Mapping[int, int]) -> str:
    """`1: 10, 2: 3` - images per number of generations."""
    return ", ".join(f"{k}: {v}" for k, v in sorted(attempts.items()))


def summary_rows(report: StyleReport, drift_result: Drift | None = None) -> list[tuple[str, str]]:
    """The report's headline figures as (what, value) pairs, in reading order."""
    if not report.scored:
        rows = [("style score", "no style reference: not scored")]
    else:
        rows = [
            ("style score mean", _number(report.mean)),
            ("standard deviation", _number(report.std)),
            ("coefficient of variation", f"{percent(report.cv)} (limit < {percent(MAX_STYLE_CV, 0)})"),
            ("pass threshold", _number(report.threshold)),
            (
                "pass rate before → after the loop",
                f"{percent(report.pass_rate_before)} → {percent(report.pass_rate_after)}",
            ),
        ]
    per_image = report.seconds_per_regenerated_image
    rows += [
        ("attempts (generations: images)", attempts_text(report.attempts)),
        ("regenerated", f"{report.regenerated} of a budget of {report.budget}"),
        (
            "generation seconds in the loop (GPU)",
            f"{report.regeneration_seconds:.1f}" + (f" ({per_image:.2f} per regenerated image)" if per_image else ""),
        ),
    ]
    if drift_result is not None:
        rows.append(("drift", drift_text(drift_result)))
    return rows


def drift_text(result: Drift) -> str:
    if result.score_delta is None or result.centroid_distance is None:
        return result.description
    verdict = "within limits" if result.passed else "DRIFTED"
    return (
        f"{verdict}: mean score {result.score_delta:+.3f}, centroid distance {result.centroid_distance:.3f} "
        f"vs {len(result.compared)} earlier batch(es) of {result.profile}"
    )


def report_markdown(report: StyleReport, drift_result: Drift | None = None) -> str:
    """The report as markdown: headline table, per-parameter distributions, and the plot inlined
    as an SVG data URI (markdown image syntax, which the Dagster UI renders; raw HTML it does not)."""
    lines = ["| style report | |", "|---|---|"]
    lines += [f"| {escape_markdown(k)} | {escape_markdown(v)} |" for k, v in summary_rows(report, drift_result)]
    rows = [r for r in ROWS if r in report.distributions]
    if rows:
        lines += ["", "| score | min | q1 | median | q3 | max | mean |", "|---|---|---|---|---|---|---|"]
        for row in rows:
            d = report.distributions[row]
            figures = " | ".join(f"{v:.3f}" for v in (d.minimum, d.q1, d.median, d.q3, d.maximum, d.mean))
            lines.append(f"| {escape_markdown(_LABELS.get(row, row))} | {figures} |")
        lines += ["", f"![style score distributions]({svg_data_uri(distribution_svg(report))})"]
    return "\n".join(lines)
