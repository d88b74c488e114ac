import json
import io
import sys

import pytest

from harness.export_jobs import make_job

from assetql_dagster.domain.records import BatchInput
from assetql_dagster.domain.settings import parse_settings
from assetql_dagster.pipeline.distribution import distribute
from assetql_dagster.pipeline.exporters.registry import (
    PLUGIN_GUIDE,
    ExporterLoadError,
    export_problems,
    load_exporters,
)

# The example of docs/exports.md, so the documented plugin is the one tested.
PLUGIN = PLUGIN_GUIDE.split("```python\n")[1].split("```")[0]


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Installs a distribution `captions-plugin` declaring an `assetql.exporters` entry point, the way
    pip leaves one in site-packages (a package plus its .dist-info folder)."""

    def install(name: str = "captions", target: str = "captions_plugin:CaptionsExporter", source: str = PLUGIN) -> None:
        site = tmp_path / "site"
        (site / "captions_plugin").mkdir(parents=True)
        (site / "captions_plugin" / "__init__.py").write_text(source)
        info = site / "captions_plugin-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: captions-plugin\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[assetql.exporters]\n{name} = {target}\n")
        monkeypatch.syspath_prepend(str(site))

    yield install
    sys.modules.pop("captions_plugin", None)


def test_an_installed_plugin_is_found_through_its_entry_point_and_exports(tmp_path, plugin):
    plugin()
    exporters = load_exporters()
    assert "captions" in exporters and "downloads" in exporters  # the built-ins come the same way
    settings = parse_settings({"exports": ["zip", "captions"], "export_options": {"captions": {"case": "upper"}}}, "b")
    assert export_problems(settings, "batch.yaml", exporters) == []
    captions = exporters["captions"]
    job = make_job(tmp_path, captions)
    batch = BatchInput(batch=job.batch, name="shop", origin="", content_hash="0" * 64, registered_at="",
                       settings=settings, rows=(), references=())
    package = distribute(job.storage, captions, batch, job.images)
    assert package.problems == () and package.images == 3
    written = json.loads(job.storage.read_text(package.main))
    assert written["item-000.png"] == "A STEEL SWORD NUMBER 0, GAME ICON"


def test_exporting_again_leaves_only_the_new_packages_files(tmp_path):
    social = load_exporters()["social"]
    job = make_job(tmp_path, social)
    settings = parse_settings({"exports": ["social"], "export_options": {"social": {"presets": ["instagram-square"]}}}, "b")
    batch = BatchInput(batch=job.batch, name="shop", origin="", content_hash="0" * 64, registered_at="",
                       settings=settings, rows=(), references=())
    first = distribute(job.storage, social, batch, job.images)
    # Again with one image fewer (renamed, filtered out or deleted since): its files go with it.
    second = distribute(job.storage, social, batch, job.images[1:])
    assert second.problems == () and second.images == 2
    gone = set(first.files) - set(second.files)
    assert gone and any("item-000" in k for k in gone)
    assert job.storage.list_keys(f"exports/{job.batch}/social/") == sorted(second.files)


def test_a_bad_option_of_a_plugin_is_reported_with_the_setting(plugin):
    plugin()
    settings = parse_settings({"exports": ["captions"], "export_options": {"captions": {"cse": "upper"}}}, "b")
    [problem] = export_problems(settings, "batch.yaml", load_exporters())
    assert (problem.file, problem.column) == ("batch.yaml", "export_options")
    assert problem.message == "captions: unknown option 'cse'; did you mean 'case'? captions options: case"


def test_unknown_exports_and_options_of_an_uninstalled_exporter_are_reported():
    settings = parse_settings({"exports": ["zip", "captions"], "export_options": {"nosuch": {}}}, "b")
    problems = export_problems(settings, "batch.yaml", {})
    assert [p.column for p in problems] == ["exports", "export_options"]
    assert problems[0].message == "unknown export 'captions'; expected among zip, manifest, gallery, links"
    assert problems[1].message.startswith("options for 'nosuch', which is not an installed exporter")


@pytest.mark.parametrize(("name", "target", "source", "message"), [
    ("captions", "captions_plugin:Missing", PLUGIN, "cannot be imported"),
    ("captions", "captions_plugin:json", PLUGIN, "not an assetql Exporter subclass or instance"),
    ("zip", "captions_plugin:CaptionsExporter", PLUGIN, "is a built-in format of the package"),
    ("captions", "captions_plugin:CaptionsExporter", PLUGIN.replace('name = "captions"', 'name = "other"'),
     "but the exporter calls itself 'other'"),
])
def test_a_broken_plugin_is_named_in_the_error(plugin, name, target, source, message):
    plugin(name, target, source)
    with pytest.raises(ExporterLoadError, match=message) as error:
        load_exporters()
    assert f"entry point {name!r} ({target}) of group 'assetql.exporters'" in str(error.value)


def test_the_downloads_exporter_zips_each_category_and_reads_them_back(tmp_path):
    from assetql_dagster.pipeline.exporters.downloads import DownloadsExporter

    exporter = DownloadsExporter()
    job = make_job(tmp_path, exporter)
    result = exporter.export(job)
    assert sorted(k.rsplit("/", 1)[1] for k in job.written) == [
        "index.json", "potions.zip", "weapons-axes.zip", "weapons-swords.zip"]
    assert exporter.validate(job, result) == []
    # A ZIP that lost an image is caught when the package is read back.
    from assetql_dagster.domain.export_writers import ZipPackage

    buffer = io.BytesIO()
    with ZipPackage(buffer):
        pass
    job.write("potions.zip", buffer.getvalue())
    assert any("potions.zip holds []" in p for p in exporter.validate(job, result))


def test_options_are_checked_with_the_value_and_what_was_expected():
    from assetql_dagster.pipeline.exporters.base import ExportOptionsError
    from assetql_dagster.pipeline.exporters.downloads import DownloadsExporter

    with pytest.raises(ExportOptionsError, match=r"^group_by must be one of category, top_category, got 'tag'$"):
        DownloadsExporter().parse_options({"group_by": "tag"})
    assert DownloadsExporter().parse_options({}) == {"compressed": False, "quality": 85, "group_by": "category"}



def test_docs_list_every_installed_exporter_with_its_options():
    from pathlib import Path

    from assetql_dagster.pipeline.exporters.registry import docs_markdown, installed_exporters

    docs = Path(__file__).resolve().parents[4] / "docs" / "exports.md"
    assert docs.read_text() == docs_markdown(installed_exporters()), (
        "docs/exports.md is stale: python -m assetql_dagster.pipeline.exporters.registry > docs/exports.md")
