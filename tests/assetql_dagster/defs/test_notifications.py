"""The batch completion sensors on real tiny runs: the document posted (signed, to every webhook) and
the activity log entry."""

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
    WEBHOOK_SECRET_ENV,
    resources_from_env,
)
from assetql_dagster.pipeline.notifications import batch_notice
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import register_batch
from resources.notifier import Notifier
from resources.storage import LocalStorage

SECRET = "whsec-sensor-0123456789"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One instance holding a successful run of a registered two-image batch (exported by the
    built-in formats and the downloads exporter) and a failed run of a partition whose batch was
    never registered."""
    root = tmp_path_factory.mktemp("notifications")
    storage = LocalStorage(root=str(root / "data"))
    catalog = catalog_beside(storage)
    folder = make_batch(root / "inbox", rows=2)
    with (folder / "batch.yaml").open("a") as settings:
        settings.write("exports: [zip, manifest, gallery, links, downloads]\n")
    key = register_batch(storage, folder, creator="ana").key
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


def test_a_finished_batch_run_posts_its_facts_signed_to_every_webhook_and_logs_batch_completed(runs, capfd):
    key, result = runs["key"], runs["succeeded"]
    with Webhook(secret=SECRET) as hook, Webhook(secret=SECRET) as other:
        evaluate(batch_succeeded_sensor, runs, result, key,
                 Notifier(webhook_urls=[hook.url, other.url], signing_secret=SECRET,
                          ui_url="http://127.0.0.1:3000", library_url="http://127.0.0.1:8080"))
    [post], [copy] = hook.posts, other.posts
    assert post["verified"] and copy["verified"] and post["raw"] == copy["raw"]
    assert "notified batch.completed to 2 of 2 webhook(s)" in capfd.readouterr().err
    doc = post["body"]
    assert (doc["event"], doc["batch"], doc["name"], doc["status"]) == ("batch.completed", key, "demo", "succeeded")
    assert (doc["images_stored"], doc["images_planned"], doc["images_exported"], doc["failed_rows"]) == (2, 2, 2, 0)
    assert doc["run_id"] == result.run_id and doc["run_url"] == f"http://127.0.0.1:3000/runs/{result.run_id}"
    assert doc["library_url"] == f"http://127.0.0.1:8080/batches/{key}"
    assert 0.0 <= doc["pass_rate"] <= 1.0  # the sample batch has references: its images are scored
    assert set(doc["files"]) == {"package", "gallery", "manifest", "links"}
    assert doc["files"]["package"] == runs["storage"].uri(f"exports/{key}/{key}.zip")
    written = read_record(runs["storage"], key, "downloads_export")
    assert doc["packages"] == [{
        "exporter": "downloads", "uri": runs["storage"].uri(f"exports/{key}/downloads/index.json"),
        "images": 2, "files": len(written.files), "valid": True,
    }]
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
    assert ("not notified: notifications are off (neither $ASSETQL_NOTIFY_WEBHOOK_URL nor any "
            "$ASSETQL_NOTIFY_WEBHOOK_URL_<NAME> is set)") in capfd.readouterr().err


def test_a_webhook_that_is_down_only_warns(runs, capfd):
    key, result = runs["key"], runs["succeeded"]
    with Webhook(statuses=[500] * 5) as hook:
        evaluate(batch_succeeded_sensor, runs, result, key, Notifier(webhook_url=hook.url, retries=1, backoff_s=0.0))
    assert len(hook.posts) == 2
    err = capfd.readouterr().err
    assert "WARNING - notification of batch.completed for batch" in err and "after 2 tries: HTTP 500" in err


def test_only_a_successful_run_lists_the_distribution_packages(runs):
    # A failed run's packages, if any, are an earlier run's: the notice does not offer them as its own.
    key, storage = runs["key"], runs["storage"]
    assert [p.exporter for p in batch_notice(storage, key, "run-ok", succeeded=True).packages] == ["downloads"]
    assert batch_notice(storage, key, "run-failed", succeeded=False, error="boom").packages == ()


def test_the_notifier_is_bound_from_the_environment_with_the_webhook_as_an_env_var(monkeypatch):
    monkeypatch.setenv(STORAGE_ENV, "local")
    monkeypatch.setenv(NOTIFY_WEBHOOK_ENV, "https://hooks.slack.example/services/T0/B0/secret")
    monkeypatch.setenv(NOTIFY_FORMAT_ENV, "slack")
    monkeypatch.setenv(DAGSTER_URL_ENV, "http://dagster.internal:3000/")
    monkeypatch.setenv(LIBRARY_URL_ENV, "https://library.example")
    monkeypatch.setenv(f"{NOTIFY_WEBHOOK_ENV}_OPS", "https://ops.example/hooks/assetql")
    monkeypatch.setenv(f"{NOTIFY_WEBHOOK_ENV}_2", "http://10.0.0.2:9000/hook")
    monkeypatch.setenv(f"{NOTIFY_WEBHOOK_ENV}_EMPTY", "")
    monkeypatch.setenv(WEBHOOK_SECRET_ENV, SECRET)
    bound = resources_from_env()["notifier"]
    # The UI shows the variables' names, never the URLs or the secret.
    assert bound.webhook_url == dg.EnvVar(NOTIFY_WEBHOOK_ENV)
    assert bound.webhook_urls == [dg.EnvVar(f"{NOTIFY_WEBHOOK_ENV}_2"), dg.EnvVar(f"{NOTIFY_WEBHOOK_ENV}_OPS")]
    assert bound.signing_secret == dg.EnvVar(WEBHOOK_SECRET_ENV)
    assert (bound.format, bound.ui_url, bound.library_url) == ("slack", "http://dagster.internal:3000", "https://library.example")
    with dg.build_resources({"notifier": bound}) as built:
        assert built.notifier.urls == ["https://hooks.slack.example/services/T0/B0/secret", "http://10.0.0.2:9000/hook",
                                       "https://ops.example/hooks/assetql"]
        assert built.notifier.signing_secret == SECRET
    for name in (NOTIFY_WEBHOOK_ENV, f"{NOTIFY_WEBHOOK_ENV}_OPS", f"{NOTIFY_WEBHOOK_ENV}_2", WEBHOOK_SECRET_ENV,
                 NOTIFY_FORMAT_ENV, DAGSTER_URL_ENV, LIBRARY_URL_ENV):
        monkeypatch.delenv(name)
    off = resources_from_env()["notifier"]
    assert (off.enabled, off.format, off.ui_url, off.signing_secret) == (False, "json", "", "")


@pytest.mark.parametrize(("name", "value", "message"), [
    (NOTIFY_FORMAT_ENV, "xml", "ASSETQL_NOTIFY_FORMAT='xml' is not a notification format; expected one of ('json', 'slack')"),
    (DAGSTER_URL_ENV, "dagster:3000", "$ASSETQL_DAGSTER_URL must be an http(s) URL"),
    (f"{NOTIFY_WEBHOOK_ENV}_OPS", "ftp://hooks.example/T0", "$ASSETQL_NOTIFY_WEBHOOK_URL_OPS must be an http(s) URL"),
])
def test_a_wrong_notification_setting_stops_loading_with_a_clear_error(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as raised:
        resources_from_env()
    assert str(raised.value).startswith(message)


def test_a_wrong_webhook_url_is_named_by_its_variable_not_shown(monkeypatch):
    monkeypatch.setenv(NOTIFY_WEBHOOK_ENV, "hooks.slack.example/services/T0/B0/secret")
    with pytest.raises(ValueError) as raised:
        resources_from_env()
    assert str(raised.value).startswith("$ASSETQL_NOTIFY_WEBHOOK_URL must be an http(s) URL")
    assert "T0/B0/secret" not in str(raised.value)
