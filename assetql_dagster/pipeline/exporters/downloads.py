"""`downloads`: one ZIP per category beside the batch ZIP (FR-DM-006), of the original PNGs or of
compressed JPEGs, with a small index of what each holds."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections import defaultdict

from assetql_dagster.domain.export_writers import ZipPackage
from assetql_dagster.pipeline.exporters.base import (
    Exporter,
    ExportJob,
    ExportResult,
    Option,
    boolean,
    choice,
)
from assetql_dagster.domain.settings import integer_check
from assetql_dagster.domain.web_images import jpeg_bytes

UNCATEGORISED = "uncategorised"
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def zip_name(category: str) -> str:
    """A file name for a category path: "weapons/swords" -> "weapons-swords.zip"."""
    return (_UNSAFE.sub("-", category.lower()).strip("-.") or UNCATEGORISED) + ".zip"


class DownloadsExporter(Exporter):
    name = "downloads"
    title = "Per-category ZIPs of the images (original PNG or compressed JPEG) with an index"
    OPTIONS = {
        "compressed": Option(False, boolean, "JPEG at `quality` instead of the original PNGs"),
        "quality": Option(85, integer_check(40, 100), "JPEG quality of compressed downloads, 40-100"),
        "group_by": Option("category", choice("category", "top_category"),
                           "one ZIP per full category path, or per top-level category"),
    }

    def export(self, job: ExportJob) -> ExportResult:
        groups = defaultdict(list)
        for image in job.images:
            category = image.category if job.options["group_by"] == "category" else image.category.split("/")[0]
            groups[category or UNCATEGORISED].append(image)
        index = {"batch": job.batch, "compressed": job.options["compressed"], "zips": {}}
        for category, images in sorted(groups.items()):
            buffer = io.BytesIO()
            with ZipPackage(buffer) as package:
                for image in images:
                    if job.options["compressed"]:
                        data = jpeg_bytes(job.open_image(image), job.options["quality"])
                        package.add_bytes(f"{image.stem}.jpg", data)
                    else:
                        package.add_bytes(image.file_name, job.storage.read_bytes(image.raw_key))
            name = zip_name(category)
            job.write(name, buffer.getvalue(), "application/zip")
            index["zips"][name] = {"category": category, "images": [i.file_name for i in images]}
        main = job.write("index.json", json.dumps(index, indent=2, ensure_ascii=False).encode(), "application/json")
        return ExportResult(main, {"zips": len(groups)})

    def validate(self, job: ExportJob, result: ExportResult) -> list[str]:
        problems = []
        index = json.loads(job.read("index.json"))
        expected = {i.file_name for i in job.images}
        seen = set()
        suffix = ".jpg" if job.options["compressed"] else ".png"
        for name, entry in index["zips"].items():
            with zipfile.ZipFile(io.BytesIO(job.read(name))) as archive:
                if archive.testzip() is not None:
                    problems.append(f"{name} has a corrupt member")
                members = archive.namelist()
            if len(members) != len(entry["images"]) or not all(m.endswith(suffix) for m in members):
                problems.append(f"{name} holds {members}, expected {len(entry['images'])} {suffix} file(s)")
            seen.update(entry["images"])
        if seen != expected:
            problems.append(f"the ZIPs miss {sorted(expected - seen)[:5]} or hold others {sorted(seen - expected)[:5]}")
        return problems
