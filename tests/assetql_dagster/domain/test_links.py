import html
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from assetql_dagster.domain.links import (
    MAX_EXPIRY_S,
    MIN_EXPIRY_S,
    PRESIGNED_MAX_EXPIRY_S,
    embed_snippet,
    links_rows,
    parse_expiry,
    validate_expiry,
)


class _ImgTags(HTMLParser):
    def __init__(self, markup: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _items(count: int) -> list[dict]:
    return [{"key": f"raw/b1/{i:04d}.png", "file_name": f"{i:04d}.png", "width": 512,
             "height": 768} for i in range(count)]


def test_expiry_limits_are_one_hour_seven_days_presigned_and_a_year():
    assert timedelta(seconds=MIN_EXPIRY_S) == timedelta(hours=1)
    assert timedelta(seconds=PRESIGNED_MAX_EXPIRY_S) == timedelta(days=7)
    assert timedelta(seconds=MAX_EXPIRY_S) == timedelta(days=365)


@pytest.mark.parametrize("seconds", [MIN_EXPIRY_S, 36 * 3600, PRESIGNED_MAX_EXPIRY_S + 1, MAX_EXPIRY_S])
def test_validate_expiry_accepts_the_range(seconds):
    assert validate_expiry(seconds) == seconds


@pytest.mark.parametrize("seconds", [MIN_EXPIRY_S - 1, MAX_EXPIRY_S + 1, 0, -3600])
def test_validate_expiry_explains_the_range_and_sigv4(seconds):
    with pytest.raises(ValueError) as info:
        validate_expiry(seconds)
    message = str(info.value)
    assert f"{seconds}s" in message
    assert "1 hour" in message and "365 days" in message and "'permanent'" in message
    # Why 7 days is not the limit everywhere: lifetimes beyond it need CloudFront signing.
    assert "7 days" in message and "CloudFront" in message and "SigV4" in message


@pytest.mark.parametrize("value", [3600.5, "3600", True, None])
def test_validate_expiry_wants_whole_seconds(value):
    with pytest.raises(ValueError, match=f"{value!r} must be a whole number of seconds"):
        validate_expiry(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1h", timedelta(hours=1)), ("36h", timedelta(hours=36)), ("7d", timedelta(days=7)),
     ("3600", timedelta(hours=1)), (7200, timedelta(hours=2)), ("90m", timedelta(minutes=90)),
     (" 2D ", timedelta(days=2)), ("5400s", timedelta(minutes=90)), ("8d", timedelta(days=8)),
     ("30d", timedelta(days=30)), ("365d", timedelta(days=365))],
)
def test_parse_expiry(value, expected):
    assert parse_expiry(value) == int(expected.total_seconds())


@pytest.mark.parametrize("value", ["permanent", " Permanent ", "PERMANENT"])
def test_parse_expiry_reads_permanent_as_none(value):
    assert parse_expiry(value) is None


@pytest.mark.parametrize("value", ["366d", "30m", "59"])
def test_parse_expiry_validates_the_result(value):
    with pytest.raises(ValueError, match="out of range"):
        parse_expiry(value)


@pytest.mark.parametrize("value", ["", "1w", "1.5h", "h", "-1h", "forever", "permanently"])
def test_parse_expiry_rejects_unknown_formats(value):
    with pytest.raises(ValueError, match=f"{value!r} is not understood.*'36h'.*'permanent'"):
        parse_expiry(value)


def test_embed_snippet_escapes_and_lazy_loads():
    url = "https://cdn.example/a.png?X-Amz-Signature=abc&X-Amz-Expires=3600"
    alt = 'cabin "snow" <night>'
    snippet = embed_snippet(url, alt, 512, 768)
    [(tag, attrs)] = _ImgTags(snippet).tags
    assert tag == "img"
    assert attrs == {"src": url, "alt": alt, "width": "512", "height": "768", "loading": "lazy"}
    assert html.escape(alt) in snippet and "<night>" not in snippet


@pytest.mark.parametrize(("width", "height"), [(0, 512), (512, -1), (512.0, 512), (True, 512)])
def test_embed_snippet_rejects_bad_sizes(width, height):
    with pytest.raises(ValueError, match="must be a positive whole number of pixels"):
        embed_snippet("https://x/y.png", "y", width, height)


def test_links_rows_for_presigned_urls():
    now = datetime(2025, 12, 1, 9, 30, tzinfo=timezone.utc)
    rows = links_rows(_items(2), lambda key: f"https://signed/{key}", 36 * 3600, local=False,
                      now=now)
    expires = now + timedelta(hours=36)
    assert [r["file_name"] for r in rows] == ["0000.png", "0001.png"]
    assert [r["url"] for r in rows] == ["https://signed/raw/b1/0000.png",
                                        "https://signed/raw/b1/0001.png"]
    for row in rows:
        assert datetime.fromisoformat(row["expires_at"].replace("Z", "+00:00")) == expires
        assert row["expires_at"].endswith("Z")
        assert row["embed_html"] == embed_snippet(row["url"], row["file_name"], 512, 768)
        assert row["local"] is False


def test_links_rows_for_local_files_never_expire():
    items = [{**_items(1)[0], "alt": "snowy cabin"}]
    [row] = links_rows(items, lambda key: f"file:///data/{key}", MAX_EXPIRY_S, local=True)
    assert row["expires_at"] == "" and row["local"] is True
    assert row["embed_html"] == embed_snippet(row["url"], "snowy cabin", 512, 768)


def test_links_rows_for_permanent_urls_never_expire():
    [row] = links_rows(_items(1), lambda key: f"https://cdn.example/{key}", None, local=False)
    assert row["expires_at"] == "" and row["local"] is False
    assert row["url"] == "https://cdn.example/raw/b1/0000.png"


def test_links_rows_validate_expiry_even_locally():
    with pytest.raises(ValueError, match="365 days"):
        links_rows(_items(1), str, MAX_EXPIRY_S + 1, local=True)


def test_links_rows_name_the_incomplete_item():
    items = _items(2)
    del items[1]["height"]
    with pytest.raises(ValueError, match=r"links item 1 \('0001.png'\) lacks \['height'\]"):
        links_rows(items, str, MIN_EXPIRY_S, local=False)
