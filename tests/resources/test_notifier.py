"""The notifier against a real HTTP server on loopback: payloads, signatures, several webhooks, retries,
giving up without raising."""

import json
import logging
import socket
import time

import pytest
from harness.webhook import Webhook

from resources.notifier import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BatchNotice,
    ExportedPackage,
    Notifier,
    signature,
    verify_signature,
)

SECRET = "whsec-test-0123456789abcdef"
NOTICE = BatchNotice(
    batch="shoes-1a2b", name="shoes <spring> & co", status="succeeded", images_stored=7, images_planned=8,
    images_exported=7, failed_rows=1, pass_rate=0.75, run_id="run-42",
    files={"package": "/data/exports/shoes.zip"},
    packages=(ExportedPackage("downloads", "file:///data/exports/shoes-1a2b/downloads/index.json", 7, 3, True),),
)


def notifier(url: str, **kwargs) -> Notifier:
    return Notifier(webhook_url=url, backoff_s=0.0, timeout_s=2.0, **kwargs)


@pytest.fixture
def log():
    return logging.getLogger("test_notifier")


def test_json_posts_the_plain_document_with_links(log):
    with Webhook() as hook:
        sent = notifier(hook.url, ui_url="http://dagster.example:3000/", library_url="https://library.example").send(NOTICE, log)
    assert sent == 1
    [post] = hook.posts
    assert post["path"] == "/hooks/T0/secret-token" and post["type"] == "application/json"
    doc = post["body"]
    assert doc["event"] == "batch.completed" and doc["status"] == "succeeded"
    assert (doc["batch"], doc["name"], doc["run_id"]) == ("shoes-1a2b", "shoes <spring> & co", "run-42")
    assert (doc["images_stored"], doc["images_planned"], doc["images_exported"], doc["failed_rows"]) == (7, 8, 7, 1)
    assert doc["pass_rate"] == 0.75 and doc["files"] == {"package": "/data/exports/shoes.zip"}
    assert doc["packages"] == [{"exporter": "downloads", "uri": "file:///data/exports/shoes-1a2b/downloads/index.json",
                                "images": 7, "files": 3, "valid": True}]
    assert doc["run_url"] == "http://dagster.example:3000/runs/run-42"
    assert doc["library_url"] == "https://library.example/batches/shoes-1a2b"
    assert doc["summary"] == "batch 'shoes <spring> & co' (shoes-1a2b) succeeded: 7 of 8 images stored, 1 failed row(s), pass rate 75 %"


def test_json_without_known_urls_has_no_links(log):
    with Webhook() as hook:
        notifier(hook.url).send(NOTICE, log)
    assert hook.posts[0]["body"]["run_url"] is None and hook.posts[0]["body"]["library_url"] is None


def test_slack_posts_the_same_facts_as_escaped_text_blocks(log):
    failed = BatchNotice(
        batch="shoes-1a2b", name="shoes <spring> & co", status="failed", images_stored=3, images_planned=8,
        images_exported=None, failed_rows=0, pass_rate=None, run_id="run-43", error="images: OSError: disk full",
    )
    with Webhook() as hook:
        assert notifier(hook.url, format="slack", ui_url="http://127.0.0.1:3000").send(failed, log) == 1
    message = hook.posts[0]["body"]
    assert message["text"] == "batch 'shoes &lt;spring&gt; &amp; co' (shoes-1a2b) failed: 3 of 8 images stored"
    headline, facts, error, links = message["blocks"]
    assert headline["text"]["text"].startswith(":x: *batch 'shoes &lt;spring&gt;")
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in facts["fields"]}
    assert fields == {
        "*Batch*": "`shoes-1a2b`", "*Status*": "failed", "*Images stored*": "3 of 8", "*Images exported*": "—",
        "*Failed rows*": "0", "*Pass rate*": "—", "*Run*": "`run-43`",
    }
    assert error["text"]["text"] == "*Error*\nimages: OSError: disk full"
    assert links["text"]["text"] == "<http://127.0.0.1:3000/runs/run-43|Open the run in Dagster>"


def test_a_503_is_tried_again_and_then_delivered(log, caplog):
    with Webhook(statuses=[503, 502]) as hook:
        assert notifier(hook.url, retries=3).send(NOTICE, log) == 1
    assert len(hook.posts) == 3 and hook.posts[0]["body"] == hook.posts[2]["body"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_gives_up_after_the_retries_with_a_warning_that_hides_the_secret(log, caplog):
    with Webhook(statuses=[503] * 10) as hook, caplog.at_level(logging.WARNING):
        assert notifier(hook.url, retries=2).send(NOTICE, log) == 0
    assert len(hook.posts) == 3  # the first try and two retries
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("notification of batch.completed for batch shoes-1a2b not delivered to http://127.0.0.1:")
    assert "after 3 tries: HTTP 503" in warning
    assert "secret-token" not in warning


def test_a_client_error_is_not_tried_again(log, caplog):
    with Webhook(statuses=[404]) as hook, caplog.at_level(logging.WARNING):
        assert notifier(hook.url).send(NOTICE, log) == 0
    assert len(hook.posts) == 1
    assert "404" in caplog.text and "secret-token" not in caplog.text


def test_a_refused_connection_is_a_warning_not_an_error(log, caplog):
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.WARNING):
        assert notifier(f"http://127.0.0.1:{port}/hook/secret-token", retries=1).send(NOTICE, log) == 0
    assert "ConnectionError" in caplog.text and "secret-token" not in caplog.text


def test_without_a_webhook_nothing_is_sent():
    off = Notifier()
    assert off.enabled is False and off.send(NOTICE, logging.getLogger("unused")) == 0


def test_an_unknown_format_or_url_is_a_clear_error():
    with pytest.raises(ValueError, match="notification format 'xml' must be one of json, slack"):
        Notifier(webhook_url="http://127.0.0.1:9/hook", format="xml").payload(NOTICE)
    with pytest.raises(ValueError, match="the Dagster UI URL must be an http"):
        Notifier(ui_url="dagster:3000").links(NOTICE)
    with pytest.raises(ValueError, match="status 'done' must be one of succeeded, failed"):
        BatchNotice("b", "n", "done", 0, 0, None, 0, None, "r")


def test_a_signed_post_verifies_on_the_receiver(log):
    with Webhook(secret=SECRET) as hook:
        before = int(time.time())
        assert notifier(hook.url, signing_secret=SECRET).send(NOTICE, log) == 1
    [post] = hook.posts
    assert post["verified"] is True
    headers = post["headers"]
    timestamp = headers[TIMESTAMP_HEADER]
    assert before <= int(timestamp) <= time.time()
    # The documented scheme, recomputed by hand: hex HMAC-SHA256 of "<timestamp>.<raw body>".
    assert headers[SIGNATURE_HEADER] == signature(SECRET, timestamp, post["raw"])
    assert headers[SIGNATURE_HEADER].startswith("sha256=") and len(headers[SIGNATURE_HEADER]) == 7 + 64
    assert headers[EVENT_HEADER] == "batch.completed" and len(headers[DELIVERY_HEADER]) == 32
    assert post["body"]["batch"] == "shoes-1a2b"


def test_without_a_secret_posts_are_not_signed(log):
    with Webhook() as hook:
        notifier(hook.url).send(NOTICE, log)
    headers = hook.posts[0]["headers"]
    assert SIGNATURE_HEADER not in headers and TIMESTAMP_HEADER not in headers
    assert headers[EVENT_HEADER] == "batch.completed"


def test_a_tampered_body_another_secret_or_a_stale_timestamp_does_not_verify(log):
    with Webhook() as hook:
        notifier(hook.url, signing_secret=SECRET).send(NOTICE, log)
    raw, headers = hook.posts[0]["raw"], hook.posts[0]["headers"]
    header, timestamp = headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
    sent_at = int(timestamp)
    assert verify_signature(SECRET, raw, header, timestamp, now=sent_at + 299)
    tampered = json.dumps({**json.loads(raw), "pass_rate": 1.0}).encode()
    assert not verify_signature(SECRET, tampered, header, timestamp, now=sent_at)
    assert not verify_signature(SECRET, raw + b" ", header, timestamp, now=sent_at)
    assert not verify_signature("another-secret", raw, header, timestamp, now=sent_at)
    # A replay: the same post five minutes and a second later, or with a fresh timestamp put in.
    assert not verify_signature(SECRET, raw, header, timestamp, now=sent_at + 301)
    assert not verify_signature(SECRET, raw, header, str(sent_at + 60), now=sent_at + 60)
    assert not verify_signature(SECRET, raw, header, timestamp, now=sent_at - 301)  # a clock far ahead
    for bad_header, bad_timestamp in [(None, timestamp), ("", timestamp), (header, None), (header, "-1"),
                                      (header, f" {timestamp}"), (header, "１２"), (header.upper(), timestamp)]:
        assert not verify_signature(SECRET, raw, bad_header, bad_timestamp, now=sent_at)


def test_a_receiver_with_another_secret_refuses_and_is_not_tried_again(log, caplog):
    with Webhook(secret="the-receivers-secret") as hook, caplog.at_level(logging.WARNING):
        assert notifier(hook.url, signing_secret=SECRET, retries=3).send(NOTICE, log) == 0
    assert len(hook.posts) == 1 and hook.posts[0]["verified"] is False
    assert "after 1 tries: HTTP 401" in caplog.text


def test_a_500_is_tried_again_signed_anew_and_then_delivered(log):
    with Webhook(statuses=[500], secret=SECRET) as hook:
        assert notifier(hook.url, signing_secret=SECRET, retries=2).send(NOTICE, log) == 1
    first, second = hook.posts
    assert first["verified"] and second["verified"]
    assert first["raw"] == second["raw"]
    # One delivery id for every try, so that a receiver that took a post answered 500 can drop the repeat.
    assert first["headers"][DELIVERY_HEADER] == second["headers"][DELIVERY_HEADER]


def test_every_webhook_gets_the_same_post_once(log):
    with Webhook(secret=SECRET) as first, Webhook(secret=SECRET) as second:
        hooks = notifier(first.url, webhook_urls=[second.url, first.url], signing_secret=SECRET)
        assert hooks.urls == [first.url, second.url]
        assert hooks.send(NOTICE, log) == 2
    [one], [two] = first.posts, second.posts
    assert one["verified"] and two["verified"] and one["raw"] == two["raw"]
    assert one["headers"][DELIVERY_HEADER] == two["headers"][DELIVERY_HEADER]


def test_a_webhook_that_refuses_does_not_stop_the_others(log, caplog):
    with Webhook(statuses=[404]) as down, Webhook() as up, caplog.at_level(logging.WARNING):
        assert Notifier(webhook_urls=[down.url, up.url], backoff_s=0.0, timeout_s=2.0).send(NOTICE, log) == 1
    assert len(down.posts) == 1 and len(up.posts) == 1
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "after 1 tries: HTTP 404" in warning and "secret-token" not in warning


def test_slack_lists_the_distribution_packages(log):
    invalid = ExportedPackage("social", "s3://bucket/exports/shoes-1a2b/social/index.json", 7, 9, False)
    notice = BatchNotice(**{**NOTICE.__dict__, "packages": (*NOTICE.packages, invalid)})
    with Webhook() as hook:
        notifier(hook.url, format="slack").send(notice, log)
    links = hook.posts[0]["body"]["blocks"][-1]["text"]["text"].split("\n")
    assert links == [
        "package: /data/exports/shoes.zip",
        "downloads package: file:///data/exports/shoes-1a2b/downloads/index.json",
        "social package: s3://bucket/exports/shoes-1a2b/social/index.json (failed validation)",
    ]
