"""The daily budget ($ASSETQL_DAILY_BUDGET_USD): today's spend is the `cost_usd` every `images`
materialization of the UTC day recorded. At 80 % `budget_sensor` posts a `budget.alert` through the
notifier, once a day; at 100 % batch runs wait in the run queue: each is tagged `assetql/budget:
held` (as it is queued, by `queued_batch_tags`, which every sensor, schedule and launcher on the
instance uses; on the sensor's next tick for a run queued any other way, e.g. over GraphQL), which `dagster.yaml`'s tag concurrency limit of 0 keeps from starting;
when the spend is under the budget again (the next day, or a raised budget) the sensor re-tags them
`released` and the queue starts them in priority order."""

from __future__ import annotations

import json
import time

import dagster as dg

from assetql_dagster.defs import run_tags
from assetql_dagster.domain.costs import ALERT, HOLD, OK, budget_level
from assetql_dagster.pipeline.costs import BUDGET_ENV, daily_budget, day_of
from resources.notifier import Alert, Notifier

# The asset whose materializations record what each run spent (`cost_usd`).
IMAGES = "images"
BUDGET_SENSOR_INTERVAL_S = 60
PAGE = 1000
WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]


def spent_on(instance: dg.DagsterInstance, now: float) -> float:
    """USD the `images` materializations of `now`'s UTC day recorded (`cost_usd`)."""
    day = day_of(now)
    # UTC midnight: epoch seconds have no leap seconds, so every UTC day starts at a multiple of 86400.
    records_filter = dg.AssetRecordsFilter(asset_key=dg.AssetKey(IMAGES), after_timestamp=now - now % 86400)
    spent, cursor = 0.0, None
    while True:
        result = instance.fetch_materializations(records_filter, limit=PAGE, cursor=cursor)
        for record in result.records:
            materialization = record.asset_materialization
            entry = materialization.metadata.get("cost_usd") if materialization else None
            # A `now` in the past (a report, a test) must not count the days after it.
            if entry is not None and day_of(record.timestamp) == day:
                spent += float(entry.value)
        if not result.has_more:
            return spent
        cursor = result.cursor


def budget_tags(instance: dg.DagsterInstance, now: float | None = None) -> dict[str, str]:
    """The tag holding a batch run launched now in the queue when today's spend is at the budget, else none."""
    budget = daily_budget()
    if budget is None:
        return {}
    level = budget_level(spent_on(instance, time.time() if now is None else now), budget)
    return {run_tags.BUDGET: run_tags.HELD} if level == HOLD else {}


def queued_batch_tags(instance: dg.DagsterInstance, key: str, origin: str, priority: int = 0,
                      **extra: str) -> dict[str, str]:
    """`run_tags.batch_run_tags` of a batch run queued now, held when today's spend is at the budget."""
    return {**run_tags.batch_run_tags(key, origin, priority, **extra), **budget_tags(instance)}


def _waiting_batch_runs(instance: dg.DagsterInstance, held: bool) -> list[dg.DagsterRun]:
    tags = {run_tags.BUDGET: run_tags.HELD} if held else {}
    runs = instance.get_runs(dg.RunsFilter(statuses=WAITING, tags=tags))
    return [r for r in runs if run_tags.BATCH in r.tags and (held or r.tags.get(run_tags.BUDGET) != run_tags.HELD)]


def evaluate_budget(context: dg.SensorEvaluationContext, notifier: Notifier, now: float) -> dg.SkipReason | None:
    """Alert at 80 % (once per UTC day, the cursor remembers the day), hold queued batch runs at 100 %,
    release them below; a SkipReason says what it found."""
    budget = daily_budget()
    if budget is None:
        return dg.SkipReason(f"no daily budget: ${BUDGET_ENV} is not set")
    instance, day = context.instance, day_of(now).isoformat()
    spent = spent_on(instance, now)
    level = budget_level(spent, budget)
    line = f"spent {spent:.2f} of the daily budget of {budget:.2f} USD ({spent / budget:.0%}) on {day} UTC"
    done = []
    if level in (ALERT, HOLD) and json.loads(context.cursor or "{}").get("alerted") != day:
        alert = Alert(
            event="budget.alert", headline=f"AssetQL {line}" + ("; new batches are held" if level == HOLD else ""),
            facts={"day": day, "spent_usd": round(spent, 4), "budget_usd": budget, "share": round(spent / budget, 4),
                   "level": level},
        )
        delivered = notifier.send_alert(alert, context.log)
        context.update_cursor(json.dumps({"alerted": day}))
        done.append(f"alerted {delivered} of {len(notifier.urls)} webhook(s)")
    if level == HOLD:
        for run in _waiting_batch_runs(instance, held=False):
            instance.add_run_tags(run.run_id, {run_tags.BUDGET: run_tags.HELD})
            done.append(f"held run {run.run_id} of batch {run.tags[run_tags.BATCH]}")
    else:
        for run in _waiting_batch_runs(instance, held=True):
            instance.add_run_tags(run.run_id, {run_tags.BUDGET: run_tags.RELEASED})
            done.append(f"released run {run.run_id} of batch {run.tags[run_tags.BATCH]}")
    context.log.info(f"{line}: {level}" + (f"; {'; '.join(done)}" if done else ""))
    return None if done else dg.SkipReason(f"{line}: {level if level != OK else 'under 80 %'}, nothing to do")


@dg.sensor(minimum_interval_seconds=BUDGET_SENSOR_INTERVAL_S, default_status=dg.DefaultSensorStatus.RUNNING)
def budget_sensor(context: dg.SensorEvaluationContext, notifier: Notifier) -> dg.SkipReason | None:
    """The daily budget: an alert at 80 %, new batch runs held in the queue at 100 %."""
    return evaluate_budget(context, notifier, time.time())
