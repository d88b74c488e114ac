"""The batch completion sensors on real tiny runs: the document posted and the activity log entry."""

import dagster as dg
import pytest
from harness.batch_runs import catalog_beside, materialize_partition
from harness.sample_batches import make_batch
from harness.webhook import Webhook

from assetql_dagster.defs.notifications import batch_failed_sensor, batch_succeeded_sensor
from assetql_dagster.defs.resources import (
    DAGSTER_URL_ENV,
    LIBRARY_URL_ENV,
    NOTIFY_FORMAT_ENV,
    NOTIFY_WEBHOOK_ENV,
    STORAGE_ENV,
    resources_from_env,
)
from assetql_dagster.pipeline.registration import register_batch
from resources.notifier import Notifier
from resources.storage import LocalStorage


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One instance holding a successful run of a registered two-image batch and a failed run of a
    partition whose batch was never registered."""
    root = tmp_path_factory.mktemp("notifications")
    storage = LocalStorage(root=str(root / "data"))
    catalog = catalog_beside(storage)
    key = register_batch(storage, make_batch(root / "inbox", rows=2), creator="ana").key
    with dg.instance_for_test() as instance:
        succeeded = materialize_partition(storage, key, catalog=catalog, instance=instance)
        failed = materialize_partition(storage, "ghost-00000000", catalog=catalog, instance=instance,
                                       selection=["batch_input"])
        assert succeeded.success and not failed.success
        yield {"storage": storage, "catalog": catalog, "instance": instance, "key": key,
               "succeeded": succeeded, "failed": failed}


def evaluate(sensor, runs, result, key, notifier):
    event = result.get_run_success_event() if result.success else result.get_run_failure_event()
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=event, dagster_instance=runs["instance"],
        dagster_run=result.dagster_run, partition_key=key,
        resources={"storage": runs["storage"], "catalog": runs["catalog"], "notifier": notifier},
    )
    if result.success:
        return sensor(context)
    return sensor(context.for_run_failure())


def test_a_finished_batch_run_posts_its_facts_and_logs_batch_completed(runs):
    key, result = runs["key"], runs["succeeded"]
    with Webhook() as hook:
        evaluate(batch_succeeded_sensor, runs, result, key,
                 Notifier(webhook_url=hook.url, ui_url="http://127.0.0.1:3000", library_url="http://127.0.0.1:8080"))
    [post] = hook.posts
    doc = post["body"]
    assert (doc["event"], doc["batch"], doc["name"], doc["status"]) == ("batch.completed", key, "demo", "succeeded")
    assert (doc["images_stored"], doc["images_planned"], doc["images_exported"], doc["failed_rows"]) == (2, 2, 2, 0)
    assert doc["run_id"] == result.run_id and doc["run_url"] == f"http://127.0.0.1:3000/runs/{result.run_id}"
    assert doc["library_url"] == f"http://127.0.0.1:8080/batches/{key}"
    assert 0.0 <= doc["pass_rate"] <= 1.0  # the sample batch has references: its images are scored
    assert set(doc["files"]) == {"package", "gallery", "manifest", "links"}
    assert doc["files"]["package"] == runs["storage"].uri(f"exports/{key}/{key}.zip")
    [entry] = [e for e in runs["catalog"].activity(target=key) if e["action"] == "batch.completed"]
    assert entry["user"] == "dagster" and entry["target"] == key
    assert entry["detail"].startswith(f"run {result.run_id}: batch 'demo' ({key}) succeeded: 2 of 2 images stored")


def test_a_failed_batch_run_posts_why_and_logs_batch_failed(runs):
    result = runs["failed"]
    with Webhook() as hook:
        evaluate(batch_failed_sensor, runs, result, "ghost-00000000", Notifier(webhook_url=hook.url, format="slack"))
    message = hook.posts[0]["body"]
    assert message["text"] == "batch 'ghost-00000000' (ghost-00000000) failed: 0 of 0 images stored"
    error = [b["text"]["text"] for b in message["blocks"] if b.get("text", {}).get("text", "").startswith("*Error*")]
    assert error and "Steps failed: ['batch_input']" in error[0]
    assert "batch_input: FileNotFoundError: no stored record at 'batches/ghost-00000000/source.json'" in error[0]
    [entry] = runs["catalog"].activity(target="ghost-00000000")
    assert (entry["user"], entry["action"]) == ("dagster", "batch.failed")
    assert f"run {result.run_id}: " in entry["detail"] and "error: " in entry["detail"]


def test_with_notifications_off_the_activity_is_still_logged_and_the_log_says_why(runs, capfd):
    key, result = runs["key"], runs["succeeded"]
    before = len(runs["catalog"].activity(target=key))
    evaluate(batch_succeeded_sensor, runs, result, key, Notifier())
    assert len(runs["catalog"].activity(target=key)) == before + 1
    assert "not notified: notifications are off ($ASSETQL_NOTIFY_WEBHOOK_URL is not set)" in capfd.readouterr().err


def test_a_webhook_that_is_down_only_warns(runs, capfd):
    key, result = runs["key"], runs["succeeded"]
    with Webhook(statuses=[500] * 5) as hook:
        evaluate(batch_succeeded_sensor, runs, result, key, Notifier(webhook_url=hook.url, retries=1, backoff_s=0.0))
    assert len(hook.posts) == 2
    err = capfd.readouterr().err
    assert "WARNING - notification of batch.completed for batch" in err and "after 2 tries: HTTP 500" in err


def test_the_notifier_is_bound_from_the_environment_with_the_webhook_as_an_env_var(monkeypatch):
    monkeypatch.setenv(STORAGE_ENV, "local")
    monkeypatch.setenv(NOTIFY_WEBHOOK_ENV, "https://hooks.slack.example/services/T0/B0/secret")
    monkeypatch.setenv(NOTIFY_FORMAT_ENV, "slack")
    monkeypatch.setenv(DAGSTER_URL_ENV, "http://dagster.internal:3000/")
    monkeypatch.setenv(LIBRARY_URL_ENV, "https://library.example")
    bound = resources_from_env()["notifier"]
    assert bound.webhook_url == dg.EnvVar(NOTIFY_WEBHOOK_ENV)  # the UI shows the name, never the URL
    assert (bound.format, bound.ui_url, bound.library_url) == ("slack", "http://dagster.internal:3000", "https://library.example")
    for name in (NOTIFY_WEBHOOK_ENV, NOTIFY_FORMAT_ENV, DAGSTER_URL_ENV, LIBRARY_URL_ENV):
        monkeypatch.delenv(name)
    off = resources_from_env()["notifier"]
    assert (off.enabled, off.format, off.ui_url) == (False, "json", "")


@pytest.mark.parametrize(("name", "value", "message"), [
    (NOTIFY_FORMAT_ENV, "xml", "ASSETQL_NOTIFY_FORMAT='xml' is not a notification format; expected one of ('json', 'slack')"),
    (DAGSTER_URL_ENV, "dagster:3000", "$ASSETQL_DAGSTER_URL must be an http(s) URL"),
])
def test_a_wrong_notification_setting_stops_loading_with_a_clear_error(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as raised:
        resources_from_env()
    assert str(raised.value).startswith(message)
