import base64
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from assetql_dagster.domain.records import Curation, ImageScore, ImageSet, ScoreSet
from assetql_dagster.domain.scoring import PARAMETERS, parameter_weights
from assetql_dagster.domain.style_report import (
    MAX_CENTROID_DISTANCE,
    MAX_SCORE_DELTA,
    MAX_STYLE_CV,
    NO_EARLIER_BATCH,
    Drift,
    ProfileBatch,
    StyleReport,
    centroid,
    cosine_distance,
    curation_report,
    distribution,
    distribution_svg,
    drift,
    no_profile_drift,
    report_markdown,
    spread_passes,
    style_report,
    svg_data_uri,
)

SVG = "{http://www.w3.org/2000/svg}"
STYLE_SCORES = [0.6, 0.7, 0.8, 0.9]


def image(i, style, verdict, attempts=1, **parameters):
    values = {f"{p}_score": parameters.get(p, style) for p in PARAMETERS}
    return ImageScore(f"img-{i}", f"img-{i}.png", verdict, style_score=style, version=attempts, attempts=attempts, **values)


def hand_made() -> ScoreSet:
    """Four images: style 0.6-0.9, palette 0.2-0.5, two regenerated (2 and 3 attempts)."""
    images = [
        image(0, 0.6, "review", attempts=3, palette=0.2),
        image(1, 0.7, "pass", attempts=2, palette=0.5),
        image(2, 0.8, "pass", palette=0.3),
        image(3, 0.9, "pass", palette=0.4),
    ]
    return ScoreSet(threshold=0.65, weights=parameter_weights({}), images=tuple(images))


def test_report_numbers_of_a_hand_made_score_set():
    report = style_report(hand_made(), pass_rate_before=0.25, regenerated=3, budget=4, regeneration_seconds=6.0)
    assert (report.images, report.scored, report.threshold) == (4, 4, 0.65)
    assert report.mean == pytest.approx(0.75)
    # Population standard deviation: sqrt((0.15² + 0.05² + 0.05² + 0.15²) / 4).
    assert report.std == pytest.approx(math.sqrt(0.0125))
    assert report.cv == pytest.approx(math.sqrt(0.0125) / 0.75)
    style = report.distributions["style"]
    assert (style.count, style.minimum, style.maximum) == (4, 0.6, 0.9)
    # Quartiles by linear interpolation, numpy's default.
    assert (style.q1, style.median, style.q3) == pytest.approx((0.675, 0.75, 0.825))
    assert (style.q1, style.median, style.q3) == pytest.approx(tuple(np.percentile(STYLE_SCORES, [25, 50, 75])))
    palette = report.distributions["palette"]
    assert (palette.minimum, palette.q1, palette.median, palette.q3, palette.maximum) == pytest.approx(
        (0.2, 0.275, 0.35, 0.425, 0.5)
    )
    assert set(report.distributions) == {"style", *PARAMETERS}
    assert (report.pass_rate_before, report.pass_rate_after) == (0.25, 0.75)
    assert report.attempts == {1: 2, 2: 1, 3: 1}
    assert report.seconds_per_regenerated_image == 2.0


def test_curation_report_takes_the_loops_numbers():
    curation = Curation(ImageSet(4, (), ()), hand_made(), pass_rate_before=0.5, regenerated=2, budget=3,
                        seconds_generating=1.5)
    report = curation_report(curation)
    assert (report.pass_rate_before, report.regenerated, report.budget, report.regeneration_seconds) == (0.5, 2, 3, 1.5)
    assert report.mean == pytest.approx(0.75)


def test_a_batch_without_references_has_no_figures_and_no_plot():
    unscored = ScoreSet(0.85, parameter_weights({}), (ImageScore("a", "a.png", "unscored"),) * 3)
    report = style_report(unscored, pass_rate_before=0.0)
    assert (report.mean, report.cv, report.pass_rate_before, report.pass_rate_after) == (None, None, None, None)
    assert report.distributions == {} and report.attempts == {1: 3}
    assert distribution_svg(report) == ""
    assert spread_passes(report) is None
    markdown = report_markdown(report)
    assert "no style reference" in markdown and "data:image" not in markdown


def test_distribution_of_one_value_and_of_none():
    one = distribution([0.4])
    assert (one.minimum, one.q1, one.median, one.q3, one.maximum, one.mean) == (0.4,) * 6
    with pytest.raises(ValueError, match="at least one value"):
        distribution([])


def test_report_survives_json():
    report = style_report(hand_made(), 0.25, 3, 4, 6.0)
    assert StyleReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_the_plot_is_a_well_formed_svg_with_one_box_per_parameter():
    report = style_report(hand_made(), 0.25)
    svg = distribution_svg(report)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    rows = [g for g in root.iter(f"{SVG}g") if g.get("class") == "row"]
    assert [g.get("data-parameter") for g in rows] == ["style", *PARAMETERS]
    labels = [g.find(f"{SVG}text").text for g in rows]
    assert labels == ["style score", *PARAMETERS]
    # The axis runs 0-1 across the plot: the style box spans q1-q3 and the threshold line sits at 0.65.
    ticks = {t.text: float(t.get("x")) for t in root.iter(f"{SVG}text") if t.text in ("0", "1")}
    x0, x1 = ticks["0"], ticks["1"]
    box = rows[0].find(f"{SVG}rect")
    assert float(box.get("x")) == pytest.approx(x0 + 0.675 * (x1 - x0), abs=0.1)
    assert float(box.get("width")) == pytest.approx(0.15 * (x1 - x0), abs=0.2)
    [threshold] = [line for line in root.iter(f"{SVG}line") if line.get("class") == "threshold"]
    assert float(threshold.get("x1")) == pytest.approx(x0 + 0.65 * (x1 - x0), abs=0.1)
    assert base64.b64decode(svg_data_uri(svg).split(",", 1)[1]).decode() == svg


def test_markdown_has_the_tables_and_inlines_the_plot_as_a_markdown_image():
    report = style_report(hand_made(), 0.25, 3, 4, 6.0)
    result = Drift(True, "d", "brand-x", ("spring-1",), 0.02, 0.01)
    markdown = report_markdown(report, result)
    assert "| coefficient of variation | 14.9 % (limit \\< 15 %) |" in markdown
    assert "| pass rate before → after the loop | 25.0 % → 75.0 % |" in markdown
    assert "| attempts (generations: images) | 1: 2, 2: 1, 3: 1 |" in markdown
    assert "| generation seconds in the loop (GPU) | 6.0 (2.00 per regenerated image) |" in markdown
    assert "mean score +0.020, centroid distance 0.010 vs 1 earlier batch(es) of brand-x" in markdown
    assert "| style score | 0.600 | 0.675 | 0.750 | 0.825 | 0.900 | 0.750 |" in markdown
    # The Dagster UI renders markdown images (data: is an allowed src) but drops raw HTML.
    [plot] = [line for line in markdown.splitlines() if line.startswith("![")]
    assert plot.startswith("![style score distributions](data:image/svg+xml;base64,") and "<img" not in markdown
    assert plot[len("![style score distributions]("):-1] == svg_data_uri(distribution_svg(report))


def with_cv(cv):
    base = style_report(hand_made())
    return StyleReport(**{**base.__dict__, "cv": cv})


@pytest.mark.parametrize("cv, passes", [(0.0, True), (0.1499, True), (MAX_STYLE_CV, False), (0.2, False), (None, False)])
def test_spread_passes_below_fifteen_percent_only(cv, passes):
    assert spread_passes(with_cv(cv)) is passes


def batch(name, registered, score=0.7, vector=(1.0, 0.0), profile="brand-x", clip="tiny"):
    return ProfileBatch(name, profile, 1, registered, clip, 4, score, 0.05, centroid([vector]))


def test_drift_without_an_earlier_batch_passes_with_the_documented_description():
    first = batch("a", "2025-01-01T00:00:00Z")
    result = drift(first, [first])
    assert result.passed and result.description == NO_EARLIER_BATCH == "no earlier batch of this profile"
    assert (result.score_delta, result.centroid_distance, result.compared) == (None, None, ())
    unnamed = no_profile_drift()
    assert unnamed.passed and unnamed.description.startswith(NO_EARLIER_BATCH)


def test_drift_compares_with_the_latest_earlier_batches_of_the_same_profile_and_model():
    history = [
        batch(f"old-{i}", f"2025-01-0{i}T00:00:00Z", score=0.1) for i in range(1, 4)  # beyond the baseline of 5
    ] + [batch(f"b-{i}", f"2025-02-0{i}T00:00:00Z", score=0.72) for i in range(1, 6)] + [
        batch("later", "2025-04-01T00:00:00Z", score=0.1),
        batch("other-profile", "2025-02-10T00:00:00Z", score=0.1, profile="brand-y"),
        batch("other-model", "2025-02-11T00:00:00Z", score=0.1, clip="ViT-B-32"),
    ]
    current = batch("now", "2025-03-01T00:00:00Z", score=0.7)
    result = drift(current, [*history, current])
    assert result.compared == tuple(f"b-{i}" for i in range(1, 6))
    assert result.score_delta == pytest.approx(-0.02) and result.centroid_distance == pytest.approx(0.0)
    assert result.passed and "5 earlier batch(es) of profile brand-x" in result.description


def angle_for(distance):
    """A unit vector at cosine distance `distance` from (1, 0)."""
    cos = 1.0 - distance
    return (cos, math.sqrt(1.0 - cos * cos))


@pytest.mark.parametrize(
    "score, distance, passes",
    [
        (0.7 + MAX_SCORE_DELTA, 0.0, True),
        (0.7 - MAX_SCORE_DELTA, 0.0, True),
        (0.7 + MAX_SCORE_DELTA + 0.001, 0.0, False),
        (0.7 - MAX_SCORE_DELTA - 0.001, 0.0, False),
        (0.7, MAX_CENTROID_DISTANCE, True),
        (0.7, MAX_CENTROID_DISTANCE + 0.001, False),
    ],
)
def test_drift_limits_are_inclusive(score, distance, passes):
    earlier = batch("before", "2025-01-01T00:00:00Z", score=0.7)
    result = drift(batch("now", "2025-01-02T00:00:00Z", score=score, vector=angle_for(distance)), [earlier])
    assert result.passed is passes
    assert result.score_delta == pytest.approx(score - 0.7)
    assert result.centroid_distance == pytest.approx(distance, abs=1e-9)


def test_batches_registered_in_the_same_second_are_ordered_by_key():
    a, b = batch("a-1", "2025-01-01T00:00:00Z"), batch("b-1", "2025-01-01T00:00:00Z", score=0.5)
    assert drift(b, [a]).compared == ("a-1",)
    assert drift(a, [b]).compared == ()


def test_centroid_and_cosine_distance():
    assert centroid([[3.0, 0.0], [0.0, 3.0]]) == pytest.approx((math.sqrt(0.5), math.sqrt(0.5)))
    assert cosine_distance((1, 0), (0, 2)) == pytest.approx(1.0)
    assert cosine_distance((1, 1), (2, 2)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="cancel out"):
        centroid([[1.0, 0.0], [-1.0, 0.0]])


def test_profile_batch_and_drift_survive_json():
    record = batch("a", "2025-01-01T00:00:00Z", vector=(0.6, 0.8))
    assert ProfileBatch.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    result = Drift(False, "drifted", "brand-x", ("a", "b"), 0.2, 0.3)
    assert Drift.from_dict(json.loads(json.dumps(result.to_dict()))) == result
