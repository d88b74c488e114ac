"""`print`: every image upscaled to print size at 300 DPI (FR-IMGGEN-011) and post-processed
(FR-IMGGEN-012: colour correction, sharpening, resolution check, PNG for transparency and JPEG
otherwise, under 5 MB, sRGB with its profile embedded), with `print.json` listing each file.

Upscaling is Lanczos by default, or a diffusers StableDiffusionUpscalePipeline (4×) from a local
folder guided by the image's prompt, finished by Lanczos to the exact print size; see
`assetql_dagster.domain.print_images` for the sizes.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from assetql_dagster.domain.print_images import (
    MAX_PRINT_BYTES,
    PRINT_DPI,
    ModelUpscale,
    PRINT_KINDS,
    colour_correct,
    encode_print,
    inches,
    minimum_size,
    print_file_problems,
    print_kind,
    print_size,
    resolution_problem,
    sharpen,
    upscale,
)
from assetql_dagster.domain.settings import integer_check, number_check, quote
from assetql_dagster.domain.web_images import has_transparency, to_srgb_keeping_alpha
from assetql_dagster.pipeline.exporters.base import (
    Exporter,
    ExportImage,
    ExportJob,
    ExportResult,
    Option,
    boolean,
    choice,
)
from resources.upscaler import UPSCALE_FACTOR, UPSCALE_PIPELINE, locate_upscaler

MANIFEST = "print.json"
LANCZOS = "lanczos"


def upscaler_check(value: Any) -> str | None:
    """The `upscaler` check: "lanczos", or a local folder holding an upscale pipeline (looked at now)."""
    expected = f"must be {LANCZOS!r} or the path of a local folder holding a {UPSCALE_PIPELINE}"
    if not isinstance(value, str) or not value.strip():
        return f"{expected}, got {quote(value)}"
    if value == LANCZOS:
        return None
    try:
        locate_upscaler(value)
    except FileNotFoundError as error:
        return f"{expected}, but {error}"
    return None


class PrintExporter(Exporter):
    name = "print"
    uses_device = True  # the `upscaler` option may name a diffusers pipeline
    title = ("Print files: upscaled to 2048×2048 (portraits) or 3000×2000 (scenes) at 300 DPI, colour-corrected "
             "and sharpened")
    OPTIONS = {
        "kind": Option("auto", choice(*PRINT_KINDS),
                       "print minimum: portrait (2048×2048 px) or scene (3000×2000 px, turned for a tall "
                       "image); auto takes a scene when wider than tall, a portrait otherwise"),
        "upscaler": Option(LANCZOS, upscaler_check,
                           f"{LANCZOS!r}, or the path of a local folder holding a diffusers {UPSCALE_PIPELINE} "
                           "(saved with save_pretrained, e.g. stable-diffusion-x4-upscaler; never downloaded) "
                           "that upscales 4× guided by the prompt before Lanczos to the exact size"),
        "upscaler_steps": Option(20, integer_check(1, 200), "denoising steps of the diffusers upscaler, 1-200"),
        "noise_level": Option(20, integer_check(0, 350),
                              "noise the diffusers upscaler adds to its input, 0-350: more invents more detail"),
        "guidance_scale": Option(
            9.0, number_check(0, 20), "how closely the diffusers upscaler follows the prompt, 0-20 (1 or less: none)"
        ),
        "brightness": Option(1.0, number_check(0, 3), "brightness factor (PIL ImageEnhance), 1 unchanged"),
        "contrast": Option(1.0, number_check(0, 3), "contrast factor, 1 unchanged"),
        "saturation": Option(1.0, number_check(0, 3), "saturation factor, 1 unchanged, 0 greyscale"),
        "auto_contrast": Option(False, boolean,
                                "stretch the levels to the full range first (0.5% clipped at each end)"),
        "sharpen_radius": Option(2.0, number_check(0, 10), "unsharp-mask radius in pixels of the print, 0-10"),
        "sharpen_percent": Option(100, integer_check(0, 500),
                                  "unsharp-mask strength in percent, 0-500 (0: no sharpening)"),
        "sharpen_threshold": Option(3, integer_check(0, 255),
                                    "unsharp mask: least brightness difference that is sharpened, 0-255"),
        "quality": Option(95, integer_check(40, 100),
                          "JPEG quality, 40-100; lowered by bisection where a file would reach 5 MB"),
    }

    def export(self, job: ExportJob) -> ExportResult:
        options = job.options
        model = self._model(options)
        upscaler = LANCZOS if model is None else f"{UPSCALE_PIPELINE} {options['upscaler']}"
        entries = []
        for image in job.images:
            source = job.open_image(image)
            kind = print_kind(source.size, options["kind"])
            minimum = minimum_size(source.size, kind)
            size = print_size(source.size, minimum)
            prepared = colour_correct(
                to_srgb_keeping_alpha(source), options["brightness"], options["contrast"], options["saturation"],
                options["auto_contrast"],
            )
            printed = upscale(prepared, size, model, UPSCALE_FACTOR, image.prompt, _seed(image))
            printed = sharpen(printed, options["sharpen_radius"], options["sharpen_percent"],
                              options["sharpen_threshold"])
            problem = resolution_problem(printed.size, minimum)
            if problem:
                raise ValueError(f"print of {image.file_name} {problem}")
            encoded = encode_print(printed, MAX_PRINT_BYTES, options["quality"], PRINT_DPI)
            file = image.stem + encoded.extension
            job.write(file, encoded.data, encoded.content_type)
            entries.append({
                "file": file, "source": image.file_name, "kind": kind,
                "source_px": list(source.size), "px": list(size), "inches": list(inches(size)),
                "format": encoded.format, "quality": encoded.quality, "colours": encoded.colours,
                "upscaler": "none (already at print size)" if size == source.size else upscaler,
                "bytes": len(encoded.data),
            })
        manifest = {"batch": job.batch, "dpi": PRINT_DPI, "max_bytes": MAX_PRINT_BYTES, "images": entries}
        main = job.write(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False).encode(), "application/json")
        formats = [entry["format"] for entry in entries]
        return ExportResult(main, {
            "images": len(entries), "upscaler": upscaler, "jpeg": formats.count("JPEG"), "png": formats.count("PNG"),
            "bytes": sum(entry["bytes"] for entry in entries),
        })

    @staticmethod
    def _model(options: dict[str, Any]) -> ModelUpscale | None:
        """The diffusers upscaler's call with the options' settings bound, or None for Lanczos."""
        if options["upscaler"] == LANCZOS:
            return None
        # Imported here: only this path needs the loader, and loading imports torch.
        from resources.upscaler import load_upscaler

        loaded = load_upscaler(options["upscaler"])
        return functools.partial(loaded.upscale, steps=options["upscaler_steps"], noise_level=options["noise_level"],
                                 guidance_scale=options["guidance_scale"])

    def validate(self, job: ExportJob, result: ExportResult) -> list[str]:
        problems = []
        manifest = json.loads(job.read(MANIFEST))
        entries = {entry["source"]: entry for entry in manifest["images"]}
        for image in job.images:
            entry = entries.pop(image.file_name, None)
            if entry is None:
                problems.append(f"{MANIFEST} lists no print of {image.file_name}")
                continue
            source = job.open_image(image)
            minimum = minimum_size(source.size, print_kind(source.size, job.options["kind"]))
            expected = print_size(source.size, minimum)
            transparent = has_transparency(source)
            key = job.key(entry["file"])
            if key not in job.written:
                problems.append(f"{entry['file']} is in {MANIFEST} but was not written")
                continue
            data = job.read(entry["file"])
            if entry["bytes"] != len(data):
                problems.append(f"{entry['file']} is {len(data):,} bytes, {MANIFEST} says {entry['bytes']:,}")
            problems += [f"{entry['file']} {problem}"
                         for problem in print_file_problems(data, expected, minimum, transparent)]
        problems += [f"{MANIFEST} lists {source}, which is not in the batch" for source in sorted(entries)]
        return problems


def _seed(image: ExportImage) -> int:
    """The image's generation seed, so the diffusers upscaler gives the same print on every run."""
    seed = image.row.get("seed")
    return seed if isinstance(seed, int) and 0 <= seed < 2**64 else 0
