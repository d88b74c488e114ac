"""`unity`: the batch as Unity textures, in a `.unitypackage` and as a loose `Assets/` tree.

Textures land at `Assets/AssetQL/{batch}/Textures/{category}/{stem}.png|tga`, each with the `.meta`
file Unity would write (TextureImporter settings from the options), every folder with its own folder
`.meta`, and `Assets/AssetQL/{batch}/manifest.json` listing each texture's asset path, GUID, source
file, prompt, tags, category, sku and size for import scripts. GUIDs are derived from the asset path,
so re-exporting a batch (or importing it into a second project) keeps every reference to it intact.

A `.unitypackage` is a gzip'd tar holding one folder per asset, named by the asset's GUID, with
`asset` (the file's bytes, absent for folders), `asset.meta` and `pathname` (the project-relative path).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
import unicodedata
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import yaml
from PIL import Image

from assetql_dagster.domain.settings import number_check, quote
from assetql_dagster.domain.web_images import to_srgb
from assetql_dagster.pipeline.exporters.base import (
    Exporter,
    ExportImage,
    ExportJob,
    ExportResult,
    Option,
    choice,
)

ROOT = "Assets/AssetQL"
UNCATEGORISED = "Uncategorised"
MANIFEST = "manifest.json"
# GUIDs are uuid5 of the project-relative path in this namespace: stable across exports and
# machines, and the shared `Assets/AssetQL` folder gets the same GUID from every batch's package.
GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://assetql/exporters/unity")
GUID_RE = re.compile(r"[0-9a-f]{32}")

# Unity's enum values as its .meta files store them (TextureImporterType, FilterMode,
# TextureImporterCompression).
TEXTURE_TYPES = {"default": 0, "sprite": 8}
FILTER_MODES = {"point": 0, "bilinear": 1, "trilinear": 2}
COMPRESSIONS = {"none": 0, "normal": 1, "high": 2, "low": 3}
MAX_SIZES = tuple(2**n for n in range(5, 15))  # the Max Size values Unity offers, 32 to 16384
PIL_FORMATS = {"png": "PNG", "tga": "TGA"}

# Characters left in folder and file names: Windows, macOS and Unity accept these everywhere.
# Dots go too, so a folder never looks like a file with an extension or ends in ".tmp" (Unity ignores those).
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9 _-]+")
# Names Windows reserves whatever the extension, and "cvs", which Unity's importer skips.
_RESERVED_NAME = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9]|cvs)", re.IGNORECASE)
_MAX_NAME = 64


def max_size_check(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value in MAX_SIZES:
        return None
    return f"must be one of {', '.join(map(str, MAX_SIZES))} (the sizes Unity offers), got {quote(value)}"


def unity_name(text: str) -> str:
    """`text` as a folder or file name safe everywhere ("" when nothing is left)."""
    # Accents are dropped rather than the letter, other unsafe runs become "-", separators are trimmed
    # from the ends, and reserved names get a "_" so Windows can create them.
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    name = _UNSAFE_NAME.sub("-", re.sub(r"\s+", " ", ascii_text)).strip(" _-")[:_MAX_NAME].rstrip(" _-")
    return f"{name}_" if _RESERVED_NAME.fullmatch(name) else name


def category_folders(category: str) -> list[str]:
    """A category path ("weapons/swords") as folder names, [UNCATEGORISED] when nothing usable is left."""
    return [name for name in map(unity_name, category.split("/")) if name] or [UNCATEGORISED]


def guid_of(path: str) -> str:
    """The GUID of the asset at project-relative `path`: 32 lowercase hex digits, derived from the path."""
    return uuid.uuid5(GUID_NAMESPACE, path).hex


def plain_meta(guid: str, importer: str, folder: bool = False) -> str:
    """The .meta Unity writes for a folder or for a file whose `importer` has no settings."""
    folder_line = "folderAsset: yes\n" if folder else ""
    return (
        f"fileFormatVersion: 2\nguid: {guid}\n{folder_line}{importer}:\n"
        "  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n"
    )


def texture_meta(guid: str, options: dict[str, Any], has_alpha: bool) -> str:
    """A texture's .meta, its TextureImporter settings from the options."""
    # The serialized version is 2019.4 LTS's: newer editors upgrade it on import, older ones cannot
    # read a newer one. Mip maps and wrap mode follow Unity's own defaults for the texture type
    # (sprites: no mip maps, clamped); NPOT scaling is off so textures keep their generated size.
    sprite = options["texture_type"] == "sprite"
    wrap = 1 if sprite else 0
    max_size = options["max_size"]
    return f"""fileFormatVersion: 2
guid: {guid}
TextureImporter:
  internalIDToNameTable: []
  externalObjects: {{}}
  serializedVersion: 11
  mipmaps:
    mipMapMode: 0
    enableMipMap: {0 if sprite else 1}
    sRGBTexture: 1
    linearTexture: 0
    fadeOut: 0
    borderMipMap: 0
    mipMapsPreserveCoverage: 0
    alphaTestReferenceValue: 0.5
    mipMapFadeDistanceStart: 1
    mipMapFadeDistanceEnd: 3
  bumpmap:
    convertToNormalMap: 0
    externalNormalMap: 0
    heightScale: 0.25
    normalMapFilter: 0
  isReadable: 0
  streamingMipmaps: 0
  streamingMipmapsPriority: 0
  grayScaleToAlpha: 0
  generateCubemap: 6
  cubemapConvolution: 0
  seamlessCubemap: 0
  textureFormat: 1
  maxTextureSize: {max_size}
  textureSettings:
    serializedVersion: 2
    filterMode: {FILTER_MODES[options["filter_mode"]]}
    aniso: 1
    mipBias: 0
    wrapU: {wrap}
    wrapV: {wrap}
    wrapW: {wrap}
  nPOTScale: 0
  lightmap: 0
  compressionQuality: 50
  spriteMode: {1 if sprite else 0}
  spriteExtrude: 1
  spriteMeshType: 1
  alignment: 0
  spritePivot: {{x: 0.5, y: 0.5}}
  spritePixelsToUnits: {options["pixels_per_unit"]}
  spriteBorder: {{x: 0, y: 0, z: 0, w: 0}}
  spriteGenerateFallbackPhysicsShape: 1
  alphaUsage: 1
  alphaIsTransparency: {1 if has_alpha else 0}
  spriteTessellationDetail: -1
  textureType: {TEXTURE_TYPES[options["texture_type"]]}
  textureShape: 1
  singleChannelComponent: 0
  maxTextureSizeSet: 0
  compressionQualitySet: 0
  textureFormatSet: 0
  applyGammaDecoding: 0
  platformSettings:
  - serializedVersion: 3
    buildTarget: DefaultTexturePlatform
    maxTextureSize: {max_size}
    resizeAlgorithm: 0
    textureFormat: -1
    textureCompression: {COMPRESSIONS[options["compression"]]}
    compressionQuality: 50
    crunchedCompression: 0
    allowsAlphaSplitting: 0
    overridden: 0
    androidETC2FallbackOverride: 0
    forceMaximumCompressionQuality_BC6H_BC7: 0
  spriteSheet:
    serializedVersion: 2
    sprites: []
    outline: []
    physicsShape: []
    bones: []
    spriteID: {guid_of(guid + "/sprite") if sprite else ""}
    internalID: 0
    vertices: []
    indices: 
    edges: []
    weights: []
    secondaryTextures: []
  spritePackingTag: 
  pSDRemoveMatte: 0
  pSDShowRemoveMatteOption: 0
  userData: 
  assetBundleName: 
  assetBundleVariant: 
"""


def texture_file(job: ExportJob, image: ExportImage) -> tuple[bytes, Image.Image]:
    """The image's texture file in the chosen format, and the image (for PNG only its header is read)."""
    # A PNG goes in byte for byte: nothing to gain from re-encoding what Unity imports as is.
    if job.options["format"] == "png":
        data = job.storage.read_bytes(image.raw_key)
        return data, Image.open(io.BytesIO(data))
    opened = job.open_image(image)
    # TGA has no colour profile, so pixels go in as sRGB; an image with alpha keeps it (Unity's
    # alphaIsTransparency handles the edges) rather than being flattened.
    pixels = opened.convert("RGBA") if opened.has_transparency_data else to_srgb(opened)
    buffer = io.BytesIO()
    # Uncompressed, bottom-left origin: the TGA every reader takes; the package's gzip compresses it.
    pixels.save(buffer, "TGA", compression=None)
    return buffer.getvalue(), pixels


def folders_of(paths: Iterable[str]) -> list[str]:
    """Every folder holding one of `paths` except `Assets` itself (Unity has no .meta for it), sorted."""
    found = set()
    for path in paths:
        parts = path.split("/")
        found.update("/".join(parts[:end]) for end in range(2, len(parts)))
    return sorted(found)


class UnityPackage:
    """A .unitypackage written entry by entry into `target`, with zero timestamps so a batch always
    gives the same bytes."""

    def __init__(self, target: IO[bytes]):
        self._zipped = gzip.GzipFile(fileobj=target, mode="wb", mtime=0)
        self._tar = tarfile.open(fileobj=self._zipped, mode="w", format=tarfile.USTAR_FORMAT)

    def add(self, path: str, meta: str, data: bytes | None = None) -> None:
        """The asset at project-relative `path` with its .meta; `data` None for a folder (no `asset`)."""
        guid = guid_of(path)
        folder = tarfile.TarInfo(guid)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        self._tar.addfile(folder)
        members = [("asset.meta", meta.encode()), ("pathname", path.encode())]
        for name, content in ([("asset", data)] if data is not None else []) + members:
            info = tarfile.TarInfo(f"{guid}/{name}")
            info.size, info.mode = len(content), 0o644
            self._tar.addfile(info, io.BytesIO(content))

    def close(self) -> None:
        self._tar.close()
        self._zipped.close()

    def __enter__(self) -> UnityPackage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class PackageEntry:
    """What one GUID folder of a read .unitypackage holds; textures are decoded as they are read and
    only other assets (the manifest) keep their bytes."""

    members: set[str]
    pathname: str = ""
    meta: Any = None
    decoded: tuple[str, tuple[int, int]] | str | None = None  # (PIL format, size), or why it did not decode
    asset: bytes | None = None


def read_package(data: bytes, textures: str) -> dict[str, PackageEntry]:
    """The GUID folders of a .unitypackage, assets under `textures` decoded; tarfile/gzip errors propagate."""
    # Two passes: pathnames and metas first, so each asset is read knowing what it is, and no more
    # than one texture is held at a time.
    entries: dict[str, PackageEntry] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = [m for m in tar.getmembers() if not m.isdir()]
        for member in members:
            folder, _, name = member.name.removeprefix("./").partition("/")
            entry = entries.setdefault(folder, PackageEntry(set()))
            entry.members.add(name if member.isfile() else f"{name} (not a regular file)")
            if member.isfile() and name == "pathname":
                lines = tar.extractfile(member).read().decode("utf-8", "replace").splitlines()
                entry.pathname = lines[0] if lines else ""
            elif member.isfile() and name == "asset.meta":
                # BaseLoader keeps every scalar a string, as Unity reads them: a GUID of only digits
                # stays text and "yes" stays "yes".
                try:
                    entry.meta = yaml.load(tar.extractfile(member).read(), Loader=yaml.BaseLoader)
                except yaml.YAMLError as error:
                    entry.meta = f"is not YAML: {error}"
        for member in members:
            folder, _, name = member.name.removeprefix("./").partition("/")
            if member.isfile() and name == "asset":
                entry = entries[folder]
                asset = tar.extractfile(member).read()
                if entry.pathname.startswith(textures):
                    entry.decoded = decode(asset)
                else:
                    entry.asset = asset
    return entries


def decode(data: bytes) -> tuple[str, tuple[int, int]] | str:
    """The PIL format and size of fully decoded image bytes, or why they do not decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.format, image.size
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return f"does not decode: {error}"


class UnityExporter(Exporter):
    name = "unity"
    title = "Unity textures with .meta import settings, a JSON manifest and a .unitypackage"
    OPTIONS = {
        "format": Option("png", choice(*PIL_FORMATS), "texture file format: png (the stored file as is) or tga"),
        "texture_type": Option("sprite", choice(*TEXTURE_TYPES),
                               "TextureImporter type: sprite (2D and UI, a single sprite) or default (3D)"),
        "max_size": Option(2048, max_size_check, "Unity's Max Size: a power of two from 32 to 16384"),
        "filter_mode": Option("bilinear", choice(*FILTER_MODES),
                              "texture filtering: point (crisp pixel art), bilinear or trilinear"),
        "compression": Option("normal", choice(*COMPRESSIONS),
                              "default platform compression: none, normal, high or low quality"),
        "pixels_per_unit": Option(100, number_check(0.01, 10000), "sprite pixels per world unit, 0.01-10000"),
    }

    def export(self, job: ExportJob) -> ExportResult:
        base = f"{ROOT}/{job.batch}"
        extension = job.options["format"]
        manifest = []
        spelled: dict[str, str] = {}  # case-folded folder path -> first spelling, for case-insensitive file systems
        taken: dict[str, tuple[str, str]] = {}  # case-folded texture path -> source file, path
        buffer = io.BytesIO()
        with UnityPackage(buffer) as package:

            def add(path: str, meta: str, data: bytes | None, content_type: str) -> None:
                """`path` and its .meta in the package and in the loose tree."""
                if data is not None:
                    job.write(path, data, content_type)
                job.write(f"{path}.meta", meta.encode(), "text/yaml")
                package.add(path, meta, data)

            for image in job.images:
                folder = f"{base}/Textures"
                for name in category_folders(image.category):
                    folder = spelled.setdefault(f"{folder}/{name}".casefold(), f"{folder}/{name}")
                path = f"{folder}/{unity_name(image.stem) or 'texture'}.{extension}"
                if path.casefold() in taken:
                    other, other_path = taken[path.casefold()]
                    raise ValueError(
                        f"{image.file_name} and {other} would both be {other_path} in Unity "
                        "(names are made safe and compared ignoring case); rename one of them"
                    )
                taken[path.casefold()] = (image.file_name, path)
                data, opened = texture_file(job, image)
                meta = texture_meta(guid_of(path), job.options, opened.has_transparency_data)
                add(path, meta, data, "image/png" if extension == "png" else "image/x-tga")
                manifest.append({
                    "asset_path": path, "guid": guid_of(path), "source_file": image.file_name,
                    "variant_id": image.row.get("variant_id"), "prompt": image.prompt, "tags": image.tags,
                    "category": image.category, "sku": image.sku, "width": opened.width, "height": opened.height,
                })
            document = {
                "batch": job.batch, "root": base, "format": extension, "texture_type": job.options["texture_type"],
                "pixels_per_unit": job.options["pixels_per_unit"], "textures": manifest,
            }
            manifest_path = f"{base}/{MANIFEST}"
            add(manifest_path, plain_meta(guid_of(manifest_path), "TextScriptImporter"),
                json.dumps(document, indent=2, ensure_ascii=False).encode(), "application/json")
            folders = folders_of([manifest_path, *(row["asset_path"] for row in manifest)])
            for folder in folders:
                add(folder, plain_meta(guid_of(folder), "DefaultImporter", folder=True), None, "")
        main = job.write(f"{job.batch}.unitypackage", buffer.getvalue(), "application/gzip")
        return ExportResult(main, {
            "textures": len(manifest), "folders": len(folders), "format": extension,
            "texture_type": job.options["texture_type"], "package_bytes": len(buffer.getvalue()),
        })

    def validate(self, job: ExportJob, result: ExportResult) -> list[str]:
        package_name = f"{job.batch}.unitypackage"
        base = f"{ROOT}/{job.batch}"
        try:
            entries = read_package(job.read(package_name), f"{base}/Textures/")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
            return [f"{package_name} cannot be read as a gzip'd tar: {error}"]
        problems = []
        by_path: dict[str, tuple[str, PackageEntry]] = {}
        folded: dict[str, str] = {}  # pathnames ignoring case, as Windows and macOS compare them
        for guid, entry in sorted(entries.items()):
            problems += self._entry_problems(guid, entry, base)
            if "pathname" not in entry.members:
                continue
            path = entry.pathname
            if path in by_path:
                problems.append(f"{path}: the pathname of package folders {by_path[path][0]} and {guid}")
            elif path.casefold() in folded:
                other = folded[path.casefold()]
                problems.append(f"{path} and {other}: the same pathname ignoring case "
                                f"(package folders {guid} and {by_path[other][0]})")
            by_path.setdefault(path, (guid, entry))
            folded.setdefault(path.casefold(), path)
        folders = {path for path, (_, entry) in by_path.items() if "asset" not in entry.members}
        for path in by_path:
            parent = path.rsplit("/", 1)[0]
            if parent != "Assets" and parent not in folders:
                problems.append(f"{path}'s folder {parent} has no folder entry in the package")
        problems += self._texture_problems(job, by_path, base)
        problems += self._loose_problems(job, by_path)
        return problems

    @staticmethod
    def _entry_problems(guid: str, entry: PackageEntry, base: str) -> list[str]:
        """What is wrong with one GUID folder: its name, members, pathname and meta."""
        where = f"package folder {guid}"
        problems = [] if GUID_RE.fullmatch(guid) else [f"{where} is not named by a 32-digit lowercase hex GUID"]
        missing = {"asset.meta", "pathname"} - entry.members
        extra = entry.members - {"asset", "asset.meta", "pathname", "preview.png"}
        if missing or extra:
            return problems + [f"{where} lacks {sorted(missing)} or holds unexpected {sorted(extra)}"]
        path = entry.pathname
        where = f"{path} (package folder {guid})"
        parts = path.split("/")
        outside = path not in (ROOT, base) and not path.startswith(f"{base}/")
        if outside or "" in parts or ".." in parts or "\\" in path:
            problems.append(f"{where}: the pathname is not a clean path under {base}/")
        if not isinstance(entry.meta, dict):
            why = entry.meta if isinstance(entry.meta, str) else "is not a YAML mapping"
            return problems + [f"{where}: asset.meta {why}"]
        if entry.meta.get("guid") != guid:
            problems.append(f"{where}: asset.meta has guid {quote(entry.meta.get('guid'))}, not its folder's name")
        if (entry.meta.get("folderAsset") == "yes") == ("asset" in entry.members):
            problems.append(f"{where}: a folder must have no asset and a file must have one")
        return problems

    @staticmethod
    def _texture_problems(job: ExportJob, by_path: dict[str, tuple[str, PackageEntry]], base: str) -> list[str]:
        """The textures against the manifest and the batch: listing, decoded format and size, importer."""
        manifest_path = f"{base}/{MANIFEST}"
        if manifest_path not in by_path:
            return [f"{manifest_path} is missing from the package"]
        try:
            manifest = json.loads(by_path[manifest_path][1].asset or b"")["textures"]
        except (TypeError, KeyError, ValueError) as error:
            return [f"{manifest_path} is not a manifest with textures: {error!r}"]
        if not isinstance(manifest, list) or not all(isinstance(row, dict) for row in manifest):
            return [f"{manifest_path}'s textures are not a list of objects"]
        problems = []
        rows = {image.file_name: image for image in job.images}
        listed = {str(row.get("source_file")) for row in manifest}
        if listed != set(rows):
            problems.append(
                f"the manifest misses {sorted(set(rows) - listed)[:5]} or lists others {sorted(listed - set(rows))[:5]}"
            )
        textures = {
            path for path, (_, entry) in by_path.items()
            if "asset" in entry.members and path.startswith(f"{base}/Textures/")
        }
        in_manifest = {str(row.get("asset_path")) for row in manifest}
        if textures != in_manifest:
            problems.append(f"the manifest misses package textures {sorted(textures - in_manifest)[:5]} "
                            f"or lists others {sorted(in_manifest - textures)[:5]}")
        expected_format = PIL_FORMATS[job.options["format"]]
        sprite = job.options["texture_type"] == "sprite"
        # (textureType, spriteMode) as BaseLoader reads them: text.
        expected_importer = (str(TEXTURE_TYPES[job.options["texture_type"]]), "1" if sprite else "0")
        for row in manifest:
            path = row.get("asset_path")
            guid, entry = by_path.get(path, (None, None))
            source = rows.get(row.get("source_file"))
            if entry is None or source is None:
                continue  # reported above
            if row.get("guid") != guid:
                problems.append(f"{path}: the manifest's guid {quote(row.get('guid'))} is not the package's {guid}")
            importer = entry.meta.get("TextureImporter") if isinstance(entry.meta, dict) else None
            found = (importer.get("textureType"), importer.get("spriteMode")) if isinstance(importer, dict) else None
            if found != expected_importer:
                problems.append(f"{path}: asset.meta lacks a TextureImporter with textureType {expected_importer[0]}, "
                                f"spriteMode {expected_importer[1]}")
            size = (source.row.get("width"), source.row.get("height"))
            if entry.decoded != (expected_format, size) or (row.get("width"), row.get("height")) != size:
                problems.append(
                    f"{path}: expected a {expected_format} of {size} (the manifest says "
                    f"{row.get('width')}×{row.get('height')}), the package holds {entry.decoded}"
                )
        return problems

    @staticmethod
    def _loose_problems(job: ExportJob, by_path: dict[str, tuple[str, PackageEntry]]) -> list[str]:
        """Every package entry also written loose under the exporter's prefix, with its .meta."""
        stored = job.storage.sizes(job.prefix)
        missing = [
            key for path, (_, entry) in by_path.items()
            for key in ([job.key(path)] if "asset" in entry.members else []) + [job.key(f"{path}.meta")]
            if key not in stored
        ]
        return [f"the loose tree lacks {len(missing)} file(s) of the package, e.g. {missing[:3]}"] if missing else []
