"""Style score: how closely a generated image follows the batch's style reference images.

The score is a weighted blend, in [0, 1], of two similarities (weights in STYLE_WEIGHTS):

- "clip" (0.7): cosine similarity between the CLIP image embedding of the image and that of
  the references, mapped from [-1, 1] to [0, 1]. CLIP captures semantic style (medium,
  rendering, subject treatment), which is most of what a reviewer judges as "on style".
- "color" (0.3): intersection of the image's RGB histogram with the references' mean
  histogram. CLIP embeddings are largely colour-invariant, so the histogram catches palette
  drift (a right-looking image in the wrong colours) that CLIP alone would let pass.

An image scoring at least the batch threshold passes; anything else, including an image with
no score because the batch has no style reference, goes to human review.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from numbers import Real

from assetql_dagster.domain.validation import check_unit

STYLE_WEIGHTS: dict[str, float] = {"clip": 0.7, "color": 0.3}
PASS = "pass"
REVIEW = "review"
VERDICTS = (PASS, REVIEW)


def _check_weights(weights: Mapping[str, float]) -> None:
    if set(weights) != set(STYLE_WEIGHTS):
        raise ValueError(
            f"style weights must have exactly the keys {sorted(STYLE_WEIGHTS)}, got {sorted(weights)}"
        )
    for key, value in weights.items():
        check_unit(f"style weight {key!r}", value)
    total = math.fsum(weights.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"style weights must sum to 1, got {dict(weights)} summing to {total:g}")


def clip_similarity_to_unit(cos: float) -> float:
    """Map a cosine similarity in [-1, 1] to [0, 1] as (cos + 1) / 2, clipped."""
    if isinstance(cos, bool) or not isinstance(cos, Real) or not math.isfinite(cos):
        raise ValueError(f"cosine similarity must be a finite number, got {cos!r}")
    return min(1.0, max(0.0, (cos + 1.0) / 2.0))


def style_score(clip_cos: float, hist_sim: float, weights: Mapping[str, float] = STYLE_WEIGHTS) -> float:
    """Weighted style score in [0, 1] from a CLIP cosine similarity and a histogram similarity."""
    _check_weights(weights)
    check_unit("histogram similarity", hist_sim)
    score = weights["clip"] * clip_similarity_to_unit(clip_cos) + weights["color"] * hist_sim
    return min(1.0, max(0.0, score))


def verdict(score: float | None, threshold: float) -> str:
    """"pass" when `score` reaches `threshold`, else "review" (also when there is no score).

    `threshold` is the batch's `style_threshold`, checked when its settings were read, so only the
    computed `score` is checked here.
    """
    if score is None:
        return REVIEW
    check_unit("style score", score)
    return PASS if score >= threshold else REVIEW


def pass_rate(verdicts: Iterable[str]) -> float:
    """Fraction of verdicts that are "pass"; 0.0 for no verdicts."""
    values = list(verdicts)
    unknown = sorted({v for v in values if v not in VERDICTS})
    if unknown:
        raise ValueError(f"unknown verdict(s) {unknown}, expected one of {list(VERDICTS)}")
    return values.count(PASS) / len(values) if values else 0.0
