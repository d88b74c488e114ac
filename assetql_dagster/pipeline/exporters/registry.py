"""Installed exporters, found through the `assetql.exporters` entry-point group, and the check of a
batch's `exports` and `export_options` against them.

A plugin package declares, in its pyproject.toml:

    [project.entry-points."assetql.exporters"]
    myformat = "my_package.module:MyExporter"

The entry point's name is the exporter's name in `exports:`; it loads an `Exporter` subclass (or
instance) whose `name` is the same.
"""

from __future__ import annotations

import functools
import json
from importlib.metadata import entry_points

from assetql_dagster.domain.errors import Problem
from assetql_dagster.domain.export_writers import EXPORT_FORMATS
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.pipeline.exporters.base import Exporter, ExportOptionsError

ENTRY_POINT_GROUP = "assetql.exporters"


class ExporterLoadError(RuntimeError):
    """An installed entry point that does not give a usable exporter."""


def load_exporters() -> dict[str, Exporter]:
    """Every exporter installed in this environment, by name (sorted), loaded from its entry point."""
    found: dict[str, Exporter] = {}
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        where = f"entry point {point.name!r} ({point.value}) of group {ENTRY_POINT_GROUP!r}"
        try:
            loaded = point.load()
        except Exception as error:  # a broken plugin must say which one it is
            raise ExporterLoadError(f"{where} cannot be imported: {error}") from error
        exporter = loaded() if isinstance(loaded, type) else loaded
        if not isinstance(exporter, Exporter):
            raise ExporterLoadError(f"{where} gives {loaded!r}, not an assetql Exporter subclass or instance")
        if exporter.name != point.name or point.name in EXPORT_FORMATS:
            reason = "is a built-in format of the package" if point.name in EXPORT_FORMATS else (
                f"but the exporter calls itself {exporter.name!r}")
            raise ExporterLoadError(f"{where} {reason}")
        found.setdefault(point.name, exporter)  # one distribution installed twice lists it twice
    return found


@functools.cache
def installed_exporters() -> dict[str, Exporter]:
    """`load_exporters()`, once per process."""
    return load_exporters()


def export_problems(settings: BatchSettings, file: str, exporters: dict[str, Exporter] | None = None) -> list[Problem]:
    """Problems of the batch's `exports` and `export_options` against the installed exporters."""
    exporters = installed_exporters() if exporters is None else exporters
    known = [*EXPORT_FORMATS, *exporters]
    problems = [
        Problem(file, f"unknown export {name!r}; expected among {', '.join(known)}", column="exports")
        for name in settings.exports
        if name not in known
    ]
    for name, _ in settings.export_options:
        if name not in exporters:
            problems.append(Problem(file, f"options for {name!r}, which is not an installed exporter; "
                                          f"exporters: {', '.join(exporters)}", column="export_options"))
            continue
        try:
            exporters[name].parse_options(settings.options_of(name))
        except ExportOptionsError as error:
            problems.append(Problem(file, f"{name}: {error}", column="export_options"))
    return problems


PLUGIN_GUIDE = """\
## Writing an exporter

An exporter is a class in any installed package:

```python
import json

from assetql_dagster.pipeline.exporters.base import Exporter, ExportResult, Option, choice


class CaptionsExporter(Exporter):
    name = "captions"
    title = "A captions file of every image"
    OPTIONS = {"case": Option("lower", choice("lower", "upper"), "letter case of the captions")}

    def export(self, job):
        captions = {i.file_name: getattr(i.prompt, job.options["case"])() for i in job.images}
        return ExportResult(job.write("captions.json", json.dumps(captions).encode()))

    def validate(self, job, result):
        # Read the package back; each problem fails the asset's `package_valid` check.
        captions = json.loads(job.read("captions.json"))
        return [] if set(captions) == {i.file_name for i in job.images} else ["captions miss images"]
```

declared in the package's `pyproject.toml`:

```toml
[project.entry-points."assetql.exporters"]
captions = "my_package.captions:CaptionsExporter"
```

Once the package is installed beside AssetQL, `exports: [zip, captions]` and
`export_options: {captions: {case: upper}}` are accepted by `assetql validate`, the code location has
a `captions_export` asset (reload it in the UI), and `assetql export KEY --preset captions` writes it.
Options are checked when a batch is validated, before any model loads; the job gives the images'
manifest rows (`job.images`), their pixels (`job.open_image`) and writes under
`exports/{batch}/{name}/` (`job.write`). An exporter that loads a model sets `uses_device = True`: its
asset is then written by the `device_distribution` step, which takes a device like generation does.
"""


def docs_markdown(exporters: dict[str, Exporter]) -> str:
    """docs/exports.md: every installed exporter with its options table, and how to write one."""
    lines = [
        "# Exporters",
        "",
        "<!-- Generated by `python -m assetql_dagster.pipeline.exporters.registry`; edit the exporters' OPTIONS. -->",
        "",
        "A batch's `exports:` lists what its export writes; `export_options:` sets each exporter's options, e.g.",
        "",
        "```yaml",
        "exports: [zip, unity, shopify, social]",
        "export_options:",
        "  unity: {format: tga, texture_type: default}",
        "  social: {fit: pad}",
        "```",
        "",
        "`zip`, `manifest`, `gallery` and `links` are the package of the `exports` asset (see README.md). Every",
        "exporter below is its own asset, `{name}_export`, whose `package_valid` check reads the package back.",
        "",
    ]
    for name, exporter in exporters.items():
        lines += [f"## `{name}`", "", exporter.title + ".", "", "| option | default | meaning |", "|---|---|---|"]
        for option, spec in exporter.OPTIONS.items():
            default = json.dumps(spec.default, ensure_ascii=False)
            lines.append(f"| `{option}` | `{default}` | {spec.doc.replace('|', chr(92) + '|')} |")
        lines.append("")
    return "\n".join(lines) + "\n" + PLUGIN_GUIDE


if __name__ == "__main__":
    print(docs_markdown(load_exporters()), end="")
