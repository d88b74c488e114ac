"""`social`: every image at the sizes social platforms ask for (Instagram, Facebook, X, LinkedIn,
Pinterest and custom sizes), smart-cropped or padded, as sRGB JPEGs under 1 MB in one folder per
platform, with `presets.json` listing what was written."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from PIL import ImageColor

from assetql_dagster.domain.crops import Box, crop_to, edge_colour, pad_to, smart_crop_box
from assetql_dagster.domain.settings import integer_check, quote
from assetql_dagster.domain.web_images import jpeg_under, srgb_jpeg_problems, to_srgb
from assetql_dagster.pipeline.exporters.base import (
    Exporter,
    ExportImage,
    ExportJob,
    ExportOptionsError,
    ExportResult,
    Option,
    choice,
)

MANIFEST = "presets.json"
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Preset:
    """One frame a platform shows: its name, the platform folder its files go in, and its size."""

    name: str
    platform: str
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def aspect(self) -> float:
        return self.width / self.height


# The platforms' recommended upload sizes (from their help pages): feed square, 4:5 portrait and 9:16
# story on Instagram; the link-share (Open Graph) image on Facebook and LinkedIn; X's 16:9 in-stream
# image; Pinterest's 2:3 standard pin.
PRESETS = (
    Preset("instagram-square", "instagram", 1080, 1080),
    Preset("instagram-portrait", "instagram", 1080, 1350),
    Preset("instagram-story", "instagram", 1080, 1920),
    Preset("facebook-link", "facebook", 1200, 630),
    Preset("x-post", "x", 1200, 675),
    Preset("linkedin-post", "linkedin", 1200, 627),
    Preset("pinterest-pin", "pinterest", 1000, 1500),
)
BY_NAME = {preset.name: preset for preset in PRESETS}
PLATFORMS = tuple(dict.fromkeys(preset.platform for preset in PRESETS))

# Custom presets: sides up to 4096 px (more than any platform displays; larger only costs memory), a ratio
# no more extreme than 4:1 (beyond it a crop keeps a sliver and a pad is mostly background), and a
# few of them, since each one is another file per image.
MIN_SIDE, MAX_SIDE = 64, 4096
MAX_RATIO = 4
MAX_CUSTOM = 20
CUSTOM_KEYS = ("name", "width", "height", "platform")
# Names and platforms become file and folder names.
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")
_SLUG_RULE = "1-40 lowercase letters, digits or '-', not starting or ending with '-'"


def check_presets(value: Any) -> str | None:
    """`presets` is "all" or a list of distinct built-in preset or platform names."""
    if value == "all":
        return None
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        return f'must be "all" or a list of preset or platform names, got {quote(value)}'
    known = [*BY_NAME, *PLATFORMS]
    for name in value:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            return (f"has unknown name {quote(name)}; {hint}"
                    f"presets: {', '.join(BY_NAME)}; platforms: {', '.join(PLATFORMS)}")
    repeated = sorted({name for name in value if value.count(name) > 1})
    if repeated:
        return f"names {', '.join(repeated)} more than once"
    return None


def _custom_entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, Mapping):
        return f"must be a mapping with name, width and height, got {quote(entry)}"
    unknown = [key for key in entry if key not in CUSTOM_KEYS]
    if unknown:
        return f"has unknown key {quote(unknown[0])}; keys: {', '.join(CUSTOM_KEYS)}"
    missing = [key for key in CUSTOM_KEYS[:3] if key not in entry]
    if missing:
        return f"lacks {', '.join(missing)}"
    for key in ("name", "platform"):
        value = entry.get(key, "custom")
        if not isinstance(value, str) or not _SLUG.fullmatch(value):
            return f"{key} must be {_SLUG_RULE} (it becomes a file or folder name), got {quote(value)}"
    if entry["name"] in BY_NAME:
        return f"name {quote(entry['name'])} is a built-in preset; choose it in presets or give another name"
    for key in ("width", "height"):
        problem = integer_check(MIN_SIDE, MAX_SIDE)(entry[key])
        if problem:
            return f"{key} {problem}"
    ratio = max(entry["width"], entry["height"]) / min(entry["width"], entry["height"])
    if ratio > MAX_RATIO:
        return f"is {entry['width']}×{entry['height']}, a ratio of {ratio:.3g}:1; at most {MAX_RATIO}:1 is allowed"
    return None


def check_custom(value: Any) -> str | None:
    """`custom` is a list of at most MAX_CUSTOM distinct {name, width, height, platform?} presets."""
    if not isinstance(value, list):
        return f"must be a list of {{name, width, height}} mappings, got {quote(value)}"
    if len(value) > MAX_CUSTOM:
        return f"has {len(value)} presets; at most {MAX_CUSTOM} are allowed"
    for index, entry in enumerate(value, 1):
        problem = _custom_entry_problem(entry)
        if problem:
            named = isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
            name = f" ({quote(entry['name'])})" if named else ""
            return f"entry {index}{name} {problem}"
    names = [entry["name"] for entry in value]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return f"names {', '.join(repeated)} more than once"
    return None


def check_background(value: Any) -> str | None:
    """`background` is "auto" or an opaque colour Pillow reads ("#1a1a1a", "#fff", "white", "rgb(0,0,0)")."""
    expected = 'must be "auto" or a colour such as "#1a1a1a" or "white"'
    if value == "auto":
        return None
    if not isinstance(value, str):
        return f"{expected}, got {quote(value)}"
    try:
        colour = ImageColor.getrgb(value)
    except ValueError:
        return f"{expected}, got {quote(value)}"
    if len(colour) == 4 and colour[3] != 255:
        return f"must be an opaque colour (a JPEG has no transparency), got {quote(value)}"
    return None


def presets_of(options: Mapping[str, Any]) -> list[Preset]:
    """The presets the options choose: the chosen built-ins in table order, then the custom ones."""
    chosen = options["presets"]
    builtin = [p for p in PRESETS if chosen == "all" or p.name in chosen or p.platform in chosen]
    custom = [
        Preset(entry["name"], entry.get("platform", "custom"), entry["width"], entry["height"])
        for entry in options["custom"]
    ]
    return builtin + custom


def frame_path(image: ExportImage, preset: Preset) -> str:
    """Where `image` at `preset` is written: "instagram/item-000-instagram-square.jpg"."""
    return f"{preset.platform}/{image.stem}-{preset.name}.jpg"


class SocialExporter(Exporter):
    name = "social"
    title = "Each image at the sizes of Instagram, Facebook, X, LinkedIn and Pinterest, smart-cropped or padded"
    OPTIONS = {
        "presets": Option("all", check_presets,
                          f"built-in presets to write: all, or a list of preset names ({', '.join(BY_NAME)}) "
                          f"or platform names ({', '.join(PLATFORMS)})"),
        "custom": Option([], check_custom,
                         f"extra presets, each {{name, width, height}} with an optional platform folder "
                         f"(default custom); sides {MIN_SIDE}-{MAX_SIDE} px, ratio at most {MAX_RATIO}:1"),
        "fit": Option("crop", choice("crop", "pad"),
                      "crop: fill the frame, cutting where smartcrop finds the least detail; "
                      "pad: show the whole image on a background"),
        "background": Option("auto", check_background,
                             "colour around a padded image and under transparency: auto (the median "
                             "colour of the image's edge; white under transparency) or a colour like "
                             "#1a1a1a or white"),
        "max_kb": Option(1000, integer_check(100, 1000),
                         "every file stays under this many kB (1000 bytes each); 1000 keeps them under the "
                         "platforms' 1 MB"),
        "quality": Option(90, integer_check(60, 100),
                          "highest JPEG quality; lowered only as far as max_kb needs"),
    }

    def parse_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        options = super().parse_options(given)
        if not presets_of(options):
            raise ExportOptionsError("presets is [] and custom adds none: there is no size to write; "
                                     'choose presets (or "all") or add custom ones')
        return options

    def export(self, job: ExportJob) -> ExportResult:
        options = job.options
        presets = presets_of(options)
        max_bytes = options["max_kb"] * 1000
        given = None if options["background"] == "auto" else ImageColor.getrgb(options["background"])[:3]
        manifest: dict[str, Any] = {
            "batch": job.batch, "fit": options["fit"], "max_bytes": max_bytes,
            "presets": [asdict(preset) for preset in presets], "images": [],
        }
        sizes, qualities = [], []
        for image in job.images:
            source = to_srgb(job.open_image(image), given or WHITE)
            background = given or edge_colour(source)
            entry = {"file_name": image.file_name, "alt_text": image.alt_text(), "files": {}}
            if options["fit"] == "pad":
                entry["background"] = "#{:02x}{:02x}{:02x}".format(*background)
            boxes: dict[float, Box] = {}
            for preset in presets:
                record: dict[str, Any] = {}
                if options["fit"] == "crop":
                    if preset.aspect not in boxes:  # presets of one ratio share the crop
                        boxes[preset.aspect] = smart_crop_box(source, preset.aspect)
                    box = boxes[preset.aspect]
                    framed = crop_to(source, preset.size, box)
                    record["crop"] = [round(v, 1) for v in box]
                else:
                    framed = pad_to(source, preset.size, background)
                try:
                    data, quality = jpeg_under(framed, max_bytes, options["quality"])
                except ValueError as error:
                    raise ValueError(f"{image.file_name} as {preset.name} ({preset.width}×{preset.height}): "
                                     f"{error}; raise max_kb or choose smaller presets") from error
                path = frame_path(image, preset)
                job.write(path, data, "image/jpeg")
                entry["files"][preset.name] = {"path": path, "bytes": len(data), "quality": quality, **record}
                sizes.append(len(data))
                qualities.append(quality)
            manifest["images"].append(entry)
        main = job.write(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False).encode(), "application/json")
        return ExportResult(main, {
            "images": len(job.images), "presets": [preset.name for preset in presets], "files": len(sizes),
            "largest_bytes": max(sizes, default=0), "lowest_quality": min(qualities, default=None),
        })

    def validate(self, job: ExportJob, result: ExportResult) -> list[str]:
        presets = presets_of(job.options)
        max_bytes = job.options["max_kb"] * 1000
        manifest = json.loads(job.read(MANIFEST))
        problems = []
        expected = {(i.file_name, p.name): (frame_path(i, p), p) for i in job.images for p in presets}
        listed = {(e["file_name"], name): f["path"] for e in manifest["images"] for name, f in e["files"].items()}
        if listed != {pair: path for pair, (path, _) in expected.items()}:
            missing = sorted(set(expected) - set(listed))[:5]
            extra = sorted(set(listed) - set(expected))[:5]
            problems.append(f"{MANIFEST} lists {len(listed)} files, expected {len(expected)} "
                            f"(one per image and preset); missing {missing}, unexpected {extra}")
        for path, preset in sorted(expected.values(), key=lambda pair: pair[0]):
            if job.key(path) not in job.written:
                problems.append(f"{path} was not written")
                continue
            found = srgb_jpeg_problems(job.read(path), preset.size, max_bytes)
            problems.extend(f"{path} {problem}" for problem in found)
        others = set(job.written) - {job.key(path) for path, _ in expected.values()} - {job.key(MANIFEST)}
        if others:
            problems.append(f"files outside {MANIFEST}: {sorted(others)[:5]}")
        return problems
