import base64
import re
from html.parser import HTMLParser

from assetql_dagster.domain.compare_page import compare_page_html

THUMB = "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0 jpeg").decode()
HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def version(number: int, current: bool = False, **fields) -> dict:
    return {
        "version": number, "current": current, "seed": 100 + number, "prompt": f"prompt {number}",
        "style_boost": 0.25 * (number - 1), "palette_pull": 0.25 * (number - 1), "style_score": 0.5 + number / 10,
        "verdict": "review", "clip_similarity": 0.7,
        "scores": {"palette": 0.1 * number, "lighting": 0.5, "composition": 0.6, "texture": 0.7, "embedding": 0.9},
        "reason": "initial" if number == 1 else "auto-regenerate", "created_at": "2026-01-01T00:00:00Z",
        "key": f"versions/b/img/v{number}.png", "thumb_key": f"versions/b/img/v{number}_thumb.jpg", **fields,
    }


def document(versions: list[dict], **fields) -> dict:
    current = next(v["version"] for v in versions if v["current"])
    return {
        "batch": "demo-12345678", "variant_id": "sword-01", "variation": 1, "image_id": "img", "file_name": "img.png",
        "current": current, "pinned": True, "threshold": 0.84, "manual_regenerations": {"used": 1, "max": 5},
        "versions": versions, "changes": [{"at": "2026-01-02T00:00:00Z", "action": "rollback", "from": 3, "to": 2}],
        **fields,
    }


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text, of a page."""

    def __init__(self, page: str):
        super().__init__()
        self.tags, self.text = [], []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_every_version_is_shown_side_by_side_with_the_current_one_highlighted():
    versions = [version(1), version(2, current=True), version(3)]
    page = compare_page_html(document(versions), {1: THUMB, 2: THUMB, 3: THUMB}, {2: "file:///data/v2.png"})
    parsed = Elements(page)
    sections = [a for tag, a in parsed.tags if tag == "section"]
    assert [s["id"] for s in sections] == ["v1", "v2", "v3"]
    assert [s["class"] for s in sections] == ["version", "version current", "version"]
    images = [a for tag, a in parsed.tags if tag == "img"]
    assert [i["src"] for i in images] == [THUMB] * 3 and [i["alt"] for i in images] == [f"version {n}" for n in (1, 2, 3)]
    assert [a["href"] for tag, a in parsed.tags if tag == "a"] == ["file:///data/v2.png"]
    text = " ".join(parsed.text)
    for expected in ("v2 (pinned)", "1 of 5", "0.84", "0.80", "prompt 3", "auto-regenerate", "seed", "rollback v3 → v2"):
        assert expected in text, expected
    # One "current" badge, in the current card; scores as bars of their width.
    assert page.count("badge-current") == 1 + page.count(".badge-current")
    assert 'style="width:30.0%"' in page
    # Standalone: no scripts, nothing fetched from elsewhere.
    assert "<script" not in page and not re.search(r"(src|href)=\"https?:", page)


def test_hostile_values_are_escaped_and_unsafe_links_left_out():
    hostile = version(1, current=True, prompt=HOSTILE, reason=HOSTILE, verdict=HOSTILE, seed=HOSTILE,
                      scores={"palette": HOSTILE, "lighting": None, "composition": 2.5, "texture": -1, "embedding": True})
    page = compare_page_html(
        document([hostile], file_name=f"{HOSTILE}.png", variant_id=HOSTILE, batch=HOSTILE,
                 changes=[{"at": HOSTILE, "action": HOSTILE, "from": HOSTILE, "to": 1}]),
        {1: "javascript:alert(3)"},
        {1: "javascript:alert(4)"},
    )
    parsed = Elements(page)
    assert "<script" not in page and "onerror" not in " ".join(str(a) for _, a in parsed.tags)
    assert [tag for tag, _ in parsed.tags].count("img") == 0 and "javascript:" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert HOSTILE in " ".join(parsed.text)  # shown as text, exactly as given
    # Scores that are not numbers show as a dash; bars only from numbers, clamped to 0-100 %.
    assert 'style="width:100.0%"' in page and 'style="width:0.0%"' in page
    assert re.findall(r'style="([^"]*)"', page) == [f"width:{w}%" for w in ("100.0", "0.0")]
