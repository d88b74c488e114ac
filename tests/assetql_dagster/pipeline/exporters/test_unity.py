"""The `unity` exporter: textures with .meta files, a manifest and a .unitypackage that Unity imports."""

from __future__ import annotations

import io
import json
import re
import tarfile

import pytest
import yaml
from harness.export_jobs import BATCH, image_row, make_job, noise_image
from PIL import Image

from assetql_dagster.pipeline.exporters.base import ExportOptionsError
from assetql_dagster.pipeline.exporters.unity import (
    ROOT,
    UNCATEGORISED,
    UnityExporter,
    UnityPackage,
    category_folders,
    guid_of,
    unity_name,
)

EXPORTER = UnityExporter()
BASE = f"{ROOT}/{BATCH}"
PACKAGE = f"{BATCH}.unitypackage"


def rows(count: int = 3, size: int = 32) -> list[dict]:
    categories = ["weapons/swords", "weapons/axes", "potions", ""]
    return [image_row(i, category=categories[i % 4], width=size, height=size, sku=f"SKU-{i}") for i in range(count)]


def exported(tmp_path, options=None, row_list=None, images=None):
    job = make_job(tmp_path, EXPORTER, row_list or rows(), options, images)
    return job, EXPORTER.export(job)


def package_folders(data: bytes) -> dict[str, dict[str, bytes]]:
    """{GUID folder: {member name: bytes}} of a .unitypackage."""
    found: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            folder, _, name = member.name.partition("/")
            found.setdefault(folder, {})
            if member.isfile():
                found[folder][name] = tar.extractfile(member).read()
    return found


def by_pathname(data: bytes) -> dict[str, tuple[str, dict[str, bytes]]]:
    return {members["pathname"].decode(): (guid, members) for guid, members in package_folders(data).items()}


def rewrite(job, change) -> None:
    """Rewrite the job's .unitypackage with `change(guid, members)` applied to each GUID folder."""
    folders = package_folders(job.read(PACKAGE))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for guid, members in folders.items():
            for name, content in change(guid, dict(members)).items():
                info = tarfile.TarInfo(f"{guid}/{name}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    job.write(PACKAGE, buffer.getvalue())


def test_package_round_trip_holds_every_texture_folder_and_the_manifest(tmp_path):
    job, result = exported(tmp_path)
    assert result.main == job.key(PACKAGE)
    assert EXPORTER.validate(job, result) == []
    package = by_pathname(job.read(PACKAGE))
    textures = [f"{BASE}/Textures/weapons/swords/item-000.png", f"{BASE}/Textures/weapons/axes/item-001.png",
                f"{BASE}/Textures/potions/item-002.png"]
    folders = [ROOT, BASE, f"{BASE}/Textures", f"{BASE}/Textures/weapons", f"{BASE}/Textures/weapons/swords",
               f"{BASE}/Textures/weapons/axes", f"{BASE}/Textures/potions"]
    assert set(package) == {*textures, *folders, f"{BASE}/manifest.json"}
    for path, (guid, members) in package.items():
        assert re.fullmatch(r"[0-9a-f]{32}", guid)
        meta = yaml.safe_load(members["asset.meta"])
        assert meta["guid"] == guid and meta["fileFormatVersion"] == 2
        if path in folders:
            assert set(members) == {"asset.meta", "pathname"} and meta["folderAsset"] is True
        else:
            assert set(members) == {"asset", "asset.meta", "pathname"}
    for path in textures:
        guid, members = package[path]
        importer = yaml.safe_load(members["asset.meta"])["TextureImporter"]
        assert importer["textureType"] == 8 and importer["spriteMode"] == 1
        assert importer["spritePixelsToUnits"] == 100 and importer["maxTextureSize"] == 2048
        assert importer["mipmaps"]["enableMipMap"] == 0
        assert Image.open(io.BytesIO(members["asset"])).size == (32, 32)
        # The loose tree beside the package holds the same files.
        assert job.read(path) == members["asset"] and job.read(f"{path}.meta") == members["asset.meta"]
    assert job.read(f"{ROOT}.meta") == package[ROOT][1]["asset.meta"]
    assert result.metadata["textures"] == 3 and result.metadata["folders"] == len(folders)


def test_manifest_lists_each_texture_for_import_scripts(tmp_path):
    job, _ = exported(tmp_path)
    package = by_pathname(job.read(PACKAGE))
    manifest = json.loads(package[f"{BASE}/manifest.json"][1]["asset"])
    assert manifest["batch"] == BATCH and manifest["format"] == "png" and manifest["texture_type"] == "sprite"
    first = manifest["textures"][0]
    assert first == {
        "asset_path": f"{BASE}/Textures/weapons/swords/item-000.png", "guid": package[first["asset_path"]][0],
        "source_file": "item-000.png", "variant_id": "item-0", "prompt": "a steel sword number 0, game icon",
        "tags": ["sword", "steel", "blue"], "category": "weapons/swords", "sku": "SKU-0", "width": 32, "height": 32,
    }
    assert [t["source_file"] for t in manifest["textures"]] == ["item-000.png", "item-001.png", "item-002.png"]
    meta = yaml.safe_load(package[f"{BASE}/manifest.json"][1]["asset.meta"])
    assert "TextScriptImporter" in meta


def test_default_texture_type_and_importer_options_reach_the_meta(tmp_path):
    options = {"texture_type": "default", "max_size": 512, "filter_mode": "point", "compression": "none",
               "pixels_per_unit": 16}
    job, result = exported(tmp_path, options)
    assert EXPORTER.validate(job, result) == []
    meta = yaml.safe_load(job.read(f"{BASE}/Textures/potions/item-002.png.meta"))["TextureImporter"]
    assert meta["textureType"] == 0 and meta["spriteMode"] == 0 and meta["mipmaps"]["enableMipMap"] == 1
    assert meta["maxTextureSize"] == 512 and meta["textureSettings"]["filterMode"] == 0
    assert meta["platformSettings"][0]["textureCompression"] == 0 and meta["spritePixelsToUnits"] == 16


def test_guids_are_stable_across_exports_and_distinct_across_assets(tmp_path):
    first, _ = exported(tmp_path / "a")
    second, _ = exported(tmp_path / "b")
    one, two = by_pathname(first.read(PACKAGE)), by_pathname(second.read(PACKAGE))
    assert {p: g for p, (g, _) in one.items()} == {p: g for p, (g, _) in two.items()}
    assert len({g for g, _ in one.values()}) == len(one)
    # Same inputs, same package bytes: a re-export changes nothing in version control or a CDN.
    assert first.read(PACKAGE) == second.read(PACKAGE)
    # The shared root folder has one GUID whichever batch's package brings it.
    assert guid_of(ROOT) == one[ROOT][0] and guid_of(f"{ROOT}/other-batch") != guid_of(BASE)


def test_tga_option_writes_tga_textures_keeping_alpha(tmp_path):
    images = [noise_image(0, (32, 32), "RGBA"), noise_image(1, (32, 32)), noise_image(2, (32, 32))]
    job, result = exported(tmp_path, {"format": "tga"}, images=images)
    assert EXPORTER.validate(job, result) == []
    package = by_pathname(job.read(PACKAGE))
    with_alpha = Image.open(io.BytesIO(package[f"{BASE}/Textures/weapons/swords/item-000.tga"][1]["asset"]))
    assert with_alpha.format == "TGA" and with_alpha.mode == "RGBA" and with_alpha.size == (32, 32)
    assert with_alpha.tobytes() == images[0].tobytes()
    opaque = Image.open(io.BytesIO(job.read(f"{BASE}/Textures/potions/item-002.tga")))
    assert opaque.mode == "RGB" and opaque.tobytes() == images[2].tobytes()
    metas = [yaml.safe_load(package[f"{BASE}/Textures/{p}.tga"][1]["asset.meta"])["TextureImporter"]
             for p in ("weapons/swords/item-000", "potions/item-002")]
    assert [m["alphaIsTransparency"] for m in metas] == [1, 0]


def test_uncategorised_and_unsafe_categories_become_safe_folders(tmp_path):
    row_list = [image_row(0, category="", width=16, height=16),
                image_row(1, category="Épées/../Long: Swords?", width=16, height=16),
                image_row(2, category="épées/con", width=16, height=16)]
    job, result = exported(tmp_path, row_list=row_list)
    assert EXPORTER.validate(job, result) == []
    paths = set(by_pathname(job.read(PACKAGE)))
    assert f"{BASE}/Textures/{UNCATEGORISED}/item-000.png" in paths
    assert f"{BASE}/Textures/Epees/Long- Swords/item-001.png" in paths
    # "épées" and "Épées" are one folder on Windows and macOS: the first spelling is kept.
    assert f"{BASE}/Textures/Epees/con_/item-002.png" in paths


@pytest.mark.parametrize(("text", "name"), [
    ("Swords", "Swords"), ("../..", ""), (".hidden~", "hidden"), ("a/b", "a-b"), ("  x\t y ", "x y"),
    ("NUL", "NUL_"), ("cvs", "cvs_"), ("Ça va", "Ca va"), ("x" * 80, "x" * 64), ("雪", ""),
])
def test_unity_name_keeps_names_windows_macos_and_unity_accept(text, name):
    assert unity_name(text) == name


def test_category_folders_fall_back_to_uncategorised():
    assert category_folders("weapons/swords") == ["weapons", "swords"]
    assert category_folders("//雪/") == [UNCATEGORISED]


def test_colliding_texture_names_are_refused_naming_both(tmp_path):
    row_list = [image_row(0, width=16, height=16), image_row(1, width=16, height=16)]
    row_list[1] = {**row_list[1], "file_name": "ITEM-000.png"}
    job = make_job(tmp_path, EXPORTER, row_list)
    with pytest.raises(ValueError, match=r"ITEM-000\.png and item-000\.png would both be .*item-000\.png"):
        EXPORTER.export(job)


@pytest.mark.parametrize(("options", "message"), [
    ({"format": "jpg"}, r"format must be one of png, tga, got 'jpg'"),
    ({"texture_type": "normal"}, r"texture_type must be one of default, sprite, got 'normal'"),
    ({"max_size": 1000}, r"max_size must be one of 32, 64, .*16384 \(the sizes Unity offers\), got 1000"),
    ({"max_size": True}, r"max_size must be one of .* got True"),
    ({"filter_mode": "nearest"}, r"filter_mode must be one of point, bilinear, trilinear, got 'nearest'"),
    ({"compression": "best"}, r"compression must be one of none, normal, high, low, got 'best'"),
    ({"pixels_per_unit": 0}, r"pixels_per_unit must be a number from 0.01 to 10000, got 0"),
    ({"fromat": "png"}, r"unknown option 'fromat'; did you mean 'format'\?"),
])
def test_bad_options_name_the_option_and_value(options, message):
    with pytest.raises(ExportOptionsError, match=message):
        EXPORTER.parse_options(options)


def test_validate_catches_a_truncated_package(tmp_path):
    job, result = exported(tmp_path)
    job.write(PACKAGE, job.read(PACKAGE)[:2000])
    problems = EXPORTER.validate(job, result)
    assert len(problems) == 1 and problems[0].startswith(f"{PACKAGE} cannot be read as a gzip'd tar")


def test_validate_catches_a_texture_of_the_wrong_size_and_format(tmp_path):
    job, result = exported(tmp_path)
    texture = guid_of(f"{BASE}/Textures/potions/item-002.png")
    small = io.BytesIO()
    noise_image(5, (8, 8)).save(small, "TGA")
    rewrite(job, lambda guid, members: {**members, "asset": small.getvalue()} if guid == texture else members)
    problems = EXPORTER.validate(job, result)
    assert problems == [
        f"{BASE}/Textures/potions/item-002.png: expected a PNG of (32, 32) (the manifest says 32×32), "
        "the package holds ('TGA', (8, 8))"
    ]


def test_validate_catches_meta_guid_mismatch_missing_members_and_stray_paths(tmp_path):
    job, result = exported(tmp_path)
    texture = guid_of(f"{BASE}/Textures/potions/item-002.png")
    folder = guid_of(f"{BASE}/Textures/weapons/axes")
    manifest = guid_of(f"{BASE}/manifest.json")
    wrong_guid = "0" * 32

    def corrupt(guid, members):
        if guid == texture:
            members["asset.meta"] = members["asset.meta"].replace(guid.encode(), wrong_guid.encode())
        if guid == folder:
            del members["pathname"]
        if guid == manifest:
            members["pathname"] = b"Assets/Elsewhere/manifest.json\n"
        return members

    rewrite(job, corrupt)
    problems = "\n".join(EXPORTER.validate(job, result))
    # A GUID of only digits stays text (Unity's reading), so the mismatch names it exactly.
    assert f"asset.meta has guid '{wrong_guid}', not its folder's name" in problems
    assert f"package folder {folder} lacks ['pathname']" in problems
    stray = f"Assets/Elsewhere/manifest.json (package folder {manifest})"
    assert f"{stray}: the pathname is not a clean path under {BASE}/" in problems
    axes = f"{BASE}/Textures/weapons/axes"
    assert f"{axes}/item-001.png's folder {axes} has no folder entry" in problems
    assert f"{BASE}/manifest.json is missing from the package" in problems


def test_validate_catches_an_image_missing_from_the_package_and_manifest(tmp_path):
    job, result = exported(tmp_path)
    job.images = [*job.images, *make_job(tmp_path / "more", EXPORTER, [image_row(7, width=32, height=32)]).images]
    problems = EXPORTER.validate(job, result)
    assert problems == ["the manifest misses ['item-007.png'] or lists others []"]


def test_validate_catches_a_missing_loose_file(tmp_path):
    job, result = exported(tmp_path)
    job.storage.local_path(job.key(f"{BASE}/Textures/potions.meta")).unlink()
    assert EXPORTER.validate(job, result) == [
        f"the loose tree lacks 1 file(s) of the package, e.g. ['{job.key(f'{BASE}/Textures/potions.meta')}']"
    ]


def test_unitypackage_writer_makes_folder_entries_without_an_asset():
    buffer = io.BytesIO()
    with UnityPackage(buffer) as package:
        package.add("Assets/X", "guid: x\n")
        package.add("Assets/X/a.txt", "guid: y\n", b"hello")
    folders = package_folders(buffer.getvalue())
    assert folders[guid_of("Assets/X")] == {"asset.meta": b"guid: x\n", "pathname": b"Assets/X"}
    assert folders[guid_of("Assets/X/a.txt")]["asset"] == b"hello"


def test_validate_catches_duplicate_pathnames(tmp_path):
    job, result = exported(tmp_path)
    potions, weapons = guid_of(f"{BASE}/Textures/potions"), guid_of(f"{BASE}/Textures/weapons")

    def renaming_potions(to: str):
        return lambda guid, members: {**members, "pathname": to.encode()} if guid == potions else members

    rewrite(job, renaming_potions(f"{BASE}/Textures/WEAPONS"))
    assert any(
        {f"{BASE}/Textures/WEAPONS", f"{BASE}/Textures/weapons"} <= set(p.split(": ")[0].split(" and "))
        and "the same pathname ignoring case" in p for p in EXPORTER.validate(job, result)
    )
    rewrite(job, renaming_potions(f"{BASE}/Textures/weapons"))
    problems = EXPORTER.validate(job, result)
    first, second = sorted([potions, weapons])
    assert f"{BASE}/Textures/weapons: the pathname of package folders {first} and {second}" in problems
    orphan = f"{BASE}/Textures/potions/item-002.png"
    assert f"{orphan}'s folder {BASE}/Textures/potions has no folder entry in the package" in problems
