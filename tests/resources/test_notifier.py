"""The notifier against a real HTTP server on loopback: payloads, retries, giving up without raising."""

import logging
import socket

import pytest
from harness.webhook import Webhook

from resources.notifier import BatchNotice, Notifier

NOTICE = BatchNotice(
    batch="shoes-1a2b", name="shoes <spring> & co", status="succeeded", images_stored=7, images_planned=8,
    images_exported=7, failed_rows=1, pass_rate=0.75, run_id="run-42",
    files={"package": "/data/exports/shoes.zip"},
)


def notifier(url: str, **kwargs) -> Notifier:
    return Notifier(webhook_url=url, backoff_s=0.0, timeout_s=2.0, **kwargs)


@pytest.fixture
def log():
    return logging.getLogger("test_notifier")


def test_json_posts_the_plain_document_with_links(log):
    with Webhook() as hook:
        sent = notifier(hook.url, ui_url="http://dagster.example:3000/", library_url="https://library.example").send(NOTICE, log)
    assert sent is True
    [post] = hook.posts
    assert post["path"] == "/hooks/T0/secret-token" and post["type"] == "application/json"
    doc = post["body"]
    assert doc["event"] == "batch.completed" and doc["status"] == "succeeded"
    assert (doc["batch"], doc["name"], doc["run_id"]) == ("shoes-1a2b", "shoes <spring> & co", "run-42")
    assert (doc["images_stored"], doc["images_planned"], doc["images_exported"], doc["failed_rows"]) == (7, 8, 7, 1)
    assert doc["pass_rate"] == 0.75 and doc["files"] == {"package": "/data/exports/shoes.zip"}
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
        assert notifier(hook.url, format="slack", ui_url="http://127.0.0.1:3000").send(failed, log) is True
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
        assert notifier(hook.url, retries=3).send(NOTICE, log) is True
    assert len(hook.posts) == 3 and hook.posts[0]["body"] == hook.posts[2]["body"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_gives_up_after_the_retries_with_a_warning_that_hides_the_secret(log, caplog):
    with Webhook(statuses=[503] * 10) as hook, caplog.at_level(logging.WARNING):
        assert notifier(hook.url, retries=2).send(NOTICE, log) is False
    assert len(hook.posts) == 3  # the first try and two retries
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("notification of batch.completed for batch shoes-1a2b not delivered to http://127.0.0.1:")
    assert "after 3 tries: HTTP 503" in warning
    assert "secret-token" not in warning


def test_a_client_error_is_not_tried_again(log, caplog):
    with Webhook(statuses=[404]) as hook, caplog.at_level(logging.WARNING):
        assert notifier(hook.url).send(NOTICE, log) is False
    assert len(hook.posts) == 1
    assert "404" in caplog.text and "secret-token" not in caplog.text


def test_a_refused_connection_is_a_warning_not_an_error(log, caplog):
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.WARNING):
        assert notifier(f"http://127.0.0.1:{port}/hook/secret-token", retries=1).send(NOTICE, log) is False
    assert "ConnectionError" in caplog.text and "secret-token" not in caplog.text


def test_without_a_webhook_nothing_is_sent():
    off = Notifier()
    assert off.enabled is False and off.send(NOTICE, logging.getLogger("unused")) is False


def test_an_unknown_format_or_url_is_a_clear_error():
    with pytest.raises(ValueError, match="notification format 'xml' must be one of json, slack"):
        Notifier(webhook_url="http://127.0.0.1:9/hook", format="xml").payload(NOTICE)
    with pytest.raises(ValueError, match="the Dagster UI URL must be an http"):
        Notifier(ui_url="dagster:3000").links(NOTICE)
    with pytest.raises(ValueError, match="status 'done' must be one of succeeded, failed"):
        BatchNotice("b", "n", "done", 0, 0, None, 0, None, "r")
