"""Notifications on batch completion: one JSON document per finished batch run, posted to a webhook.

`Notifier.send` posts a `BatchNotice` to `webhook_url` as a plain JSON document (`format: json`, for
any service that takes a webhook) or as a Slack incoming-webhook message (`format: slack`, the same
facts as text blocks). With no `webhook_url` notifications are off. Delivery is best effort: a
bounded timeout per try, retries with backoff on connection errors and 5xx (and 429) answers, then
a logged warning; it never raises, so a webhook that is down never fails anything in Dagster.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any
from urllib.parse import quote, urlsplit

import dagster as dg
import requests

FORMATS = ("json", "slack")
SUCCEEDED, FAILED = "succeeded", "failed"
# The activity log's actions and the document's `event`, by run outcome.
EVENTS = {SUCCEEDED: "batch.completed", FAILED: "batch.failed"}
# Answers worth another try: the service is overloaded or restarting. Others (400, 403, 404) will
# not change by trying again. A Retry-After is not waited for: the backoff keeps the sensor's
# evaluation bounded (at most (retries + 1) × timeout_s + backoff_s × (2^retries - 1) seconds).
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclasses.dataclass(frozen=True)
class BatchNotice:
    """The facts of one finished batch run: the batch (partition key and name), its outcome
    (`succeeded` or `failed`), images stored of planned and exported, failed rows, the share of
    scored images passing the style threshold (None when unscored), the run, why a failed run
    failed, and the URIs of the exported files by kind (package, gallery, manifest, links)."""

    batch: str
    name: str
    status: str
    images_stored: int
    images_planned: int
    images_exported: int | None
    failed_rows: int
    pass_rate: float | None
    run_id: str
    error: str = ""
    files: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in EVENTS:
            raise ValueError(f"batch notice status {self.status!r} must be one of {', '.join(EVENTS)}")

    @property
    def event(self) -> str:
        return EVENTS[self.status]

    def headline(self) -> str:
        """One line: what finished and how it went."""
        rate = "" if self.pass_rate is None else f", pass rate {self.pass_rate * 100:.0f} %"
        failed = f", {self.failed_rows} failed row(s)" if self.failed_rows else ""
        return (f"batch {self.name!r} ({self.batch}) {self.status}: {self.images_stored} of "
                f"{self.images_planned} images stored{failed}{rate}")


def base_url(value: str, what: str) -> str:
    """`value` without a trailing slash, or "" when unset; ValueError unless it is an http(s) URL."""
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an http(s) URL such as http://127.0.0.1:3000, got {value[:80]!r}")
    return value.rstrip("/")


class Notifier(dg.ConfigurableResource):
    """Posts a `BatchNotice` to a webhook (nothing when `webhook_url` is empty).

    `ui_url` (the Dagster webserver) and `library_url` (the asset library), when set, add links to
    the run and to the batch. Each try waits at most `timeout_s`; connection errors and 5xx/429
    answers are tried again up to `retries` times, `backoff_s` × 2^n apart.
    """

    webhook_url: str = ""
    format: str = "json"
    ui_url: str = ""
    library_url: str = ""
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 1.0

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url)

    def links(self, notice: BatchNotice) -> dict[str, str]:
        """Links to the run in the Dagster UI and to the batch in the asset library, those known."""
        found = {}
        if ui := base_url(self.ui_url, "the Dagster UI URL"):
            found["run"] = f"{ui}/runs/{quote(notice.run_id, safe='')}"
        if library := base_url(self.library_url, "the asset library URL"):
            found["library"] = f"{library}/batches/{quote(notice.batch, safe='')}"
        return found

    def document(self, notice: BatchNotice) -> dict[str, Any]:
        """The plain JSON document (`format: json`)."""
        links = self.links(notice)
        return {
            "event": notice.event,
            **dataclasses.asdict(notice),
            "summary": notice.headline(),
            "run_url": links.get("run"),
            "library_url": links.get("library"),
        }

    def payload(self, notice: BatchNotice) -> dict[str, Any]:
        """What is posted: the document, or a Slack message with the same facts."""
        if self.format not in FORMATS:
            raise ValueError(f"notification format {self.format!r} must be one of {', '.join(FORMATS)}")
        return self.document(notice) if self.format == "json" else slack_message(notice, self.links(notice))

    def send(self, notice: BatchNotice, log: logging.Logger | Any) -> bool:
        """Post `notice`; whether the webhook took it. Failures are logged on `log` as a warning once
        the retries are spent, never raised."""
        if not self.enabled:
            return False
        body = self.payload(notice)
        tries, problem = 0, ""
        # A loop of its own rather than urllib3's Retry, which logs each retry with the URL's path:
        # the secret of a Slack webhook.
        while tries <= self.retries:
            if tries:
                time.sleep(self.backoff_s * 2 ** (tries - 1))
            tries += 1
            try:
                answer = requests.post(self.webhook_url, json=body, timeout=self.timeout_s)
            except requests.ConnectionError as err:  # refused, reset, or no answer to connect
                problem = f"{type(err).__name__}: {err}"
                continue
            except requests.RequestException as err:
                # A read timeout may mean the webhook got the post and is slow to answer: not posted twice.
                problem = f"{type(err).__name__}: {err}"
                break
            if answer.ok:
                return True
            problem = f"HTTP {answer.status_code} {answer.reason}"
            if answer.status_code not in RETRY_STATUSES:
                break
        log.warning(f"notification of {notice.event} for batch {notice.batch} not delivered to "
                    f"{_redacted(self.webhook_url, self.webhook_url)} after {tries} tries: "
                    f"{_redacted(problem, self.webhook_url)[:300]}")
        return False


def _redacted(text: str, url: str) -> str:
    """`text` without the path and query of webhook `url`, which may be its secret (Slack's is)."""
    parts = urlsplit(url)
    secret = url[len(f"{parts.scheme}://{parts.netloc}"):]
    text = text.replace(url, f"{parts.scheme}://{parts.netloc}/…")
    return text.replace(secret, "/…") if secret not in ("", "/") else text


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn reads &, < and > as markup: names from a CSV must show as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(notice: BatchNotice, links: dict[str, str]) -> dict[str, Any]:
    """A Slack incoming-webhook message: the headline, the facts as fields, the error of a failed
    run, and the links."""
    mark = ":white_check_mark:" if notice.status == SUCCEEDED else ":x:"
    rate = "—" if notice.pass_rate is None else f"{notice.pass_rate * 100:.0f} %"
    exported = "—" if notice.images_exported is None else str(notice.images_exported)
    facts = [
        ("Batch", f"`{notice.batch}`"),
        ("Status", notice.status),
        ("Images stored", f"{notice.images_stored} of {notice.images_planned}"),
        ("Images exported", exported),
        ("Failed rows", str(notice.failed_rows)),
        ("Pass rate", rate),
        ("Run", f"`{notice.run_id}`"),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{mark} *{_slack_escape(notice.headline())}*"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(value)}"} for label, value in facts
        ]},
    ]
    if notice.error:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n{_slack_escape(notice.error)}"}})
    titles = {"run": "Open the run in Dagster", "library": "Open the batch in the asset library"}
    shown = [f"<{url}|{titles[kind]}>" for kind, url in links.items()]
    shown += [f"{kind}: {_slack_escape(uri)}" for kind, uri in notice.files.items()]
    if shown:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(shown)}})
    # `text` is what notifications and clients without blocks show.
    return {"text": _slack_escape(notice.headline()), "blocks": blocks}
