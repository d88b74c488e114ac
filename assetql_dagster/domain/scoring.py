"""Style score: how closely a generated image follows the batch's style profile.

Each of PARAMETERS is scored in [0, 1]: palette, lighting, composition and texture by
`style_parameters.parameter_scores`, and the embedding as the CLIP cosine similarity to the
references' mean embedding mapped from [-1, 1] to [0, 1]. The style score is their weighted mean
(`combined_style_score`), with weights that follow the batch's locks (`parameter_weights`).

An image scoring at least the pass threshold passes; anything else, including an image with no
score because the batch has no style reference, goes to human review. The threshold is relative to
how alike the references are to each other (`relative_threshold`).
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real

from assetql_dagster.domain.validation import check_unit

PASS = "pass"
REVIEW = "review"
VERDICTS = (PASS, REVIEW)

PARAMETERS = ("palette", "lighting", "composition", "texture", "embedding")
# Weight of a parameter before locks. The embedding counts twice: it carries the medium, rendering
# and subject treatment that are most of what a reviewer judges as "on style", where each measured
# parameter covers one narrower aspect.
BASE_WEIGHTS: dict[str, float] = {
    "palette": 1.0,
    "lighting": 1.0,
    "composition": 1.0,
    "texture": 1.0,
    "embedding": 2.0,
}
# A lock of 100 adds 4 to a parameter's base weight: fully locking one measured parameter makes it
# half of the combined score (5 of 10) when nothing else is locked.
LOCK_MAX = 100
LOCK_WEIGHT_PER_POINT = 1.0 / 25.0


def clip_similarity_to_unit(cos: float) -> float:
    """Map a cosine similarity in [-1, 1] to [0, 1] as (cos + 1) / 2, clipped."""
    if isinstance(cos, bool) or not isinstance(cos, Real) or not math.isfinite(cos):
        raise ValueError(f"cosine similarity must be a finite number, got {cos!r}")
    return min(1.0, max(0.0, (cos + 1.0) / 2.0))


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


def parameter_weights(locks: Mapping[str, int]) -> dict[str, float]:
    """Weight of each of PARAMETERS, summing to 1, given locks of 0-100 for some of them.

    weight(p) = (BASE_WEIGHTS[p] + lock(p) / 25) / sum over all parameters of the same, where an
    unlocked parameter has lock 0. Raising one lock raises that parameter's weight and lowers
    every other's, so a fully locked palette dominates without silencing the rest.
    """
    unknown = sorted(str(name) for name in locks if name not in PARAMETERS)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {reprlib.repr(unknown)} in locks, expected among {list(PARAMETERS)}"
        )
    for name, lock in locks.items():
        if isinstance(lock, bool) or not isinstance(lock, Integral) or not 0 <= lock <= LOCK_MAX:
            raise ValueError(
                f"lock for {name!r} must be an integer from 0 to {LOCK_MAX}, got {reprlib.repr(lock)}"
            )
    raw = {p: BASE_WEIGHTS[p] + locks.get(p, 0) * LOCK_WEIGHT_PER_POINT for p in PARAMETERS}
    total = math.fsum(raw.values())
    return {p: w / total for p, w in raw.items()}


def combined_style_score(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Weighted mean in [0, 1] of one score in [0, 1] per parameter, with `parameter_weights`' weights.

    Both mappings must have exactly the keys PARAMETERS: a missing score would otherwise count as 0
    and fail an image for a parameter that was never measured.
    """
    for what, mapping in (("scores", scores), ("weights", weights)):
        if set(mapping) != set(PARAMETERS):
            got = reprlib.repr(sorted(map(str, mapping)))
            raise ValueError(f"{what} must have exactly the keys {sorted(PARAMETERS)}, got {got}")
    for name in PARAMETERS:
        check_unit(f"{name} score", scores[name])
        check_unit(f"{name} weight", weights[name])
    total = math.fsum(weights.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"parameter weights must sum to 1, got {total:g}")
    return min(1.0, max(0.0, math.fsum(weights[p] * scores[p] for p in PARAMETERS)))


def relative_threshold(reference_similarities: Sequence[float], threshold: float) -> float:
    """The pass threshold for a profile, from the batch's `threshold` in [0, 1].

    Raw similarities are not comparable across profiles: references of a loose style are far less
    alike than those of a tight one, and an image cannot be expected to match the profile better
    than the references match each other. With two or more references, `reference_similarities`
    holds the combined score of every pair of them (n * (n - 1) / 2 values) and the threshold is
    `threshold` times their mean. With one reference there are no pairs and `threshold` applies
    as is (absolute).
    """
    check_unit("threshold", threshold)
    for similarity in reference_similarities:
        check_unit("reference similarity", similarity)
    if not reference_similarities:
        return threshold
    return threshold * math.fsum(reference_similarities) / len(reference_similarities)
