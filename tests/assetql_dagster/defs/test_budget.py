"""The daily budget on a real test instance: spend recorded as `images` materializations, an alert
through the notifier's webhook at 80 % (once a day), and at 100 % queued batch runs held by the
tag concurrency limit of the repository's dagster.yaml until the budget allows them again."""

import contextlib
import json
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._daemon.types import DaemonHeartbeat
from dagster._utils.tags import TagConcurrencyLimitsCounter
from harness.batch_runs import finished_run
from harness.webhook import Webhook

from assetql_dagster.defs import run_tags
from assetql_dagster.defs.budget import budget_sensor, budget_tags
from assetql_dagster.defs.launching import InstanceLauncher
from assetql_dagster.defs.registration import registered_batch_sensor
from resources.notifier import Notifier

DAGSTER_YAML = Path(__file__).resolve().parents[3] / "dagster.yaml"
LIMITS = yaml.safe_load(DAGSTER_YAML.read_text())["concurrency"]["runs"]["tag_concurrency_limits"]


def spend(instance: dg.DagsterInstance, usd: float) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization("images", metadata={"cost_usd": usd}))


@contextlib.contextmanager
def queueing_launcher(instance: dg.DagsterInstance):
    """An InstanceLauncher whose runs wait in the queue, as under a live daemon (a heartbeat says so)."""
    instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), QueuedRunCoordinatorDaemon.daemon_type(), None, None))
    with InstanceLauncher(instance) as launcher:
        assert launcher.queue_is_served()
        yield launcher


def queued_batch_run(launcher: InstanceLauncher, key: str) -> str:
    launcher.add_partition(key)
    run_id = launcher.launch(key)
    assert launcher.instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.QUEUED
    return run_id


def held(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run queue (Dagster's own counter over dagster.yaml's limits) keeps the run waiting."""
    return TagConcurrencyLimitsCounter(LIMITS, []).is_blocked(instance.get_run_by_id(run_id))


def evaluate(instance, hook: Webhook, cursor: str | None = None, format: str = "json"):
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"notifier": Notifier(webhook_url=hook.url, retries=0, format=format)})
    return budget_sensor(context), context.cursor


def test_the_budget_alerts_once_a_day_at_80_percent(monkeypatch):
    monkeypatch.setenv("ASSETQL_DAILY_BUDGET_USD", "10")
    with dg.instance_for_test() as instance, Webhook() as hook:
        spend(instance, 7.5)
        result, cursor = evaluate(instance, hook)
        assert isinstance(result, dg.SkipReason) and "75%" in result.skip_message and not hook.posts
        spend(instance, 0.6)
        result, cursor = evaluate(instance, hook, cursor)
        [post] = hook.posts
        today = time.strftime("%Y-%m-%d", time.gmtime())
        assert post["headers"]["X-AssetQL-Event"] == "budget.alert"
        assert post["body"] == {
            "event": "budget.alert", "day": today, "spent_usd": 8.1, "budget_usd": 10.0, "share": 0.81,
            "level": "alert", "summary": f"AssetQL spent 8.10 of the daily budget of 10.00 USD (81%) on {today} UTC",
        }
        assert json.loads(cursor) == {"alerted": today}
        # The same day again: no second alert.
        result, cursor = evaluate(instance, hook, cursor)
        assert len(hook.posts) == 1 and isinstance(result, dg.SkipReason)
        # A Slack webhook gets the same facts as a message.
        evaluate(instance, hook, format="slack")
        slack = hook.posts[1]["body"]
        assert slack["text"] == post["body"]["summary"]
        assert "*spent_usd*\n8.1" in [field["text"] for field in slack["blocks"][1]["fields"]]


def test_at_100_percent_queued_batch_runs_are_held_and_released_when_the_budget_allows(monkeypatch):
    monkeypatch.setenv("ASSETQL_DAILY_BUDGET_USD", "10")
    with dg.instance_for_test() as instance, Webhook() as hook, queueing_launcher(instance) as launcher:
        waiting = queued_batch_run(launcher, "early")
        assert not held(instance, waiting) and budget_tags(instance) == {}
        spend(instance, 10.0)
        assert budget_tags(instance) == {run_tags.BUDGET: run_tags.HELD}
        evaluate(instance, hook)
        assert held(instance, waiting)
        assert hook.posts[0]["body"]["level"] == "hold"
        assert hook.posts[0]["body"]["summary"].endswith("; new batches are held")
        # A run queued from now on is held from the start: the launchers tag it, and so does the
        # registration sensor's request.
        late = queued_batch_run(launcher, "late")
        assert held(instance, late)
        # The finished register_batch run the registration sensor reacts to: only its tags matter.
        register_run = finished_run(instance, {run_tags.REGISTERED: "next", run_tags.ORIGIN: "inbox"})
        context = dg.build_run_status_sensor_context(
            sensor_name=registered_batch_sensor.name, dagster_instance=instance,
            dagster_run=instance.get_run_by_id(register_run.run_id), dagster_event=register_run.get_run_success_event())
        request = registered_batch_sensor(context)
        assert request.tags[run_tags.BUDGET] == run_tags.HELD and request.tags[run_tags.BATCH] == "next"

        # A raised budget (as the next day) releases them to the queue.
        monkeypatch.setenv("ASSETQL_DAILY_BUDGET_USD", "100")
        result, _ = evaluate(instance, hook)
        assert result is None and not held(instance, waiting) and not held(instance, late)
        assert instance.get_run_by_id(waiting).tags[run_tags.BUDGET] == run_tags.RELEASED


def test_without_a_budget_the_sensor_skips_and_nothing_is_held(monkeypatch):
    monkeypatch.delenv("ASSETQL_DAILY_BUDGET_USD", raising=False)
    with dg.instance_for_test() as instance, Webhook() as hook:
        spend(instance, 1e6)
        result, _ = evaluate(instance, hook)
        assert result.skip_message == "no daily budget: $ASSETQL_DAILY_BUDGET_USD is not set"
        assert budget_tags(instance) == {} and not hook.posts
    monkeypatch.setenv("ASSETQL_DAILY_BUDGET_USD", "a lot")
    with pytest.raises(ValueError, match="daily budget 'a lot' must be a number of USD > 0"):
        budget_tags(None)
