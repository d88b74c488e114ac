import pytest

from assetql_dagster.domain.scoring import (
    PASS,
    REVIEW,
    STYLE_WEIGHTS,
    clip_similarity_to_unit,
    pass_rate,
    style_score,
    verdict,
)


def test_style_weights_sum_to_one():
    assert sum(STYLE_WEIGHTS.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("cos", [-1.0, -0.3, 0.0, 0.42, 1.0])
def test_clip_similarity_maps_linearly_to_unit_interval(cos):
    assert clip_similarity_to_unit(cos) == pytest.approx((cos + 1) / 2)


def test_clip_similarity_is_clipped_for_rounding_overshoot():
    assert clip_similarity_to_unit(1.0000001) == 1.0
    assert clip_similarity_to_unit(-1.0000001) == 0.0


def test_clip_similarity_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        clip_similarity_to_unit(float("nan"))


@pytest.mark.parametrize(("cos", "hist"), [(-1.0, 0.0), (1.0, 1.0), (0.2, 0.6)])
def test_style_score_is_the_weighted_blend_within_bounds(cos, hist):
    score = style_score(cos, hist)
    expected = STYLE_WEIGHTS["clip"] * (cos + 1) / 2 + STYLE_WEIGHTS["color"] * hist
    assert score == pytest.approx(expected)
    assert 0.0 <= score <= 1.0


def test_style_score_honours_custom_weights():
    assert style_score(1.0, 0.0, weights={"clip": 0.0, "color": 1.0}) == 0.0


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"clip": 0.5, "color": 0.6}, "must sum to 1"),
        ({"clip": 1.0}, "exactly the keys"),
        ({"clip": 1.2, "color": -0.2}, "style weight 'clip' must be a number in \\[0, 1\\]"),
    ],
)
def test_style_score_validates_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        style_score(0.5, 0.5, weights=weights)


def test_style_score_validates_histogram_similarity():
    with pytest.raises(ValueError, match="histogram similarity must be a number in \\[0, 1\\], got 1.5"):
        style_score(0.5, 1.5)


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
