"""Notifications on batch completion: one JSON document per finished batch run, posted to webhooks.

`Notifier.send` posts a `BatchNotice` to every configured webhook (`webhook_url` and `webhook_urls`,
at once) as a plain JSON document (`format: json`, for any service that takes a webhook) or as a
Slack incoming-webhook message (`format: slack`, the same facts as text blocks). With no webhook,
notifications are off. Delivery is best effort: a bounded timeout per try, retries with backoff on
connection errors and 5xx (and 429) answers, then a logged warning; it never raises, so a webhook
that is down never fails anything in Dagster.

Signatures. With a `signing_secret`, every post carries

    X-AssetQL-Timestamp: <Unix time of the try, in whole seconds>
    X-AssetQL-Signature: sha256=<lowercase hex HMAC-SHA256, keyed with the secret (UTF-8),
                                 of the bytes  <timestamp> "." <raw request body>>

as GitHub's `X-Hub-Signature-256` with Stripe's signed timestamp: the receiver recomputes the HMAC
over the body exactly as received (before parsing the JSON), compares in constant time, and drops
a post whose timestamp is more than a few minutes from its clock, so that a captured post cannot be
replayed later. `verify_signature` does all of it; a receiver in Python may copy it with `signature`.
Every post also says its `X-AssetQL-Event` (`batch.completed` / `batch.failed`) and
`X-AssetQL-Delivery`, an id shared by the tries and webhooks of one notice, to drop a repeat by.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
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
SIGNATURE_HEADER = "X-AssetQL-Signature"
TIMESTAMP_HEADER = "X-AssetQL-Timestamp"
EVENT_HEADER = "X-AssetQL-Event"
DELIVERY_HEADER = "X-AssetQL-Delivery"
SIGNATURE_SCHEME = "sha256="
# How far a post's timestamp may be from the receiver's clock: retries are signed anew, so this
# only needs to cover the clocks' skew and the time on the wire (Stripe and Slack take 5 minutes).
TOLERANCE_S = 300


@dataclasses.dataclass(frozen=True)
class ExportedPackage:
    """One exporter's distribution package of the batch: the URI of its main file, the images it
    took, the files it wrote and whether it read back sound."""

    exporter: str
    uri: str
    images: int
    files: int
    valid: bool


@dataclasses.dataclass(frozen=True)
class BatchNotice:
    """The facts of one finished batch run: the batch (partition key and name), its outcome
    (`succeeded` or `failed`), images stored of planned and exported, failed rows, the share of
    scored images passing the style threshold (None when unscored), the run, why a failed run
    failed, the URIs of the exported files by kind (package, gallery, manifest, links) and the
    distribution packages the exporters wrote."""

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
    packages: tuple[ExportedPackage, ...] = ()

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


@dataclasses.dataclass(frozen=True)
class Alert:
    """A notice about the deployment rather than one batch (e.g. `budget.alert`): its event, one line, and facts."""

    event: str
    headline: str
    facts: dict[str, Any]


def is_http_url(value: str) -> bool:
    """Whether `value` is an absolute http(s) URL with a host."""
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def base_url(value: str, what: str) -> str:
    """`value` without a trailing slash, or "" when unset; ValueError unless it is an http(s) URL."""
    if not value:
        return ""
    if not is_http_url(value):
        raise ValueError(f"{what} must be an http(s) URL such as http://127.0.0.1:3000, got {value[:80]!r}")
    return value.rstrip("/")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-AssetQL-Signature` of `body` posted at `timestamp`: `sha256=` and the hex HMAC-SHA256,
    keyed with `secret`, of `timestamp`, a dot and `body`."""
    return SIGNATURE_SCHEME + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None, timestamp: str | None,
                     tolerance_s: float = TOLERANCE_S, now: float | None = None) -> bool:
    """Whether a post is AssetQL's: `header` (X-AssetQL-Signature) signs the raw `body` at `timestamp`
    (X-AssetQL-Timestamp) with `secret`, and `timestamp` is within `tolerance_s` of `now` (this clock)."""
    if not header or not timestamp or not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_s:
        return False  # stale (a replay) or from a clock far off
    # The timestamp as sent, not as parsed, is what was signed; compare_digest takes the same time
    # whichever byte differs, so a forger learns nothing from how fast a guess is refused.
    return hmac.compare_digest(signature(secret, timestamp, body).encode(), header.encode())


class Notifier(dg.ConfigurableResource):
    """Posts a `BatchNotice` to webhooks (nothing when there are none).

    `webhook_url` (one webhook, as before there could be several) and `webhook_urls` are posted to
    at once; with `signing_secret`, each post is signed (see the module). `ui_url` (the Dagster
    webserver) and `library_url` (the asset library), when set, add links to the run and to the
    batch. Each try waits at most `timeout_s`; connection errors and 5xx/429 answers are tried again
    up to `retries` times, `backoff_s` × 2^n apart.
    """

    webhook_url: str = ""
    webhook_urls: list[str] = []
    signing_secret: str = ""
    format: str = "json"
    ui_url: str = ""
    library_url: str = ""
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 1.0

    @property
    def urls(self) -> list[str]:
        """Every webhook, once each, in the order configured."""
        return list(dict.fromkeys(url for url in (self.webhook_url, *self.webhook_urls) if url))

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

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

    def headers(self, body: bytes, event: str, delivery: str) -> dict[str, str]:
        """The headers of one try: the event and delivery, and the signature of `body` now when signing."""
        headers = {"Content-Type": "application/json", EVENT_HEADER: event, DELIVERY_HEADER: delivery}
        if self.signing_secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = signature(self.signing_secret, timestamp, body)
        return headers

    def send(self, notice: BatchNotice, log: logging.Logger | Any) -> int:
        """Post `notice` to every webhook at once; how many took it. Failures are logged on `log` as
        warnings once the retries are spent, never raised."""
        urls = self.urls
        if not urls:
            return 0
        return self._post_all(self.payload(notice), notice.event, f"batch {notice.batch}", log)

    def send_alert(self, alert: Alert, log: logging.Logger | Any) -> int:
        """Post `alert` to every webhook at once, as `send` posts a notice; how many took it."""
        if not self.urls:
            return 0
        if self.format not in FORMATS:
            raise ValueError(f"notification format {self.format!r} must be one of {', '.join(FORMATS)}")
        if self.format == "json":
            payload = {"event": alert.event, "summary": alert.headline, **alert.facts}
        else:
            fields = [{"type": "mrkdwn", "text": f"*{_slack_escape(k)}*\n{_slack_escape(str(v))}"} for k, v in alert.facts.items()]
            payload = {"text": _slack_escape(alert.headline), "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f":warning: *{_slack_escape(alert.headline)}*"}},
                {"type": "section", "fields": fields},
            ]}
        return self._post_all(payload, alert.event, alert.event, log)

    def _post_all(self, payload: dict[str, Any], event: str, subject: str, log: logging.Logger | Any) -> int:
        urls = self.urls
        # Serialized once: the bytes signed are the bytes sent, to every webhook and on every try.
        body = json.dumps(payload, allow_nan=False).encode()
        delivery = uuid.uuid4().hex
        # In parallel, so that the sensor's evaluation is bounded by one webhook's retries, not the sum.
        with ThreadPoolExecutor(max_workers=len(urls)) as pool:
            return sum(pool.map(lambda url: self.deliver(url, body, event, subject, delivery, log), urls))

    def deliver(self, url: str, body: bytes, event: str, subject: str, delivery: str, log: logging.Logger | Any) -> bool:
        """Post `body` (the `event` about `subject`) to `url` with retries; whether it was taken (else a
        warning on `log`)."""
        tries, problem = 0, ""
        # A loop of its own rather than urllib3's Retry, which logs each retry with the URL's path:
        # the secret of a Slack webhook.
        while tries <= self.retries:
            if tries:
                time.sleep(self.backoff_s * 2 ** (tries - 1))
            tries += 1
            try:
                answer = requests.post(url, data=body, headers=self.headers(body, event, delivery),
                                       timeout=self.timeout_s)
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
        log.warning(f"notification of {event} for {subject} not delivered to "
                    f"{_redacted(url, url)} after {tries} tries: {_redacted(problem, url)[:300]}")
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
    shown += [f"{_slack_escape(p.exporter)} package: {_slack_escape(p.uri)}{'' if p.valid else ' (failed validation)'}"
              for p in notice.packages]
    if shown:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(shown)}})
    # `text` is what notifications and clients without blocks show.
    return {"text": _slack_escape(notice.headline()), "blocks": blocks}
