"""The CMS exporters: web JPEGs, the import files read back (WXR, media CSV, contentful-import JSON,
Strapi payloads), the field mapping, and uploads through the clients against local stand-ins."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest
from harness.cms_servers import ContentfulStandIn, StrapiStandIn, WordPressStandIn
from harness.export_jobs import BATCH, image_row, make_job, noise_image
from PIL import Image

from assetql_dagster.domain.web_images import is_srgb_profile
from assetql_dagster.pipeline.exporters.base import ExportOptionsError
from assetql_dagster.pipeline.exporters.cms import (
    ALT_META,
    ContentfulExporter,
    StrapiExporter,
    WordPressExporter,
    contentful_id,
    slug,
)
from resources.cms import CmsUploadError, ContentfulClient, StrapiClient, WordPressClient

WP_NS = {"wp": "http://wordpress.org/export/1.2/", "excerpt": "http://wordpress.org/export/1.2/excerpt/",
         "content": "http://purl.org/rss/1.0/modules/content/"}
FAST = {"retries": 2, "backoff_s": 0.0, "timeout_s": 5.0}
NAMES = ["item-000.jpg", "item-001.jpg", "item-002.jpg"]


def exported(tmp_path, exporter, options=None, rows=None, images=None, clients=None):
    job = make_job(tmp_path, exporter, rows, options, images)
    job.clients = clients or {}
    return job, exporter.export(job)


def read_json(job, relative):
    return json.loads(job.read(relative))


def wxr_items(job):
    channel = ET.fromstring(job.read("media.xml")).find("channel")
    return channel, {i.findtext("wp:attachment_url", namespaces=WP_NS).rsplit("/", 1)[-1]: i
                     for i in channel.findall("item")}


def test_wordpress_wxr_lists_every_image_as_an_attachment_with_alt_text_and_terms(tmp_path):
    job, result = exported(tmp_path, WordPressExporter())
    assert result.main == f"exports/{BATCH}/wordpress/media.xml" and result.metadata == {"images": 3, "format": "wxr"}
    channel, items = wxr_items(job)
    assert channel.findtext("wp:wxr_version", namespaces=WP_NS) == "1.2"
    assert sorted(items) == NAMES
    sword = items["item-000.jpg"]
    assert sword.findtext("wp:post_type", namespaces=WP_NS) == "attachment"
    assert sword.findtext("wp:attachment_url", namespaces=WP_NS) == "images/item-000.jpg"
    assert sword.findtext("title") == "a steel sword number 0, game icon"
    assert sword.findtext("excerpt:encoded", namespaces=WP_NS) == "a steel sword number 0, game icon"
    assert "variant item-0, seed 0, model tiny" in sword.findtext("content:encoded", namespaces=WP_NS)
    meta = {m.findtext("wp:meta_key", namespaces=WP_NS): m.findtext("wp:meta_value", namespaces=WP_NS)
            for m in sword.findall("wp:postmeta", WP_NS)}
    assert meta == {ALT_META: "a steel sword number 0, game icon (sword, steel, blue)"}
    terms = [(c.get("domain"), c.get("nicename"), c.text) for c in sword.findall("category")]
    # The image is filed under the leaf of its category path; the parent is defined for the hierarchy.
    assert terms == [("category", "weapons-swords", "swords"), ("post_tag", "sword", "sword"),
                     ("post_tag", "steel", "steel"), ("post_tag", "blue", "blue")]
    categories = {c.findtext("wp:category_nicename", namespaces=WP_NS): c.findtext("wp:category_parent", namespaces=WP_NS)
                  for c in channel.findall("wp:category", WP_NS)}
    assert categories == {"weapons": "", "weapons-swords": "weapons", "weapons-axes": "weapons", "potions": ""}
    tags = [t.findtext("wp:tag_slug", namespaces=WP_NS) for t in channel.findall("wp:tag", WP_NS)]
    assert tags == ["sword", "steel", "blue"]
    potion = items["item-002.jpg"]
    potion_meta = [m.findtext("wp:meta_value", namespaces=WP_NS) for m in potion.findall("wp:postmeta", WP_NS)]
    assert "POT-2" in potion_meta  # sku → meta:sku
    assert WordPressExporter().validate(job, result) == []


def test_wordpress_jpegs_are_srgb_within_the_size_and_byte_limits(tmp_path):
    rows = [image_row(0, width=600, height=300)]
    job, _ = exported(tmp_path, WordPressExporter(), {"max_side": 256, "max_kb": 40}, rows,
                      [noise_image(0, (600, 300))])
    data = job.read("images/item-000.jpg")
    with Image.open(io.BytesIO(data)) as jpeg:
        assert jpeg.format == "JPEG" and jpeg.mode == "RGB" and jpeg.size == (256, 128)
        assert is_srgb_profile(jpeg.info["icc_profile"])
    assert len(data) < 40 * 1024


def test_a_jpeg_byte_limit_no_quality_reaches_names_the_image(tmp_path):
    rows = [image_row(0, width=1024, height=1024)]
    with pytest.raises(ValueError, match="item-000.png: a 1024×1024 JPEG stays at or above 20,480 bytes.*raise max_kb"):
        exported(tmp_path, StrapiExporter(), {"max_kb": 20, "max_side": 1024}, rows, [noise_image(0, (1024, 1024))])


def test_wordpress_csv_holds_every_image_with_alt_text_and_joined_terms(tmp_path):
    job, result = exported(tmp_path, WordPressExporter(), {"format": "csv", "base_url": "https://cdn.example.com/a/"})
    assert result.main.endswith("/media.csv")
    rows = list(csv.DictReader(io.StringIO(job.read("media.csv").decode("utf-8-sig"))))
    assert [r["file"] for r in rows] == [f"images/{n}" for n in NAMES]
    assert rows[0]["url"] == "https://cdn.example.com/a/item-000.jpg"
    assert rows[0]["alt_text"] == "a steel sword number 0, game icon (sword, steel, blue)"
    assert rows[0]["taxonomy:category"] == "weapons > swords"
    assert rows[0]["taxonomy:post_tag"] == "sword|steel|blue"
    assert [r["meta:sku"] for r in rows] == ["", "", "POT-2"]
    assert WordPressExporter().validate(job, result) == []


def test_wordpress_wxr_stays_readable_with_control_characters_in_a_prompt(tmp_path):
    rows = [image_row(0, prompt="a sword\x07 <with> & \"marks\"", tags=("Épée", "剣"))]
    job, result = exported(tmp_path, WordPressExporter(), rows=rows)
    channel, items = wxr_items(job)
    assert items["item-000.jpg"].findtext("title") == 'a sword <with> & "marks"'
    assert [c.get("nicename") for c in items["item-000.jpg"].findall("category")][1:] == ["epee", slug("剣")]
    assert WordPressExporter().validate(job, result) == []


def test_wordpress_base_url_makes_absolute_attachment_urls(tmp_path):
    job, _ = exported(tmp_path, WordPressExporter(), {"base_url": "https://cdn.example.com/assets"})
    channel, items = wxr_items(job)
    assert channel.findtext("wp:base_site_url", namespaces=WP_NS) == "https://cdn.example.com/assets"
    assert items["item-001.jpg"].findtext("guid") == "https://cdn.example.com/assets/item-001.jpg"


def test_mapping_file_records_the_defaults_with_the_overrides(tmp_path):
    overrides = {"tags": "taxonomy:media_tag", "category": None, "sku": "meta:_sku", "caption": None}
    job, result = exported(tmp_path, WordPressExporter(), {"mapping": overrides})
    mapping = read_json(job, "mapping.json")
    assert mapping["system"] == "wordpress"
    assert mapping["fields"] == {
        "file_name": None, "title": "title", "alt": "alt_text", "caption": None, "description": "description",
        "category": None, "tags": "taxonomy:media_tag", "sku": "meta:_sku",
    }
    assert set(mapping["sources"]) == set(mapping["fields"])
    channel, items = wxr_items(job)
    assert not channel.findall("wp:category", WP_NS) and not channel.findall("wp:tag", WP_NS)
    assert {t.findtext("wp:term_taxonomy", namespaces=WP_NS) for t in channel.findall("wp:term", WP_NS)} == {"media_tag"}
    assert {c.get("domain") for c in items["item-000.jpg"].findall("category")} == {"media_tag"}
    assert items["item-000.jpg"].findtext("excerpt:encoded", namespaces=WP_NS) == ""
    assert WordPressExporter().validate(job, result) == []


@pytest.mark.parametrize(("exporter", "mapping", "message"), [
    (WordPressExporter(), {"colour": "title"}, "mapping has unknown source field 'colour'; sources: file_name, title"),
    (WordPressExporter(), {"alt": None}, "mapping cannot leave out alt: every image needs its alt text"),
    (WordPressExporter(), {"tags": "terms"}, "mapping maps tags to 'terms'; expected title, alt_text"),
    (ContentfulExporter(), {"tags": "entry:image"}, "mapping maps tags to 'entry:image'; expected title and description"),
    (StrapiExporter(), {"alt": "alt"}, "mapping maps alt to 'alt'; expected name, alternativeText, caption"),
    (StrapiExporter(), ["alt"], "mapping must be a mapping of source field to name"),
    (WordPressExporter(), {"caption": "description"},
     "mapping maps caption and description to 'description' (with the defaults); map all but one"),
])
def test_mapping_overrides_are_checked(exporter, mapping, message):
    with pytest.raises(ExportOptionsError, match=re.escape(message)):
        exporter.parse_options({"mapping": mapping})


def test_base_url_must_be_a_url():
    with pytest.raises(ExportOptionsError, match="base_url must be an http.s. URL .* or empty, got 'cdn.example.com'"):
        WordPressExporter().parse_options({"base_url": "cdn.example.com"})


def test_contentful_import_json_has_assets_per_locale_and_entries_for_tags(tmp_path):
    job, result = exported(tmp_path, ContentfulExporter(), {"locale": "de-DE"})
    assert result.main.endswith("/contentful-import.json") and result.metadata == {"images": 3, "entries": 3}
    document = read_json(job, "contentful-import.json")
    assets = {a["sys"]["id"]: a for a in document["assets"]}
    assert sorted(assets) == [f"{BATCH}-item-00{n}" for n in range(3)]
    fields = assets[f"{BATCH}-item-000"]["fields"]
    assert fields["title"] == {"de-DE": "a steel sword number 0, game icon"}
    assert fields["description"] == {"de-DE": "a steel sword number 0, game icon (sword, steel, blue)"}
    assert fields["file"] == {"de-DE": {"url": "//images/item-000.jpg", "fileName": "item-000.jpg",
                                        "contentType": "image/jpeg"}}
    (content_type,) = document["contentTypes"]
    assert content_type["sys"]["id"] == "assetqlImage" and content_type["displayField"] == "title"
    types = {f["id"]: f["type"] for f in content_type["fields"]}
    assert types == {"title": "Symbol", "image": "Link", "category": "Symbol", "tags": "Array", "sku": "Symbol"}
    entries = {e["sys"]["id"]: e for e in document["entries"]}
    potion = entries[f"{BATCH}-item-002"]["fields"]
    assert potion["image"] == {"de-DE": {"sys": {"type": "Link", "linkType": "Asset", "id": f"{BATCH}-item-002"}}}
    assert potion["tags"] == {"de-DE": ["sword", "steel", "blue"]} and potion["sku"] == {"de-DE": "POT-2"}
    assert "sku" not in entries[f"{BATCH}-item-000"]["fields"]  # no SKU, no value
    assert ContentfulExporter().validate(job, result) == []


def test_contentful_without_entry_fields_writes_assets_only(tmp_path):
    mapping = {"tags": None, "category": None, "sku": None}
    job, result = exported(tmp_path, ContentfulExporter(), {"mapping": mapping, "base_url": "https://cdn.example.com"})
    document = read_json(job, "contentful-import.json")
    assert set(document) == {"assets"} and result.metadata["entries"] == 0
    assert document["assets"][0]["fields"]["file"]["en-US"]["url"] == "https://cdn.example.com/item-000.jpg"
    assert ContentfulExporter().validate(job, result) == []


def test_contentful_ids_are_legal_and_distinct():
    assert contentful_id("shop-1-item-000") == "shop-1-item-000"
    long_a, long_b = contentful_id("b" * 70 + "-x"), contentful_id("b" * 70 + "-y")
    assert len(long_a) == 64 and long_a != long_b and long_a.startswith("b" * 51)


def test_strapi_payloads_carry_file_info_and_the_script_posts_them(tmp_path):
    job, result = exported(tmp_path, StrapiExporter())
    index = read_json(job, "upload.json")
    assert result.main.endswith("/upload.json") and index["endpoint"] == "POST /api/upload"
    assert [f["file"] for f in index["files"]] == [f"images/{n}" for n in NAMES]
    payload = read_json(job, "payloads/item-001.json")
    assert payload == {"file": "images/item-001.jpg", "fileInfo": {
        "name": "item-001.jpg", "alternativeText": "a steel sword number 1, game icon (sword, steel, blue)",
        "caption": "a steel sword number 1, game icon",
    }}
    script = job.read("upload.sh").decode()
    assert script.count("$STRAPI_URL/api/upload") == 3 and "-F files=@images/item-002.jpg" in script
    assert subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True).returncode == 0
    assert StrapiExporter().validate(job, result) == []


def test_validate_finds_a_missing_alt_text_a_bad_jpeg_and_a_missing_image(tmp_path):
    exporter = StrapiExporter()
    job, result = exported(tmp_path, exporter)
    payload = read_json(job, "payloads/item-000.json")
    payload["fileInfo"]["alternativeText"] = " "
    job.write("payloads/item-000.json", json.dumps(payload).encode())
    job.write("images/item-001.jpg", job.storage.read_bytes(job.images[1].raw_key))  # a PNG in its place
    index = read_json(job, "upload.json")
    index["files"].pop()
    job.write("upload.json", json.dumps(index).encode())
    problems = exporter.validate(job, result)
    assert "item-000.jpg is listed without alt text" in problems
    assert "images/item-001.jpg is PNG, not JPEG" in problems
    assert any("misses ['item-002.jpg']" in p for p in problems)


def test_validate_reports_an_unreadable_import_file(tmp_path):
    exporter = WordPressExporter()
    job, result = exported(tmp_path, exporter)
    job.write("media.xml", b"<rss><channel><item>")
    (problem,) = exporter.validate(job, result)
    assert "cannot be read back: ParseError" in problem


def test_wordpress_upload_sends_each_jpeg_with_its_alt_text(tmp_path):
    with WordPressStandIn(fail_first=1) as server:
        client = WordPressClient(server.url, server.user, server.password, **FAST)
        job, result = exported(tmp_path, WordPressExporter(), {"upload": True}, clients={"wordpress": client})
    assert result.metadata["uploaded"] == 3
    uploaded = read_json(job, "uploaded.json")
    assert uploaded["system"] == "wordpress" and uploaded["target"] == server.url and uploaded["error"] is None
    assert [u["file"] for u in uploaded["uploaded"]] == [f"images/{n}" for n in NAMES]
    assert [u["id"] for u in uploaded["uploaded"]] == ["1", "2", "3"]
    media = server.media[2]
    assert media["data"] == job.read("images/item-001.jpg")
    assert media["alt_text"] == "a steel sword number 1, game icon (sword, steel, blue)"
    assert media["title"] == {"raw": "a steel sword number 1, game icon"}
    assert WordPressExporter().validate(job, result) == []


def test_contentful_upload_creates_and_publishes_an_asset_per_image(tmp_path):
    with ContentfulStandIn() as server:
        client = ContentfulClient(server.space, server.environment, server.token, server.url, server.url,
                                  poll_s=0.0, **FAST)
        job, result = exported(tmp_path, ContentfulExporter(), {"upload": True}, clients={"contentful": client})
    uploaded = read_json(job, "uploaded.json")["uploaded"]
    assert [u["id"] for u in uploaded] == [f"{BATCH}-item-00{n}" for n in range(3)]
    asset = server.assets[f"{BATCH}-item-000"]
    assert asset["sys"]["publishedVersion"] == 2
    assert asset["fields"]["description"] == {"en-US": "a steel sword number 0, game icon (sword, steel, blue)"}
    assert uploaded[0]["url"] == "https:" + asset["fields"]["file"]["en-US"]["url"]
    assert ContentfulExporter().validate(job, result) == []


def test_strapi_upload_posts_each_payload(tmp_path):
    with StrapiStandIn() as server:
        client = StrapiClient(server.url, server.token, **FAST)
        job, result = exported(tmp_path, StrapiExporter(), {"upload": True}, clients={"strapi": client})
    assert [f["alternativeText"] for f in server.files] == [
        read_json(job, f"payloads/item-00{n}.json")["fileInfo"]["alternativeText"] for n in range(3)]
    assert [f["data"] for f in server.files] == [job.read(f"images/{n}") for n in NAMES]
    assert read_json(job, "uploaded.json")["uploaded"][2]["url"] == server.url + server.files[2]["url"]
    assert StrapiExporter().validate(job, result) == []


def test_upload_without_a_client_names_the_configuration_and_writes_nothing(tmp_path):
    job = make_job(tmp_path, ContentfulExporter(), options={"upload": True})
    with pytest.raises(ValueError, match="contentful has upload: true but no Contentful connection is configured; "
                                         "set ASSETQL_CONTENTFUL_SPACE_ID, ASSETQL_CONTENTFUL_MANAGEMENT_TOKEN"):
        ContentfulExporter().export(job)
    assert job.written == {}


def test_a_failed_upload_records_what_was_uploaded_and_validation_reports_it(tmp_path):
    with WordPressStandIn() as server:
        client = WordPressClient(server.url, server.user, server.password, retries=0, backoff_s=0.0)
        job = make_job(tmp_path, WordPressExporter(), options={"upload": True})
        job.clients = {"wordpress": client}
        original = server.route

        def fail_third(method, path, headers, body):
            # The third file is refused (503, more than the client's zero retries allow).
            if method == "POST" and path == "/wp-json/wp/v2/media" and len(server.media) == 2:
                return 503, {"code": "maintenance", "message": "down for maintenance"}
            return original(method, path, headers, body)

        server.route = fail_third
        with pytest.raises(CmsUploadError, match=r"WordPress upload stopped after 2 of 3 image\(s\) .*answered 503"):
            WordPressExporter().export(job)
    record = read_json(job, "uploaded.json")
    assert [u["id"] for u in record["uploaded"]] == ["1", "2"] and "503" in record["error"]
    problems = WordPressExporter().upload_problems(job, {f"{i.stem}.jpg": i for i in job.images})
    assert problems[0].startswith("uploaded.json records an error") and "misses ['item-002.jpg']" in problems[1]


def test_slugs_are_ascii_and_never_empty():
    assert slug("Weapons/Long Swords") == "weapons-long-swords"
    assert slug("Épée") == "epee"
    assert slug("剣").startswith("term-") and slug("剣") != slug("盾")
