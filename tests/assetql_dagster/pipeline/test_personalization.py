"""A batch in five languages with a season and a campaign, run on the tiny models end to end."""

import csv
import io
import json
import zipfile

from harness.batch_runs import materialize_partition

from assetql_dagster.domain.localization import localize_category, localize_tag
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import register_batch
from resources.storage import LocalStorage

ROWS = """variant_id,subject,category,sku,material,environment,language
sword-01,a longsword,weapon,SKU-1,steel,a forge,en
sword-02,una espada,weapon,SKU-2,acero,un mercado,es
shield-01,un bouclier,armor,SKU-3,chêne,un château,fr
helmet-01,ein Helm,armor,SKU-4,Bronze,Berge,de
potion-01,赤い薬,potion,SKU-5,ガラス,城,ja
"""


def test_five_languages_season_and_campaign_reach_tags_manifest_and_exports(tmp_path, batch_factory, monkeypatch):
    campaigns = tmp_path / "campaigns.yaml"
    campaigns.write_text('campaigns:\n  - name: winter-sale\n    brand_colors: ["#c8102e", "#ffffff"]\n'
                         "    theme: winter holiday\n    tone: playful\n")
    monkeypatch.setenv("ASSETQL_CAMPAIGNS", str(campaigns))
    folder = batch_factory(rows=1)
    (folder / "batch.csv").write_text(ROWS)
    with (folder / "batch.yaml").open("a") as fh:
        fh.write("season: christmas\ncampaign: winter-sale\nexports: [zip, manifest]\n"
                 "translator: glossary\nglossary: {es: {una espada: a sword, acero: steel}}\n")
    storage = LocalStorage(root=str(tmp_path / "data"))
    key = register_batch(storage, folder).key
    assert materialize_partition(storage, key).success
    batch = read_record(storage, key, "batch_input")
    assert batch.campaign == "winter-sale" and batch.settings.palette == ("#c8102e", "#ffffff")
    profile = read_record(storage, key, "style_profile")
    assert [c.hex for c in profile.palette] == ["#c8102e", "#ffffff"]  # the brand colours are the target
    tags = {t.file_name: {tag.label for tag in t.tags} for t in read_record(storage, key, "tags").images}
    assert all({"season:christmas", "campaign:winter-sale"} <= labels for labels in tags.values())

    with zipfile.ZipFile(storage.local_path(f"exports/{key}/{key}.zip")) as package:
        rows = {r["variant_id"]: r for r in csv.DictReader(io.StringIO(package.read("manifest.csv").decode("utf-8")))}
        document = {r["variant_id"]: r for r in json.loads(package.read("manifest.json"))["images"]}
    languages = {"sword-01": "en", "sword-02": "es", "shield-01": "fr", "helmet-01": "de", "potion-01": "ja"}
    for variant, language in languages.items():
        row, entry = rows[variant], document[variant]
        assert (row["language"], row["season"], row["campaign"]) == (language, "christmas", "winter-sale")
        english = [t.rsplit(":", 1)[0] for t in entry["tags"] if not t.startswith(("season:", "campaign:"))]
        localized = [localize_tag(label, language) for label in english]
        assert all(label in entry["tags_localized"] for label in localized)
        assert entry["category_localized"] == localize_category(entry["category"], language)
    # Japanese text, as UTF-8 in the CSV and as text (not \\u escapes) in the JSON.
    japanese = document["potion-01"]["category_localized"]
    assert any("\u3040" <= ch <= "\u9fff" for ch in japanese) and japanese in rows["potion-01"]["category_localized"]
    assert document["sword-02"]["original_prompt"].startswith("una espada") and "a sword" in document["sword-02"]["prompt"]
    assert document["sword-01"]["original_prompt"] == ""
