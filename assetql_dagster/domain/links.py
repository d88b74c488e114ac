"""Shareable image links: expiry rules, embed snippets and the rows of a links export."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

MIN_EXPIRY_S = 3600
# S3 presigned URLs are signed with SigV4, which caps their lifetime at 7 days.
PRESIGNED_MAX_EXPIRY_S = 7 * 24 * 3600
# CloudFront signed URLs have no cap of their own; a year bounds how long a leaked link works.
MAX_EXPIRY_S = 365 * 24 * 3600
# Links that never expire: plain CDN URLs, which need a distribution that allows public reads.
PERMANENT = "permanent"

_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_EXPIRY_PATTERN = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
_ITEM_FIELDS = ("key", "file_name", "width", "height")


def validate_expiry(seconds: int) -> int:
    """Return `seconds` if it is a whole number within the link lifetime range (1 hour to 365 days)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ValueError(f"link expiry {seconds!r} must be a whole number of seconds")
    if not MIN_EXPIRY_S <= seconds <= MAX_EXPIRY_S:
        raise ValueError(
            f"link expiry {seconds}s is out of range: expected {MIN_EXPIRY_S}s (1 hour) to "
            f"{MAX_EXPIRY_S}s (365 days), or '{PERMANENT}'; over {PRESIGNED_MAX_EXPIRY_S}s (7 days) "
            "needs a CDN with CloudFront signing, because S3 presigned URLs are signed with SigV4, "
            "which rejects lifetimes over 7 days"
        )
    return seconds


def parse_expiry(value: int | str) -> int | None:
    """Parse `3600`, `"3600"`, `"36h"`, `"90m"`, `"30d"` into validated seconds, or `"permanent"` into None."""
    if isinstance(value, str):
        if value.strip().lower() == PERMANENT:
            return None
        match = _EXPIRY_PATTERN.match(value)
        if match is None:
            raise ValueError(
                f"link expiry {value!r} is not understood: expected seconds, a number with "
                f"unit s, m, h or d (e.g. '36h' or '30d'), or '{PERMANENT}'"
            )
        value = int(match[1]) * _UNIT_SECONDS[match[2].lower()]
    return validate_expiry(value)


def embed_snippet(url: str, alt: str, width: int, height: int) -> str:
    """An HTML `<img>` tag for `url` that browsers load lazily."""
    for name, size in (("width", width), ("height", height)):
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"embed {name} {size!r} must be a positive whole number of pixels")
    return (
        f'<img src="{html.escape(url)}" alt="{html.escape(alt)}" '
        f'width="{width}" height="{height}" loading="lazy">'
    )


def _expiry_time(expires_in_s: int, now: datetime) -> str:
    """`now + expires_in_s` as an ISO 8601 UTC timestamp ending in Z."""
    moment = (now + timedelta(seconds=expires_in_s)).astimezone(timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def links_rows(
    items: list[dict],
    url_for: Callable[[str], str],
    expires_in_s: int | None,
    local: bool,
    now: datetime | None = None,
) -> list[dict]:
    """Rows of file_name, url, expires_at (ISO UTC; "" for local and permanent links), embed_html and local.

    Each item needs `key` (passed to `url_for`), `file_name`, `width` and `height`; `alt`
    defaults to the file name. `expires_in_s` None means permanent links.
    """
    # Validated even for local links so a setting that works in development also works on S3.
    if expires_in_s is not None:
        validate_expiry(expires_in_s)
    never = local or expires_in_s is None
    expires_at = "" if never else _expiry_time(expires_in_s, now or datetime.now(timezone.utc))
    rows = []
    for index, item in enumerate(items):
        missing = [f for f in _ITEM_FIELDS if f not in item]
        if missing:
            raise ValueError(f"links item {index} ({item.get('file_name', '?')!r}) lacks {missing}")
        url = url_for(item["key"])
        rows.append({
            "file_name": item["file_name"],
            "url": url,
            "expires_at": expires_at,
            "embed_html": embed_snippet(url, item.get("alt", item["file_name"]), item["width"],
                                        item["height"]),
            "local": local,
        })
    return rows
