import math

import pytest

from assetql_dagster.domain.scoring import (
    BASE_WEIGHTS,
    PARAMETERS,
    PASS,
    REVIEW,
    clip_similarity_to_unit,
    combined_style_score,
    parameter_weights,
    pass_rate,
    relative_threshold,
    verdict,
)


@pytest.mark.parametrize("cos", [-1.0, -0.3, 0.0, 0.42, 1.0])
def test_clip_similarity_maps_linearly_to_unit_interval(cos):
    assert clip_similarity_to_unit(cos) == pytest.approx((cos + 1) / 2)


def test_clip_similarity_is_clipped_for_rounding_overshoot():
    assert clip_similarity_to_unit(1.0000001) == 1.0
    assert clip_similarity_to_unit(-1.0000001) == 0.0


def test_clip_similarity_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        clip_similarity_to_unit(float("nan"))


def test_verdict_passes_at_or_above_threshold():
    threshold = 0.6
    assert verdict(threshold, threshold) == PASS
    assert verdict(threshold + 0.1, threshold) == PASS
    assert verdict(threshold - 0.1, threshold) == REVIEW


def test_verdict_without_score_is_review():
    assert verdict(None, 0.5) == REVIEW


def test_verdict_validates_score():
    with pytest.raises(ValueError, match="style score"):
        verdict(-0.1, 0.5)


def test_pass_rate():
    verdicts = [PASS, REVIEW, PASS, PASS]
    assert pass_rate(verdicts) == pytest.approx(verdicts.count(PASS) / len(verdicts))
    assert pass_rate([]) == 0.0


def test_pass_rate_rejects_unknown_verdicts():
    with pytest.raises(ValueError, match="unknown verdict\\(s\\) \\['fail'\\]"):
        pass_rate([PASS, "fail"])


def test_parameter_weights_without_locks_are_the_normalised_base_weights():
    weights = parameter_weights({})
    assert list(weights) == list(PARAMETERS)
    assert weights == pytest.approx({p: BASE_WEIGHTS[p] / sum(BASE_WEIGHTS.values()) for p in PARAMETERS})
    assert weights["embedding"] > weights["palette"] == weights["texture"]


def test_raising_the_palette_lock_raises_its_weight_monotonically():
    palette_weights = [parameter_weights({"palette": lock})["palette"] for lock in range(0, 101, 10)]
    assert palette_weights == sorted(palette_weights)
    assert len(set(palette_weights)) == len(palette_weights)
    # weight = (1 + 100 / 25) / (1 + 1 + 1 + 1 + 2 + 100 / 25): a full lock is half the score.
    assert palette_weights[-1] == pytest.approx(0.5)


def test_locking_one_parameter_lowers_the_others_and_weights_sum_to_one():
    free, locked = parameter_weights({}), parameter_weights({"lighting": 60, "texture": 0})
    assert math.fsum(locked.values()) == pytest.approx(1.0)
    assert locked["lighting"] > free["lighting"]
    assert all(locked[p] < free[p] for p in PARAMETERS if p != "lighting")


@pytest.mark.parametrize(
    ("locks", "message"),
    [
        ({"colour": 50}, r"unknown parameter\(s\) \['colour'\] in locks, expected among \['palette', "),
        ({"palette": 101}, r"lock for 'palette' must be an integer from 0 to 100, got 101"),
        ({"palette": -1}, r"got -1"),
        ({"palette": 50.5}, r"got 50.5"),
        ({"palette": True}, r"got True"),
    ],
)
def test_parameter_weights_reject_unknown_names_and_out_of_range_locks(locks, message):
    with pytest.raises(ValueError, match=message):
        parameter_weights(locks)


def test_lock_errors_stay_short_for_huge_values():
    with pytest.raises(ValueError) as unknown:
        parameter_weights({"x" * 100_000: 1})
    with pytest.raises(ValueError) as value:
        parameter_weights({"palette": "9" * 100_000})
    assert len(str(unknown.value)) < 200 and len(str(value.value)) < 200


def test_combined_score_is_the_weighted_mean():
    weights = parameter_weights({"palette": 100})
    scores = {"palette": 0.2, "lighting": 1.0, "composition": 1.0, "texture": 1.0, "embedding": 1.0}
    assert combined_style_score(scores, weights) == pytest.approx(0.5 * 0.2 + 0.5 * 1.0)
    assert combined_style_score(dict.fromkeys(PARAMETERS, 1.0), weights) == pytest.approx(1.0)
    # The same palette miss costs less when the palette is not locked.
    assert combined_style_score(scores, parameter_weights({})) > combined_style_score(scores, weights)


@pytest.mark.parametrize(
    ("scores", "weights", "message"),
    [
        ({"palette": 1.0}, None, r"scores must have exactly the keys"),
        (None, {"palette": 1.0}, r"weights must have exactly the keys"),
        ({**dict.fromkeys(PARAMETERS, 0.5), "texture": 1.5}, None, r"texture score must be a number in \[0, 1\], got 1.5"),
        (None, dict.fromkeys(PARAMETERS, 0.5), r"parameter weights must sum to 1, got 2.5"),
    ],
)
def test_combined_score_validates_its_inputs(scores, weights, message):
    with pytest.raises(ValueError, match=message):
        combined_style_score(scores or dict.fromkeys(PARAMETERS, 0.5), weights or parameter_weights({}))


def test_relative_threshold_scales_by_how_alike_the_references_are():
    # Three references: three pairs, mean similarity 0.6.
    assert relative_threshold([0.5, 0.6, 0.7], 0.8) == pytest.approx(0.8 * 0.6)
    # Tighter references demand more of an image.
    assert relative_threshold([0.9], 0.8) > relative_threshold([0.5], 0.8)


def test_relative_threshold_is_absolute_with_one_reference():
    assert relative_threshold([], 0.7) == 0.7


@pytest.mark.parametrize(
    ("similarities", "threshold", "message"),
    [([0.5], 1.2, r"threshold must be a number in \[0, 1\], got 1.2"), ([1.5], 0.5, r"reference similarity .* got 1.5")],
)
def test_relative_threshold_validates_its_inputs(similarities, threshold, message):
    with pytest.raises(ValueError, match=message):
        relative_threshold(similarities, threshold)
