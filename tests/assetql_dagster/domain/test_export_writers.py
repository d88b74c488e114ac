import csv
import html
import io
import json
import re
import zipfile

import pytest

from assetql_dagster.domain.export_writers import (
    FORMULA_PREFIXES,
    LIST_SEPARATOR,
    MANIFEST_COLUMNS,
    ZipPackage,
    gallery_html,
    manifest_json,
    neutralize_cell,
    safe_zip_entry,
    write_manifest_csv,
)
from assetql_dagster.domain.records import ImageScore, ScoreSet
from assetql_dagster.domain.style_report import Drift, no_profile_drift, style_report

SCRIPT = "<script>alert('x')</script>"


def sample_row(**overrides):
    row = {
        "batch": "spring",
        "variant_id": "v1",
        "variation": 1,
        "file_name": "spring_v1.png",
        "prompt": "a red sword",
        "seed": 42,
        "style_score": 0.81,
        "verdict": "pass",
        "tags": ["sword", "red"],
        "extra": {"palette": "warm"},
    }
    return {**row, **overrides}


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_neutralize_cell_prefixes_every_dangerous_start(prefix):
    payload = f"{prefix}HYPERLINK(\"http://evil\")"
    assert neutralize_cell(payload) == "'" + payload


def test_neutralize_cell_leaves_safe_text_and_numbers():
    assert neutralize_cell("a red sword") == "a red sword"
    assert neutralize_cell(-0.5) == str(-0.5)
    assert neutralize_cell(None) == ""


def test_neutralize_cell_joins_lists_and_dumps_dicts():
    assert neutralize_cell(["a", "b"]) == LIST_SEPARATOR.join(["a", "b"])
    assert json.loads(neutralize_cell({"k": "v"})) == {"k": "v"}
    # A list whose first item is a formula is still neutralised as a whole.
    assert neutralize_cell(["=1+1", "b"]).startswith("'")


def test_write_manifest_csv_round_trips_with_neutralised_cells():
    rows = [sample_row(), sample_row(variant_id="v2", prompt="=cmd|'/c calc'!A1", seed=7)]
    data = write_manifest_csv(rows, MANIFEST_COLUMNS)
    parsed = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert list(parsed[0]) == MANIFEST_COLUMNS
    assert parsed[1]["prompt"] == "'" + rows[1]["prompt"]
    assert parsed[0]["tags"] == LIST_SEPARATOR.join(rows[0]["tags"])
    assert json.loads(parsed[0]["extra"]) == rows[0]["extra"]
    assert parsed[0]["negative_prompt"] == ""
    assert not data.startswith(b"\xef\xbb\xbf")


def test_write_manifest_csv_validates_columns():
    with pytest.raises(ValueError, match="duplicates \\['seed'\\]"):
        write_manifest_csv([], ["seed", "seed"])
    with pytest.raises(ValueError, match="at least one column"):
        write_manifest_csv([], [])


def test_manifest_json_keeps_values_as_data():
    rows = [sample_row(prompt="=not a formula in JSON")]
    meta = {"batch": "spring", "threshold": 0.6}
    document = json.loads(manifest_json(rows, meta))
    assert document == {"batch": meta, "images": rows}


@pytest.mark.parametrize("name", ["images/a.png", "manifest.csv", "a/b/c.txt"])
def test_safe_zip_entry_accepts_relative_names(name):
    assert safe_zip_entry(name) == name


@pytest.mark.parametrize(
    "name", ["", "/etc/passwd", "C:/x.png", "c:x.png", "a\\b.png", "../x.png", "a/../../x.png", "a//b", "./a", "a\x00b"]
)
def test_safe_zip_entry_rejects_unsafe_names(name):
    with pytest.raises(ValueError, match="ZIP entry name"):
        safe_zip_entry(name)


def test_zip_package_writes_entries_with_fitting_compression():
    buffer = io.BytesIO()
    entries = {"images/a.png": b"\x89PNG fake", "manifest.csv": b"batch\nspring\n" * 50}
    with ZipPackage(buffer) as package:
        for name, data in entries.items():
            package.add_bytes(name, data)
        assert package.names == list(entries)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        assert archive.namelist() == list(entries)
        assert archive.getinfo("images/a.png").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("manifest.csv").compress_type == zipfile.ZIP_DEFLATED
        assert {name: archive.read(name) for name in entries} == entries


def test_zip_package_writes_to_a_path(tmp_path):
    target = tmp_path / "batch.zip"
    with ZipPackage(target) as package:
        package.add_bytes("a.txt", b"hello")
    with zipfile.ZipFile(target) as archive:
        assert archive.read("a.txt") == b"hello"


@pytest.mark.parametrize("name", ["../evil.txt", "/abs.txt"])
def test_zip_package_rejects_unsafe_names(name):
    with ZipPackage(io.BytesIO()) as package, pytest.raises(ValueError, match="ZIP entry name"):
        package.add_bytes(name, b"x")


def test_zip_package_rejects_duplicates_ignoring_case():
    with ZipPackage(io.BytesIO()) as package:
        package.add_bytes("A.png", b"x")
        with pytest.raises(ValueError, match="already added"):
            package.add_bytes("a.PNG", b"y")


def test_gallery_escapes_user_text():
    rows = [
        sample_row(prompt=SCRIPT, file_name="<b>.png", tags=[SCRIPT]),
        sample_row(style_score=None, verdict="review"),
    ]
    page = gallery_html({"batch": SCRIPT}, rows, lambda row: f"images/{row['file_name']}?a=1&b=2")
    assert "<script" not in page
    assert html.escape(SCRIPT) in page
    assert html.escape("images/<b>.png?a=1&b=2") in page
    assert page.count("<figure>") == len(rows)
    assert "badge-pass" in page and "badge-review" in page


def test_gallery_is_self_contained():
    row = sample_row()
    page = gallery_html({"batch": "spring"}, [row], lambda r: r["file_name"])
    assert not any(marker in page for marker in ("<script", "<link", "@import", "url("))
    assert re.findall(r'(?:src|href)="([^"]*)"', page) == [row["file_name"], row["file_name"]]


def test_gallery_rejects_script_links():
    with pytest.raises(ValueError, match="image link"):
        gallery_html({}, [sample_row()], lambda row: "javascript:alert(1)")


def test_gallery_summary_style_and_filters():
    rows = [
        sample_row(style_score=0.9, verdict="pass", tags=["sword:0.95", "indoor:0.05"]),
        sample_row(file_name="b.png", style_score=0.5, verdict="review", tags=["shield:0.50"]),
    ]
    meta = {"batch": "spring", "failed_rows": [{"variant_id": "v9", "variation": 2, "reason": "TimeoutError: slow"}]}
    thumb = "data:image/jpeg;base64,/9j/AAAA"
    page = gallery_html(meta, rows, lambda r: r["file_name"], lambda r: thumb,
                        palette=[("#aabbcc", 0.6), ("red;}body{", 0.4)], references=[thumb])
    # The summary a creative team reads first, not the raw settings.
    assert "<b>2</b>images" in page and "<b>1</b>pass" in page and "<b>1</b>review" in page
    assert "<b>0.70 ± 0.20</b>style score" in page and "<b>1</b>failed rows" in page
    assert "v9 #2: TimeoutError: slow" in page
    # Palette swatches only for real hex colours; references and thumbnails embedded.
    assert "background:#aabbcc" in page and "red;}body{" not in page
    assert page.count(f'src="{thumb}"') == 3
    # Tags under the confidence floor are hidden; verdict filters and score order work by CSS.
    assert "sword:0.95" in page and "indoor:0.05" not in page
    assert '<div class="card pass" style="--rank:0">' in page and '<div class="card review" style="--rank:1">' in page
    assert "<script" not in page


def test_gallery_rejects_data_uris_that_are_not_images():
    with pytest.raises(ValueError, match="image link"):
        gallery_html({}, [sample_row()], lambda r: "a.png", lambda r: "data:text/html;base64,PHNjcmlwdD4=")


def test_gallery_shows_the_style_report_and_each_images_version():
    scores = ScoreSet(0.6, {}, (
        ImageScore("a", "a.png", "pass", style_score=0.9, palette_score=0.8, attempts=1),
        ImageScore("b", "b.png", "review", style_score=0.5, palette_score=0.4, version=2, attempts=3),
    ))
    report = style_report(scores, pass_rate_before=0.0, regenerated=2, budget=2, regeneration_seconds=3.0)
    drift = Drift(False, "drifted", "brand-x", ("spring-1", "spring-2"), 0.125, 0.02)
    rows = [
        sample_row(file_name="a.png", style_score=0.9, verdict="pass", version=1, attempts=1),
        sample_row(file_name="b.png", style_score=0.5, verdict="review", version=2, attempts=3),
    ]
    page = gallery_html({"batch": "spring"}, rows, lambda r: r["file_name"], style_report=report, drift=drift)
    header = page[page.index("<header>"):page.index("</header>")]
    assert "<h2>Style report</h2>" in header
    # Mean ± coefficient of variation (0.2 / 0.7), over the 15 % limit: flagged.
    assert '<div class="stat over"><b>0.70 ± 28.6 %</b>style score mean ± CV (limit &lt; 15 %)</div>' in header
    assert "<b>0 % → 50 %</b>pass rate before → after the loop" in header
    assert "<b>2 of 2</b>regenerated" in header and "<b>3.0 s</b>generation time in the loop (GPU), 1.50 s per image" in header
    assert '<div class="stat over"><b>+0.125 / 0.020</b>drift: mean score / centroid distance vs 2 earlier' in header
    # The attempts histogram: one image with 1 generation, one with 3, bars scaled to the largest.
    assert header.count('<span class="bar" style="width:120px">') == 2
    assert "<tr><td>1</td><td>1</td>" in header and "<tr><td>3</td><td>1</td>" in header
    # The per-parameter plot is inline SVG: no external resource, nothing to run.
    assert header.count("<svg ") == 1 and 'data-parameter="palette"' in header
    assert "<script" not in page
    assert '<div class="version">v1 · 1 attempt</div>' in page and '<div class="version">v2 · 3 attempts</div>' in page


def test_gallery_report_of_an_unscored_batch_without_earlier_batches():
    report = style_report(ScoreSet(0.85, {}, (ImageScore("a", "a.png", "unscored"),)))
    rows = [sample_row(style_score=None, verdict="unscored")]
    page = gallery_html({"batch": "plain"}, rows, lambda r: r["file_name"], style_report=report, drift=no_profile_drift())
    assert "<b>not scored</b>no style reference" in page
    assert "<b>no drift</b>no earlier batch of this profile (the batch names no style profile)" in page
    assert "<svg" not in page and "class=\"version\"" not in page
