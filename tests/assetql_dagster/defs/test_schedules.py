import shutil
import textwrap
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml

from assetql_dagster.definitions import build_definitions, defs
from assetql_dagster.domain.campaigns import PALETTE_LOCK, CampaignError, campaign_partition_key, load_campaigns
from assetql_dagster.domain.records import BatchInput
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.pipeline.records import write_record
from assetql_dagster.pipeline.registration import registered_batch
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.defs.schedules import CAMPAIGNS_ENV, campaign_schedules, schedule_name
from resources.s3 import S3Connection
from resources.storage import LocalStorage

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
BERLIN = ZoneInfo("Europe/Berlin")
TICK = datetime(2026, 12, 1, 6, 0, tzinfo=BERLIN)


def write_campaigns(folder: Path, **fields) -> Path:
    campaign = {"name": "holiday", "cron": "0 6 1 12 *", "timezone": "Europe/Berlin", "source": "demo",
                "modifiers": "winter holiday, snow, warm lights", "exports": ["zip", "links"], **fields}
    path = folder / "campaigns.yaml"
    path.write_text(yaml.safe_dump({"campaigns": [campaign]}))
    return path


def tick(schedule, instance, storage, when=TICK, s3=None):
    """Evaluate one tick of `schedule` the way the scheduler daemon does."""
    resources = {"storage": storage, "s3": s3 or S3Connection()}
    repository = dg.Definitions.merge(defs, dg.Definitions(schedules=[schedule])).get_repository_def()
    # The context opens its own instance from the reference; closing it closes that instance.
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, resources=resources, repository_def=repository
    ) as context:
        return schedule.evaluate_tick(context)


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(root=str(tmp_path / "data"))


def test_a_tick_registers_a_dated_partition_and_requests_its_run(tmp_path, batch_factory, storage):
    batch_factory(rows=2)
    [schedule] = campaign_schedules(write_campaigns(tmp_path / "inbox", settings={"seed": 7}))
    assert (schedule.name, schedule.cron_schedule, schedule.execution_timezone) == (
        "campaign_holiday", "0 6 1 12 *", "Europe/Berlin")
    with dg.instance_for_test() as instance:
        [request] = tick(schedule, instance, storage).run_requests
        key = request.partition_key
        assert instance.get_dynamic_partitions(batches_partitions.name) == [key]
        source = registered_batch(storage, key)
        assert key == campaign_partition_key("holiday", TICK.date(), source.content_hash)
        assert key.startswith("holiday-2026-12-01-")
        assert source.name == "holiday" and source.settings.seed == 7 and source.settings.steps == 2
        assert source.settings.modifiers == "winter holiday, snow, warm lights"
        assert source.settings.exports == ("zip", "links")
        assert len(source.references) == 2
        assert request.run_key == "campaign:holiday:2026-12-01"
        assert request.tags["assetql/batch"] == key and request.tags["assetql/exports"] == "zip,links"
        assert request.tags["dagster/schedule_name"] == "campaign_holiday"

        again = tick(schedule, instance, storage)
        assert [(r.partition_key, r.run_key) for r in again.run_requests] == [(key, request.run_key)]
        next_year = tick(schedule, instance, storage, when=TICK.replace(year=2027)).run_requests[0]
        assert next_year.partition_key.startswith("holiday-2027-12-01-")
        assert len(instance.get_dynamic_partitions(batches_partitions.name)) == 2


def test_the_date_is_the_campaigns_own(tmp_path, batch_factory, storage):
    batch_factory(rows=2)
    [schedule] = campaign_schedules(write_campaigns(tmp_path / "inbox"))
    late_on_nov_30_in_utc = datetime(2026, 11, 30, 23, 30, tzinfo=ZoneInfo("UTC"))
    with dg.instance_for_test() as instance:
        [request] = tick(schedule, instance, storage, when=late_on_nov_30_in_utc).run_requests
    assert request.partition_key.startswith("holiday-2026-12-01-")


def test_modifiers_are_added_to_the_batch_own(tmp_path, batch_factory, storage):
    folder = batch_factory(rows=2)
    with (folder / "batch.yaml").open("a") as fh:
        fh.write("modifiers: painterly\n")
    [schedule] = campaign_schedules(write_campaigns(tmp_path / "inbox"))
    with dg.instance_for_test() as instance:
        key = tick(schedule, instance, storage).run_requests[0].partition_key
    assert registered_batch(storage, key).settings.modifiers == "painterly, winter holiday, snow, warm lights"


def test_a_scheduled_profile_applies_brand_colours_and_words_and_a_profile_alone_makes_no_schedule(
    tmp_path, batch_factory, storage
):
    folder = batch_factory(rows=2)
    # The source names another campaign: the schedule's own campaign replaces it, applied once.
    with (folder / "batch.yaml").open("a") as fh:
        fh.write("campaign: winter-look\nmodifiers: painterly\n")
    path = folder.parent / "campaigns.yaml"
    path.write_text(yaml.safe_dump({"campaigns": [
        {"name": "holiday", "cron": "0 6 1 12 *", "source": "demo", "brand_colors": ["#C8102E", "#FFFFFF"],
         "theme": "winter holiday", "audience": "young families", "settings": {"locks": {"lighting": 40}}},
        {"name": "winter-look", "tone": "calm"},
    ]}))
    [schedule] = campaign_schedules(path)
    assert schedule.name == "campaign_holiday"
    with dg.instance_for_test() as instance:
        key = tick(schedule, instance, storage).run_requests[0].partition_key
    source = registered_batch(storage, key)
    assert (source.campaign, source.settings.campaign, source.name) == ("holiday", "holiday", "holiday")
    assert list(source.settings.palette) == ["#c8102e", "#ffffff"]
    assert source.settings.lock_weights == {"palette": PALETTE_LOCK, "lighting": 40}
    assert source.settings.modifiers == "painterly, winter holiday theme, for young families"


def test_a_references_folder_replaces_the_batch_references(tmp_path, batch_factory, storage):
    folder = batch_factory(rows=2, references=False)
    style = tmp_path / "inbox" / "winter-refs"
    style.mkdir()
    shutil.copy(EXAMPLES / "fantasy-items" / "references" / sorted(
        p.name for p in (EXAMPLES / "fantasy-items" / "references").iterdir())[0], style)
    [schedule] = campaign_schedules(write_campaigns(folder.parent, style_profile="winter-refs"))
    with dg.instance_for_test() as instance:
        key = tick(schedule, instance, storage).run_requests[0].partition_key
    references = registered_batch(storage, key).references
    assert [k.rsplit("/", 1)[-1] for k in references] == sorted(p.name for p in style.iterdir())


def test_a_batch_name_reuses_the_newest_stored_references(tmp_path, batch_factory, storage):
    batch_factory(rows=2, references=False)
    for key, registered, data in [("fantasy-items-00000001", "2026-01-01T00:00:00Z", b"old"),
                                  ("fantasy-items-00000002", "2026-02-01T00:00:00Z", b"new")]:
        write_record(storage, f"batches/{key}/source.json", BatchInput(
            batch=key, name="fantasy-items", origin="test", registered_at=registered, content_hash="0" * 64,
            settings=BatchSettings(), references=(f"style-references/{key}/look.png",), rows=()))
        storage.write_bytes(f"style-references/{key}/look.png", (EXAMPLES / "fantasy-items" / "references" / sorted(
            p.name for p in (EXAMPLES / "fantasy-items" / "references").iterdir())[0]).read_bytes() + data)
    [schedule] = campaign_schedules(write_campaigns(tmp_path / "inbox", style_profile="fantasy-items"))
    with dg.instance_for_test() as instance:
        key = tick(schedule, instance, storage).run_requests[0].partition_key
    source = registered_batch(storage, key)
    [reference] = source.references
    assert storage.read_bytes(reference).endswith(b"new")
    assert source.origin.startswith("campaign holiday")
    assert (source.campaign, source.creator) == ("holiday", "schedule campaign_holiday")


def test_an_unknown_reference_batch_fails_the_tick_saying_why(tmp_path, batch_factory, storage):
    batch_factory(rows=2)
    [schedule] = campaign_schedules(write_campaigns(tmp_path / "inbox", style_profile="autumn"))
    with dg.instance_for_test() as instance, pytest.raises(dg.DagsterError) as info:
        tick(schedule, instance, storage)
    assert "style_profile 'autumn' names no batch with stored style references" in str(info.value.__cause__)


def test_an_s3_source_is_downloaded(tmp_path, batch_factory, storage, s3_endpoint, s3_client, s3_bucket):
    folder = batch_factory(rows=2)
    for path in (p for p in folder.rglob("*") if p.is_file()):
        s3_client.put_object(Bucket=s3_bucket, Key=f"seasonal/{path.relative_to(folder).as_posix()}",
                             Body=path.read_bytes())
    [schedule] = campaign_schedules(write_campaigns(tmp_path, source=f"s3://{s3_bucket}/seasonal/batch.csv"))
    with dg.instance_for_test() as instance:
        [request] = tick(schedule, instance, storage, s3=S3Connection(endpoint_url=s3_endpoint)).run_requests
    source = registered_batch(storage, request.partition_key)
    assert len(source.rows) == 2 and len(source.references) == 2
    assert request.tags["assetql/origin"] == f"s3://{s3_bucket}/seasonal/batch.csv"


def test_invalid_settings_fail_at_load_naming_campaign_and_field(tmp_path, batch_factory):
    batch_factory(rows=2)
    path = write_campaigns(tmp_path / "inbox", settings={"link_expiry": "400d", "stepz": 3})
    with pytest.raises(CampaignError) as info:
        campaign_schedules(path)
    first, second = info.value.problems
    assert first.startswith("campaign 'holiday', field 'settings', setting 'link_expiry':") and "SigV4" in first
    assert second.startswith("campaign 'holiday', field 'settings', setting 'stepz':")


def test_exporters_a_campaign_names_must_be_installed_at_load(tmp_path, batch_factory):
    batch_factory(rows=2)
    path = write_campaigns(tmp_path / "inbox", exports=["zip", "pdf"],
                           settings={"export_options": {"unity": {"format": "jpg"}}})
    with pytest.raises(CampaignError) as info:
        campaign_schedules(path)
    exports, options = info.value.problems
    assert exports.startswith("campaign 'holiday', field 'exports': unknown export 'pdf'; expected among zip, ")
    assert options == ("campaign 'holiday', field 'settings', setting 'export_options': "
                       "unity: format must be one of png, tga, got 'jpg'")


def test_an_invalid_campaigns_file_fails_the_code_location(tmp_path, monkeypatch):
    path = tmp_path / "campaigns.yaml"
    path.write_text(textwrap.dedent("""\
        campaigns:
          - name: holiday
            cron: "0 25 * * *"
            source: missing-folder
    """))
    monkeypatch.setenv(CAMPAIGNS_ENV, str(path))
    with pytest.raises(CampaignError) as info:
        build_definitions()
    assert [p.split(":")[0] for p in info.value.problems] == [
        "campaign #1 ('holiday'), field 'cron'", "campaign #1 ('holiday'), field 'source'"]


def test_the_example_campaigns_load_as_schedules(monkeypatch):
    monkeypatch.setenv(CAMPAIGNS_ENV, str(EXAMPLES / "campaigns.yaml"))
    configured = build_definitions()
    # The campaigns' schedules, beside the nightly retention_schedule every deployment has.
    assert {s.name for s in configured.schedules} == {
        schedule_name(c) for c in load_campaigns(EXAMPLES / "campaigns.yaml") if c.scheduled} | {"retention_schedule"}
    # Loading resolves against the current instance, as a code server does.
    with dg.instance_for_test():
        repository = configured.get_repository_def()
    assert all(s.job_name == "batch_job" for s in repository.schedule_defs if s.name != "retention_schedule")
