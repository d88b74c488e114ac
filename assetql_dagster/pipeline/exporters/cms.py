"""`wordpress`, `contentful`, `strapi`: every image as a web-optimised sRGB JPEG with the CMS's own
import file, a field mapping (`mapping.json`) and, with `upload: true`, the images uploaded through
the CMS's API (`uploaded.json` lists the remote ids and URLs).

- wordpress: a WXR file (`media.xml`, what Tools → Import → WordPress reads) of attachment items
  with their URL, title, caption, description, alt text (`_wp_attachment_image_alt`) and terms
  (category, post_tag), or a media CSV (`format: csv`).
- contentful: `contentful-import.json`, the `contentful-import` tool's file: `assets` with title,
  description and file per locale, and, when tags, category or SKU are mapped to entry fields, an
  image content type and one entry per image linking its asset.
- strapi: a `fileInfo` payload per image (`payloads/*.json`, what `POST /api/upload` takes beside
  the file), an index (`upload.json`) and `upload.sh`, which posts them with curl.

What goes where is a mapping from the image's fields (SOURCES) to the CMS's fields, each format's
DEFAULT_MAPPING overridden by the `mapping` option.
"""

from __future__ import annotations

import abc
import csv
import hashlib
import io
import json
import re
import shlex
import textwrap
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, ClassVar

from PIL import Image

from assetql_dagster.domain.settings import integer_check, quote
from assetql_dagster.domain.web_images import fit_longest_side, jpeg_under, longest_side_size, srgb_jpeg_problems
from assetql_dagster.pipeline.exporters.base import (
    Exporter,
    ExportImage,
    ExportJob,
    ExportResult,
    Option,
    boolean,
    choice,
)
from resources.cms import ENV_VARS, CmsConnections, CmsUploadError, MediaUpload
from resources.notifier import is_http_url

IMAGES = "images/"
MAPPING_FILE = "mapping.json"
UPLOADED_FILE = "uploaded.json"
# What each mapping source holds, per image.
SOURCES = {
    "file_name": "the JPEG's file name (item-000.jpg)",
    "title": "the prompt, shortened to 100 characters at a word",
    "alt": "alt text: the prompt and its first three tags, within 125 characters",
    "caption": "the prompt",
    "description": "the prompt and the image's lineage (batch, variant, seed, model)",
    "category": "the category path (weapons/swords)",
    "tags": "the tag labels, most confident first",
    "sku": "the SKU",
}
TITLE_LIMIT = 100

FieldMapping = dict[str, str | None]
Value = str | list[str]


def source_values(job: ExportJob, image: ExportImage, file_name: str) -> dict[str, Value]:
    """The SOURCES of one image."""
    row = image.row
    prompt = image.prompt.strip()
    lineage = (f"batch {job.batch}, variant {row.get('variant_id', image.stem)}, seed {row.get('seed')}, "
               f"model {row.get('model')}")
    title = textwrap.shorten(prompt, TITLE_LIMIT, placeholder="…")
    if title in ("", "…"):  # no prompt, or a first word longer than the limit
        title = prompt[: TITLE_LIMIT - 1] + "…" if prompt else image.stem
    return {
        "file_name": file_name,
        "title": title,
        "alt": image.alt_text(),
        "caption": prompt,
        "description": f"{prompt}\n\n{lineage}",
        "category": image.category,
        "tags": image.tags,
        "sku": image.sku,
    }


def as_text(value: Value) -> str:
    return ", ".join(value) if isinstance(value, list) else value


def mapping_check(
    is_target: Callable[[str], bool], expected: str, defaults: FieldMapping,
) -> Callable[[Any], str | None]:
    """A check of a `mapping` override: {source: target, or null to leave the source out}, each
    target taken once over `defaults` and the override together."""

    def check(value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return f"must be a mapping of source field to {expected} (or null to leave it out), got {quote(value)}"
        for source, target in value.items():
            if source not in SOURCES:
                return f"has unknown source field {quote(source)}; sources: {', '.join(SOURCES)}"
            if target is None:
                if source == "alt":
                    return "cannot leave out alt: every image needs its alt text"
                continue
            if not isinstance(target, str) or not is_target(target):
                return f"maps {source} to {quote(target)}; expected {expected}"
        merged = {**defaults, **value}
        for target in {t for t in merged.values() if t}:
            sources = [s for s, t in merged.items() if t == target]
            if len(sources) > 1:
                return (f"maps {' and '.join(sources)} to {quote(target)} (with the defaults); map all but one "
                        "of them elsewhere or to null")
        return None

    return check


def url_or_empty(value: Any) -> str | None:
    if value == "" or (isinstance(value, str) and is_http_url(value)):
        return None
    return f"must be an http(s) URL such as https://cdn.example.com/assets, or empty, got {quote(value)}"


def slug(text: str) -> str:
    """A URL slug of `text` ("Weapons/Long swords" -> "weapons-long-swords"); a hash for text with
    no ASCII letters or digits (e.g. a tag in Japanese), so that each term still has one."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    found = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    return found or "term-" + hashlib.sha1(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class CmsItem:
    """One exported image: where its JPEG is, the URL the import file gives it, its stable id and
    its fields under the CMS's names (the mapping applied)."""

    image: ExportImage
    file_name: str
    url: str
    key: str
    values: dict[str, Value]
    fields: dict[str, Value]

    @property
    def path(self) -> str:
        return IMAGES + self.file_name


class CmsExporter(Exporter):
    """What the CMS formats share: the JPEGs, the mapping, the upload and the JPEG checks. A format
    sets DEFAULT_MAPPING and TARGETS and writes and reads back its import file."""

    DEFAULT_MAPPING: ClassVar[FieldMapping]
    TARGETS: ClassVar[str]  # the mapping's targets, in words
    SYSTEM: ClassVar[str]  # the CMS's name in messages

    @staticmethod
    def common_options(
        system: str, is_target: Callable[[str], bool], targets: str, defaults: FieldMapping,
    ) -> dict[str, Option]:
        """The options every CMS format takes (the mapping's targets and the connection differ)."""
        default = ", ".join(f"{s} → {t}" for s, t in defaults.items() if t) or "none"
        connection = ", ".join(ENV_VARS[f] for f in CmsConnections.REQUIRED[system])
        return {
            "max_side": Option(2048, integer_check(256, 4096),
                               "longest side of the JPEGs in pixels, 256-4096; larger images are scaled down, never up"),
            "quality": Option(82, integer_check(40, 95),
                              "JPEG quality, 40-95; lowered where needed to stay under max_kb"),
            "max_kb": Option(800, integer_check(20, 20000),
                             "each JPEG stays under this many kilobytes (1 kB = 1024 bytes), 20-20000"),
            "mapping": Option({}, mapping_check(is_target, targets, defaults),
                              f"overrides of the field mapping, {{source: target or null}}; sources: "
                              f"{', '.join(SOURCES)}; targets: {targets}; default: {default}"),
            "upload": Option(False, boolean,
                             f"also upload each image through the API (needs the connection: {connection}) "
                             "and list the remote ids and URLs in uploaded.json"),
        }

    @staticmethod
    def base_url_option(empty: str) -> dict[str, Option]:
        """The `base_url` option, with what an empty one gives."""
        return {"base_url": Option(
            "", url_or_empty,
            "public URL the package's images/ files will be served from, e.g. https://cdn.example.com/assets "
            f"(each image's URL in the import file is base_url/file name); empty: {empty}",
        )}

    def mapping(self, job: ExportJob) -> FieldMapping:
        return {**self.DEFAULT_MAPPING, **job.options["mapping"]}

    def image_url(self, job: ExportJob, file_name: str) -> str:
        """The image's URL in the import file: under base_url, else relative to the package."""
        base = job.options.get("base_url", "").rstrip("/")
        return f"{base}/{file_name}" if base else IMAGES + file_name

    def item_key(self, job: ExportJob, image: ExportImage) -> str:
        """A stable id of the image in the CMS (where the CMS lets the importer choose one)."""
        return f"{job.batch}-{image.stem}"

    def export(self, job: ExportJob) -> ExportResult:
        client = self.upload_client(job) if job.options["upload"] else None  # before any work is done
        mapping = self.mapping(job)
        items = []
        for image in job.images:
            file_name = f"{image.stem}.jpg"
            job.write(IMAGES + file_name, self.web_jpeg(job, image), "image/jpeg")
            values = source_values(job, image, file_name)
            fields = {target: values[source] for source, target in mapping.items() if target and values[source]}
            items.append(CmsItem(image, file_name, self.image_url(job, file_name), self.item_key(job, image),
                                 values, fields))
        main, metadata = self.write_import(job, items)
        job.write(MAPPING_FILE, json_bytes({
            "system": self.name, "fields": mapping, "sources": SOURCES, "targets": self.TARGETS,
        }), "application/json")
        metadata = {"images": len(items), **metadata}
        if client is not None:
            metadata["uploaded"] = self.upload(job, client, items)
        return ExportResult(main, metadata)

    def web_jpeg(self, job: ExportJob, image: ExportImage) -> bytes:
        """The image as an sRGB JPEG within max_side, at the best quality up to `quality` under max_kb."""
        fitted = fit_longest_side(job.open_image(image), job.options["max_side"])
        try:
            data, _ = jpeg_under(fitted, job.options["max_kb"] * 1024, job.options["quality"])
        except ValueError as error:
            raise ValueError(f"{image.file_name}: {error}; raise max_kb or lower max_side") from error
        return data

    def wants_clients(self, options: Mapping[str, Any]) -> bool:
        return options["upload"]

    def upload_client(self, job: ExportJob) -> Any:
        """The job's client for this CMS; ValueError naming the settings to give when there is none."""
        client = job.clients.get(self.name)
        if client is None:
            needed = CmsConnections.REQUIRED[self.name]
            raise ValueError(
                f"{self.name} has upload: true but no {self.SYSTEM} connection is configured; set "
                f"{', '.join(ENV_VARS[f] for f in needed)} (the CmsConnections fields {', '.join(needed)}), "
                "or set upload: false to write the import files only"
            )
        return client

    def upload(self, job: ExportJob, client: Any, items: list[CmsItem]) -> int:
        """Upload every image with its fields, writing uploaded.json; on a failure it lists what was
        uploaded before it, and the error says so."""
        by_name = {item.file_name: item for item in items}
        done: list[dict[str, str]] = []

        def record(error: str | None = None) -> str:
            return job.write(UPLOADED_FILE, json_bytes({
                "system": self.name, "target": client.target, "uploaded": done, "error": error,
            }), "application/json")

        uploads = (MediaUpload(job.read(i.path), i.file_name, self.upload_fields(job, i), i.key) for i in items)
        try:
            client.upload_all(
                uploads, total=len(items),
                progress=lambda upload, remote: done.append({"file": by_name[upload.file_name].path, **remote}),
            )
        except (CmsUploadError, ValueError) as error:
            key = record(str(error))
            raise CmsUploadError(
                f"{self.SYSTEM} upload stopped after {len(done)} of {len(items)} image(s) (listed in {key}): {error}"
            ) from error
        record()
        return len(done)

    def validate(self, job: ExportJob, result: ExportResult) -> list[str]:
        try:
            return self.package_problems(job, result)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ET.ParseError) as error:
            # A file missing or not in its format: the package cannot be read back at all.
            return [f"the {self.name} package under {job.prefix} cannot be read back: {type(error).__name__}: {error}"]

    def package_problems(self, job: ExportJob, result: ExportResult) -> list[str]:
        """The import file, the JPEGs, mapping.json and uploaded.json read back: what is wrong."""
        expected = {f"{image.stem}.jpg": image for image in job.images}
        listed, problems = self.read_import(job, result)
        missing, extra = sorted(expected.keys() - listed.keys()), sorted(listed.keys() - expected.keys())
        if missing or extra:
            problems.append(f"{result.main} misses {missing[:5]} or lists others {extra[:5]}")
        problems.extend(f"{name} is listed without alt text" for name, alt in listed.items() if not alt.strip())
        max_bytes = job.options["max_kb"] * 1024
        for name, image in expected.items():
            with Image.open(io.BytesIO(job.storage.read_bytes(image.raw_key))) as source:
                size = longest_side_size(source.size, job.options["max_side"])
            problems.extend(f"{IMAGES}{name} {p}" for p in srgb_jpeg_problems(job.read(IMAGES + name), size, max_bytes))
        mapping = json.loads(job.read(MAPPING_FILE))
        if mapping.get("fields") != self.mapping(job):
            problems.append(f"{MAPPING_FILE} holds {quote(mapping.get('fields'))}, not the mapping used")
        if job.options["upload"]:
            problems.extend(self.upload_problems(job, expected))
        return problems

    def upload_problems(self, job: ExportJob, expected: Mapping[str, ExportImage]) -> list[str]:
        record = json.loads(job.read(UPLOADED_FILE))
        problems = [f"{UPLOADED_FILE} records an error: {record['error']}"] if record.get("error") else []
        uploaded = {entry["file"].removeprefix(IMAGES): entry for entry in record["uploaded"]}
        missing = sorted(expected.keys() - uploaded.keys())
        if missing:
            problems.append(f"{UPLOADED_FILE} misses {missing[:5]}")
        problems.extend(f"{UPLOADED_FILE} has no remote id for {name}" for name, e in uploaded.items() if not e.get("id"))
        return problems

    @abc.abstractmethod
    def write_import(self, job: ExportJob, items: list[CmsItem]) -> tuple[str, dict[str, Any]]:
        """Write the import file(s): the main file's key and figures for the metadata."""

    @abc.abstractmethod
    def read_import(self, job: ExportJob, result: ExportResult) -> tuple[dict[str, str], list[str]]:
        """Parse the import file back: {JPEG file name: its alt text} and problems of its structure."""

    @abc.abstractmethod
    def upload_fields(self, job: ExportJob, item: CmsItem) -> dict[str, Any]:
        """The item's metadata as the CMS's upload API takes it."""


def json_bytes(document: Any) -> bytes:
    return json.dumps(document, indent=2, ensure_ascii=False).encode()


# --- WordPress ------------------------------------------------------------------------------------

WP = "http://wordpress.org/export/1.2/"
NAMESPACES = {
    "excerpt": "http://wordpress.org/export/1.2/excerpt/",
    "content": "http://purl.org/rss/1.0/modules/content/",
    "wp": WP,
}
for _prefix, _uri in NAMESPACES.items():
    # ElementTree names namespaces only through this process-wide table; these are the prefixes
    # WordPress's own exports use (its importer reads the URIs, so they would work under any prefix).
    ET.register_namespace(_prefix, _uri)
WP_TEXT_TARGETS = ("title", "alt_text", "caption", "description")
ALT_META = "_wp_attachment_image_alt"
WP_TARGET = re.compile(r"(title|alt_text|caption|description|taxonomy:[a-z0-9_-]{1,32}|meta:[A-Za-z0-9_-]{1,64})")
CSV_LIST_SEPARATOR = "|"
CSV_PATH_SEPARATOR = " > "


def wp(tag: str) -> str:
    return f"{{{WP}}}{tag}"


# Control characters XML 1.0 cannot hold at all (not even escaped); ElementTree would write them and
# leave a file no XML parser, WordPress's included, reads.
XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def sub(parent: ET.Element, tag: str, text: str | int = "", **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = XML_ILLEGAL.sub("", str(text))
    return element


@dataclass(frozen=True)
class Term:
    """A WordPress term: its taxonomy, slug, name and parent's slug ("" at the top)."""

    taxonomy: str
    slug: str
    name: str
    parent: str = ""


def terms_of(taxonomy: str, source: str, value: Value) -> list[Term]:
    """The terms a source's value gives in `taxonomy`: a category path gives its chain (the last is
    the image's), tags one each, other text one."""
    if source == "category" and isinstance(value, str):
        chain, parent = [], ""
        parts = [p for p in value.split("/") if p.strip()]
        for depth, name in enumerate(parts, start=1):
            term = Term(taxonomy, slug("/".join(parts[:depth])), name.strip(), parent)
            chain.append(term)
            parent = term.slug
        return chain
    return [Term(taxonomy, slug(name), name) for name in (value if isinstance(value, list) else [value])]


def csv_cell(value: Value, source: str, target: str) -> str:
    """A value in a CSV column: terms joined with CSV_LIST_SEPARATOR, a category path's levels with
    CSV_PATH_SEPARATOR (as CSV importers write hierarchies), other lists with commas."""
    if target.startswith("taxonomy:") and source == "category" and isinstance(value, str):
        return CSV_PATH_SEPARATOR.join(p.strip() for p in value.split("/") if p.strip())
    if target.startswith("taxonomy:") and isinstance(value, list):
        return CSV_LIST_SEPARATOR.join(value)
    return as_text(value)


def unique_terms(terms: list[Term]) -> list[Term]:
    """`terms` without repeats of a slug in a taxonomy ("Sword" and "sword" are one term), first kept."""
    kept: dict[tuple[str, str], Term] = {}
    for term in terms:
        kept.setdefault((term.taxonomy, term.slug), term)
    return list(kept.values())


class WordPressExporter(CmsExporter):
    name = "wordpress"
    title = "WordPress media: web JPEGs with a WXR import file (or media CSV), or uploaded through the REST API"
    SYSTEM = "WordPress"
    DEFAULT_MAPPING = {
        "file_name": None, "title": "title", "alt": "alt_text", "caption": "caption", "description": "description",
        "category": "taxonomy:category", "tags": "taxonomy:post_tag", "sku": "meta:sku",
    }
    TARGETS = ("title, alt_text (the _wp_attachment_image_alt meta), caption, description, taxonomy:<name> "
               "(terms, e.g. taxonomy:post_tag), meta:<key> (a custom field)")
    OPTIONS = {
        "format": Option("wxr", choice("wxr", "csv"),
                         "wxr: media.xml for Tools → Import → WordPress; csv: media.csv for a CSV importer "
                         f"(lists joined with '{CSV_LIST_SEPARATOR}', category paths with '{CSV_PATH_SEPARATOR}')"),
        **CmsExporter.base_url_option(
            "images/<file>, relative to the import file (WordPress's importer downloads each attachment URL, "
            "so host images/ and give base_url, or use upload)"),
        **CmsExporter.common_options("wordpress", lambda t: bool(WP_TARGET.fullmatch(t)), TARGETS, DEFAULT_MAPPING),
    }

    def write_import(self, job: ExportJob, items: list[CmsItem]) -> tuple[str, dict[str, Any]]:
        if job.options["format"] == "csv":
            return job.write("media.csv", self.media_csv(job, items), "text/csv"), {"format": "csv"}
        return job.write("media.xml", self.wxr(job, items), "application/rss+xml"), {"format": "wxr"}

    def item_terms(self, job: ExportJob, item: CmsItem) -> tuple[list[Term], list[Term]]:
        """The terms the image needs defined in every mapped taxonomy (a category's parents
        included), and those it is assigned (of a category path, the last)."""
        defined, assigned = [], []
        for source, target in self.mapping(job).items():
            if target and target.startswith("taxonomy:") and item.values[source]:
                terms = terms_of(target.removeprefix("taxonomy:"), source, item.values[source])
                defined.extend(terms)
                assigned.extend(terms[-1:] if source == "category" else terms)
        return defined, unique_terms(assigned)

    def wxr(self, job: ExportJob, items: list[CmsItem]) -> bytes:
        """A WXR 1.2 file: the terms first (parents before children), then an attachment item per image."""
        now = datetime.now(timezone.utc).replace(microsecond=0)
        rss = ET.Element("rss", {"version": "2.0"})
        channel = ET.SubElement(rss, "channel")
        sub(channel, "title", f"AssetQL batch {job.batch}")
        sub(channel, "link", job.options["base_url"])
        sub(channel, "description", f"Images of AssetQL batch {job.batch}")
        sub(channel, "pubDate", format_datetime(now))
        sub(channel, "language", "en")
        sub(channel, wp("wxr_version"), "1.2")
        sub(channel, wp("base_site_url"), job.options["base_url"])
        sub(channel, wp("base_blog_url"), job.options["base_url"])
        terms = {item.file_name: self.item_terms(job, item) for item in items}
        # Parents come before their children in each chain, so the importer finds them defined.
        defined = unique_terms([term for chain, _ in terms.values() for term in chain])
        for term_id, term in enumerate(defined, start=1):
            self.term_element(channel, term_id, term)
        for post_id, item in enumerate(items, start=1):
            self.attachment(channel, post_id, item, now, terms[item.file_name][1])
        ET.indent(rss)
        return ET.tostring(rss, encoding="utf-8", xml_declaration=True) + b"\n"

    @staticmethod
    def term_element(channel: ET.Element, term_id: int, term: Term) -> None:
        """A term's definition as WordPress exports it: wp:category, wp:tag, or wp:term for other taxonomies."""
        if term.taxonomy == "category":
            element = ET.SubElement(channel, wp("category"))
            for tag, text in (("term_id", term_id), ("category_nicename", term.slug),
                              ("category_parent", term.parent), ("cat_name", term.name)):
                sub(element, wp(tag), text)
        elif term.taxonomy == "post_tag":
            element = ET.SubElement(channel, wp("tag"))
            for tag, text in (("term_id", term_id), ("tag_slug", term.slug), ("tag_name", term.name)):
                sub(element, wp(tag), text)
        else:
            element = ET.SubElement(channel, wp("term"))
            for tag, text in (("term_id", term_id), ("term_taxonomy", term.taxonomy), ("term_slug", term.slug),
                              ("term_parent", term.parent), ("term_name", term.name)):
                sub(element, wp(tag), text)

    @staticmethod
    def attachment(channel: ET.Element, post_id: int, item: CmsItem, now: datetime, terms: list[Term]) -> None:
        """One attachment item with its text fields, alt text and custom fields as postmeta, and its terms."""
        fields = item.fields
        element = ET.SubElement(channel, "item")
        sub(element, "title", as_text(fields.get("title", item.file_name)))
        sub(element, "link", item.url)
        sub(element, "pubDate", format_datetime(now))
        sub(element, "guid", item.url, isPermaLink="false")
        sub(element, "description")
        sub(element, f"{{{NAMESPACES['content']}}}encoded", as_text(fields.get("description", "")))
        sub(element, f"{{{NAMESPACES['excerpt']}}}encoded", as_text(fields.get("caption", "")))
        local = now.strftime("%Y-%m-%d %H:%M:%S")
        for tag, text in (
            ("post_id", post_id), ("post_date", local), ("post_date_gmt", local), ("comment_status", "closed"),
            ("ping_status", "closed"), ("post_name", item.image.stem), ("status", "inherit"), ("post_parent", 0),
            ("menu_order", 0), ("post_type", "attachment"), ("post_password", ""), ("is_sticky", 0),
            ("attachment_url", item.url),
        ):
            sub(element, wp(tag), text)
        for term in terms:
            # The importer reads only <category> elements with a nicename, the slug.
            sub(element, "category", term.name, domain=term.taxonomy, nicename=term.slug)
        meta = {ALT_META: fields.get("alt_text")} | {
            target.removeprefix("meta:"): value for target, value in fields.items() if target.startswith("meta:")
        }
        for key, value in meta.items():
            if value:
                postmeta = ET.SubElement(element, wp("postmeta"))
                sub(postmeta, wp("meta_key"), key)
                sub(postmeta, wp("meta_value"), as_text(value))

    def media_csv(self, job: ExportJob, items: list[CmsItem]) -> bytes:
        """One row per image: file, url, then a column per mapped target (named as in the mapping)."""
        columns = {target: source for source, target in self.mapping(job).items() if target}
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["file", "url", *columns])
        for item in items:
            writer.writerow([item.path, item.url, *(csv_cell(item.values[s], s, t) for t, s in columns.items())])
        # A BOM, so that spreadsheet programs read the file as UTF-8.
        return ("\ufeff" + buffer.getvalue()).encode()

    def read_import(self, job: ExportJob, result: ExportResult) -> tuple[dict[str, str], list[str]]:
        if job.options["format"] == "csv":
            return self.read_csv(job)
        return self.read_wxr(job)

    def read_csv(self, job: ExportJob) -> tuple[dict[str, str], list[str]]:
        alt_column = self.mapping(job)["alt"]
        rows = list(csv.DictReader(io.StringIO(job.read("media.csv").decode("utf-8-sig"))))
        problems = [f"media.csv row {n} has url {r['url']!r}, not ending in its file's name"
                    for n, r in enumerate(rows, start=2) if not r["url"].endswith(r["file"].removeprefix(IMAGES))]
        return {r["file"].removeprefix(IMAGES): r.get(alt_column) or "" for r in rows}, problems

    def read_wxr(self, job: ExportJob) -> tuple[dict[str, str], list[str]]:
        """The attachments of media.xml by file name with their alt text; problems with its items and terms."""
        root = ET.fromstring(job.read("media.xml"))
        channel = root.find("channel")
        problems = [] if root.tag == "rss" and channel is not None else ["media.xml is not an RSS document"]
        if channel is None or not re.fullmatch(r"\d+\.\d+", channel.findtext(wp("wxr_version"), "")):
            return {}, [*problems, "media.xml has no wp:wxr_version, so WordPress would not read it as WXR"]
        defined = {(e.findtext(wp("category_nicename")), "category") for e in channel.findall(wp("category"))}
        defined |= {(e.findtext(wp("tag_slug")), "post_tag") for e in channel.findall(wp("tag"))}
        defined |= {(e.findtext(wp("term_slug")), e.findtext(wp("term_taxonomy"))) for e in channel.findall(wp("term"))}
        for element in channel.findall(wp("category")):
            parent = element.findtext(wp("category_parent"))
            if parent and (parent, "category") not in defined:
                problems.append(f"category {element.findtext(wp('category_nicename'))!r} has undefined parent {parent!r}")
        listed = {}
        for item in channel.findall("item"):
            url = item.findtext(wp("attachment_url"), "")
            name = url.rsplit("/", 1)[-1]
            if item.findtext(wp("post_type")) != "attachment" or not name:
                problems.append(f"item {item.findtext('title')!r} is not an attachment with a URL")
                continue
            meta = {m.findtext(wp("meta_key")): m.findtext(wp("meta_value"), "") for m in item.findall(wp("postmeta"))}
            listed[name] = meta.get(ALT_META, "")
            for category in item.findall("category"):
                if (category.get("nicename"), category.get("domain")) not in defined:
                    problems.append(f"{name} has term {category.get('nicename')!r} of {category.get('domain')!r} "
                                    "that the file does not define")
        return listed, problems

    def upload_fields(self, job: ExportJob, item: CmsItem) -> dict[str, Any]:
        # The REST media fields; terms and custom fields go through the import file.
        return {k: as_text(v) for k, v in item.fields.items() if k in WP_TEXT_TARGETS}


# --- Contentful -----------------------------------------------------------------------------------

CONTENTFUL_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
ENTRY_FIELD = re.compile(r"entry:[A-Za-z][A-Za-z0-9_]{0,49}")
ENTRY_RESERVED = ("title", "image")  # the fields every image entry has
LONG_TEXT_SOURCES = ("caption", "description")  # Contentful Text fields; others are Symbols (256 chars)


def contentful_id(text: str) -> str:
    """`text` as a Contentful id (1-64 of letters, digits, '.', '_', '-'): itself when it is one, else
    its legal characters cut short with a hash of the whole, so ids stay distinct."""
    if CONTENTFUL_ID.fullmatch(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:51]
    return f"{cleaned}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def contentful_target(target: str) -> bool:
    """Whether `target` is an asset field or an entry field other than those every entry has."""
    if target in ("title", "description"):
        return True
    return bool(ENTRY_FIELD.fullmatch(target)) and target.removeprefix("entry:") not in ENTRY_RESERVED


def locale_check(value: Any) -> str | None:
    if isinstance(value, str) and re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", value):
        return None
    return f"must be a locale code of the space, such as en-US or de, got {quote(value)}"


def content_type_check(value: Any) -> str | None:
    if isinstance(value, str) and CONTENTFUL_ID.fullmatch(value):
        return None
    return f"must be a Contentful id (1-64 letters, digits, '.', '_' or '-'), got {quote(value)}"


class ContentfulExporter(CmsExporter):
    name = "contentful"
    title = "Contentful assets: web JPEGs with a contentful-import file, or uploaded through the Management API"
    SYSTEM = "Contentful"
    DEFAULT_MAPPING = {
        "file_name": None, "title": "title", "alt": "description", "caption": None, "description": None,
        "category": "entry:category", "tags": "entry:tags", "sku": "entry:sku",
    }
    TARGETS = ("title and description (the asset's fields; the description is where Contentful sites take "
               "alt text from), "
               "entry:<fieldId> (a field of the image's entry)")
    OPTIONS = {
        "locale": Option("en-US", locale_check, "the space's default locale, which the fields are written in"),
        "content_type": Option("assetqlImage", content_type_check,
                               "id of the image content type the entries use (defined in the import file)"),
        **CmsExporter.base_url_option(
            "//images/<file>, which contentful-import --upload-assets --assets-directory <package folder> "
            "uploads from the package"),
        **CmsExporter.common_options("contentful", contentful_target, TARGETS, DEFAULT_MAPPING),
    }

    def item_key(self, job: ExportJob, image: ExportImage) -> str:
        return contentful_id(f"{job.batch}-{image.stem}")

    def image_url(self, job: ExportJob, file_name: str) -> str:
        # Protocol-relative like Contentful's own URLs: contentful-import reads "//images/x.jpg" from
        # <assets-directory>/images/x.jpg when run with --upload-assets --assets-directory <package>.
        return super().image_url(job, file_name) if job.options["base_url"] else f"//{IMAGES}{file_name}"

    def asset_fields(self, job: ExportJob, item: CmsItem) -> dict[str, dict[str, str]]:
        """The asset's title and description per locale (the title falls back to the file name)."""
        locale = job.options["locale"]
        fields = {"title": {locale: as_text(item.fields.get("title") or item.file_name)}}
        if item.fields.get("description"):
            fields["description"] = {locale: as_text(item.fields["description"])}
        return fields

    def entry_sources(self, job: ExportJob) -> dict[str, str]:
        """{entry field id: source} of the mapping's entry targets."""
        return {t.removeprefix("entry:"): s for s, t in self.mapping(job).items() if t and t.startswith("entry:")}

    def content_type(self, job: ExportJob) -> dict[str, Any]:
        """The image content type: title, the asset link, and a field per entry target."""
        def field(field_id: str, name: str, kind: str, **extra: Any) -> dict[str, Any]:
            return {"id": field_id, "name": name, "type": kind, "localized": False, "required": False,
                    "validations": [], "disabled": False, "omitted": False, **extra}

        fields = [
            field("title", "Title", "Symbol", required=True),
            field("image", "Image", "Link", linkType="Asset", required=True,
                  validations=[{"linkMimetypeGroup": ["image"]}]),
        ]
        for field_id, source in self.entry_sources(job).items():
            name = field_id[0].upper() + field_id[1:]
            if source == "tags":
                fields.append(field(field_id, name, "Array", items={"type": "Symbol", "validations": []}))
            else:
                fields.append(field(field_id, name, "Text" if source in LONG_TEXT_SOURCES else "Symbol"))
        return {"sys": {"id": job.options["content_type"], "type": "ContentType"}, "name": "AssetQL image",
                "description": "An image generated by AssetQL, with its tags, category and SKU",
                "displayField": "title", "fields": fields}

    def write_import(self, job: ExportJob, items: list[CmsItem]) -> tuple[str, dict[str, Any]]:
        locale = job.options["locale"]
        document: dict[str, Any] = {"assets": [
            {"sys": {"id": item.key, "type": "Asset"},
             "fields": {**self.asset_fields(job, item),
                        "file": {locale: {"url": item.url, "fileName": item.file_name, "contentType": "image/jpeg"}}}}
            for item in items
        ]}
        entry_sources = self.entry_sources(job)
        if entry_sources:
            type_id = job.options["content_type"]
            document["contentTypes"] = [self.content_type(job)]
            document["entries"] = [
                {"sys": {"id": item.key, "type": "Entry",
                         "contentType": {"sys": {"type": "Link", "linkType": "ContentType", "id": type_id}}},
                 "fields": {
                     "title": {locale: as_text(item.values["title"])},
                     "image": {locale: {"sys": {"type": "Link", "linkType": "Asset", "id": item.key}}},
                     **{f: {locale: item.values[s]} for f, s in entry_sources.items() if item.values[s]},
                 }}
                for item in items
            ]
        main = job.write("contentful-import.json", json_bytes(document), "application/json")
        return main, {"entries": len(document.get("entries", []))}

    def read_import(self, job: ExportJob, result: ExportResult) -> tuple[dict[str, str], list[str]]:
        """The assets by file name with their alt text (description, or the entry field alt maps to)."""
        document = json.loads(job.read("contentful-import.json"))
        locale = job.options["locale"]
        alt_target = self.mapping(job)["alt"]
        entries = {e["fields"]["image"][locale]["sys"]["id"]: e for e in document.get("entries", [])}
        problems, listed = [], {}
        for asset in document["assets"]:
            file = asset["fields"]["file"][locale]
            if file["contentType"] != "image/jpeg" or not file["url"].endswith(file["fileName"]):
                problems.append(f"asset {asset['sys']['id']} has file {file}, not a JPEG at its URL")
            if alt_target.startswith("entry:"):
                entry = entries.get(asset["sys"]["id"], {"fields": {}})
                alt = entry["fields"].get(alt_target.removeprefix("entry:"), {}).get(locale, "")
            else:
                alt = asset["fields"].get(alt_target, {}).get(locale, "")
            listed[file["fileName"]] = alt
        types = {t["sys"]["id"] for t in document.get("contentTypes", [])}
        problems.extend(f"entry {e['sys']['id']} is of undefined content type {e['sys']['contentType']['sys']['id']!r}"
                        for e in document.get("entries", []) if e["sys"]["contentType"]["sys"]["id"] not in types)
        return listed, problems

    def upload_fields(self, job: ExportJob, item: CmsItem) -> dict[str, Any]:
        # The asset's fields as in the import file; entries go through contentful-import.
        return self.asset_fields(job, item)


# --- Strapi ---------------------------------------------------------------------------------------

STRAPI_FILE_INFO = ("name", "alternativeText", "caption")


class StrapiExporter(CmsExporter):
    name = "strapi"
    title = "Strapi media: web JPEGs with upload API payloads (fileInfo) and a curl script, or uploaded directly"
    SYSTEM = "Strapi"
    DEFAULT_MAPPING = {
        "file_name": "name", "title": None, "alt": "alternativeText", "caption": "caption", "description": None,
        "category": None, "tags": None, "sku": None,
    }
    TARGETS = "name, alternativeText, caption (the fileInfo of Strapi's upload API)"
    OPTIONS = CmsExporter.common_options("strapi", lambda t: t in STRAPI_FILE_INFO, TARGETS, DEFAULT_MAPPING)

    def payload_path(self, item: CmsItem) -> str:
        return f"payloads/{item.image.stem}.json"

    def write_import(self, job: ExportJob, items: list[CmsItem]) -> tuple[str, dict[str, Any]]:
        commands = []
        for item in items:
            file_info = self.upload_fields(job, item)
            payload = json_bytes({"file": item.path, "fileInfo": file_info})
            job.write(self.payload_path(item), payload, "application/json")
            commands.append(
                'curl --fail --retry 3 -H "Authorization: Bearer $STRAPI_TOKEN" '
                f"-F {shlex.quote('files=@' + item.path)} "
                f"--form-string {shlex.quote('fileInfo=' + json.dumps(file_info, ensure_ascii=False))} "
                '"$STRAPI_URL/api/upload"'
            )
        script = "\n".join([
            "#!/bin/sh",
            "# Uploads the images with their fileInfo: STRAPI_URL=https://cms.example.com STRAPI_TOKEN=... sh upload.sh",
            "set -eu",
            ': "${STRAPI_URL:?set STRAPI_URL to the Strapi address}"',
            ': "${STRAPI_TOKEN:?set STRAPI_TOKEN to an API token allowed to upload}"',
            'cd "$(dirname "$0")"',
            *commands,
        ]) + "\n"
        job.write("upload.sh", script.encode(), "text/x-shellscript")
        index = {
            "endpoint": "POST /api/upload",
            "form": {"files": "the image", "fileInfo": "the payload's fileInfo, as JSON"},
            "files": [{"file": item.path, "payload": self.payload_path(item)} for item in items],
        }
        return job.write("upload.json", json_bytes(index), "application/json"), {"payloads": len(items)}

    def read_import(self, job: ExportJob, result: ExportResult) -> tuple[dict[str, str], list[str]]:
        """Every payload the index lists, by file name with its alternativeText."""
        alt_key = self.mapping(job)["alt"]
        problems, listed = [], {}
        for entry in json.loads(job.read("upload.json"))["files"]:
            payload = json.loads(job.read(entry["payload"]))
            unknown = set(payload["fileInfo"]) - set(STRAPI_FILE_INFO)
            if payload["file"] != entry["file"] or unknown:
                problems.append(f"{entry['payload']} is for {payload['file']!r} with fileInfo keys "
                                f"{sorted(payload['fileInfo'])}")
            listed[entry["file"].removeprefix(IMAGES)] = payload["fileInfo"].get(alt_key, "")
        return listed, problems

    def upload_fields(self, job: ExportJob, item: CmsItem) -> dict[str, Any]:
        return {k: as_text(v) for k, v in item.fields.items()}
