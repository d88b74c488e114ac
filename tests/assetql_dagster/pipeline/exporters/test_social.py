import io
import json

import numpy as np
import pytest
from PIL import Image, ImageCms

from assetql_dagster.domain.web_images import srgb_icc
from assetql_dagster.pipeline.exporters.base import ExportOptionsError
from assetql_dagster.pipeline.exporters.social import PRESETS, SocialExporter
from harness.export_jobs import image_row, make_job, noise_image

EXPORTER = SocialExporter()
DEFAULT_SIZES = {
    "instagram-square": ("instagram", 1080, 1080), "instagram-portrait": ("instagram", 1080, 1350),
    "instagram-story": ("instagram", 1080, 1920), "facebook-link": ("facebook", 1200, 630),
    "x-post": ("x", 1200, 675), "linkedin-post": ("linkedin", 1200, 627), "pinterest-pin": ("pinterest", 1000, 1500),
}
FLAT = (40, 90, 160)


def run(tmp_path, options=None, images=None, sizes=((512, 512),)):
    rows = [image_row(i, width=w, height=h) for i, (w, h) in enumerate(sizes)]
    job = make_job(tmp_path, EXPORTER, rows, options, images)
    result = EXPORTER.export(job)
    return job, result, json.loads(job.read("presets.json"))


def read_back(job, path):
    data = job.read(path)
    image = Image.open(io.BytesIO(data))
    image.load()
    return data, image


def subject_image(subject=(360, 60, 460, 160), size=(512, 512)) -> Image.Image:
    """Flat colour with a square of noise off-centre: the only detail smartcrop can find."""
    pixels = np.full((size[1], size[0], 3), FLAT, np.uint8)
    left, top, right, bottom = subject
    pixels[top:bottom, left:right] = np.asarray(noise_image(3, (right - left, bottom - top)))
    return Image.fromarray(pixels)


def test_the_default_presets_are_the_platforms_sizes():
    assert {p.name: (p.platform, p.width, p.height) for p in PRESETS} == DEFAULT_SIZES


def test_every_default_preset_reads_back_as_an_srgb_jpeg_of_its_size_under_1_mb(tmp_path):
    job, result, manifest = run(tmp_path)  # 512×512 noise: the hardest image to keep small
    assert result.main == job.key("presets.json")
    assert [p["name"] for p in manifest["presets"]] == list(DEFAULT_SIZES)
    [entry] = manifest["images"]
    assert entry["alt_text"] == job.images[0].alt_text()
    assert set(entry["files"]) == set(DEFAULT_SIZES)
    for name, (platform, width, height) in DEFAULT_SIZES.items():
        path = entry["files"][name]["path"]
        assert path == f"{platform}/item-000-{name}.jpg"
        data, image = read_back(job, path)
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (width, height)
        assert image.info["icc_profile"] == srgb_icc()
        assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"])))
        assert len(data) < 1_000_000 and entry["files"][name]["bytes"] == len(data)
    assert result.metadata["files"] == 7 and result.metadata["largest_bytes"] < 1_000_000
    assert EXPORTER.validate(job, result) == []


def test_quality_is_lowered_only_as_far_as_the_size_limit_needs(tmp_path):
    job, result, manifest = run(tmp_path, {"presets": ["instagram-story", "x-post"], "quality": 100, "max_kb": 400})
    files = manifest["images"][0]["files"]
    for record in files.values():
        assert len(job.read(record["path"])) == record["bytes"] < 400_000
    # Noise at quality 100 is far above 400 kB at both sizes; the taller frame needs the lower quality.
    assert files["instagram-story"]["quality"] < files["x-post"]["quality"] < 100
    assert result.metadata["lowest_quality"] == files["instagram-story"]["quality"]
    assert EXPORTER.validate(job, result) == []


def test_a_size_limit_no_quality_meets_names_the_image_and_preset(tmp_path):
    with pytest.raises(ValueError, match=r"item-000.png as instagram-square \(1080×1080\): .*quality 30; raise max_kb"):
        run(tmp_path, {"presets": ["instagram-square"], "max_kb": 100}, sizes=((1200, 1200),))


@pytest.mark.parametrize("preset", ["instagram-story", "pinterest-pin", "facebook-link"])
def test_smart_crop_keeps_the_subject_in_the_frame(tmp_path, preset):
    subject = (360, 60, 460, 160) if preset != "facebook-link" else (200, 390, 300, 490)
    job, _, manifest = run(tmp_path, {"presets": [preset]}, [subject_image(subject)])
    record = manifest["images"][0]["files"][preset]
    left, top, right, bottom = record["crop"]
    assert left <= subject[0] and top <= subject[1] and subject[2] <= right and subject[3] <= bottom
    # The frame holds the whole subject: as many detailed pixels as the source's square, scaled.
    _, image = read_back(job, record["path"])
    width, height = DEFAULT_SIZES[preset][1:]
    scale = width / (right - left)
    detailed = (np.abs(np.asarray(image, np.int16) - FLAT).max(axis=2) > 40).sum()
    assert detailed == pytest.approx((100 * scale) ** 2 * 0.94, rel=0.06)
    assert (width, height) == image.size


def test_pad_shows_the_whole_image_on_its_edge_colour(tmp_path):
    source = subject_image((200, 100, 300, 160), size=(512, 256))
    job, result, manifest = run(tmp_path, {"presets": ["instagram-square", "pinterest-pin"], "fit": "pad"},
                                [source], sizes=((512, 256),))
    entry = manifest["images"][0]
    assert entry["background"] == "#285aa0"  # FLAT, the source's edge
    _, square = read_back(job, entry["files"]["instagram-square"]["path"])
    pixels = np.asarray(square, np.int16)
    # 512×256 scaled to 1080×540 and centred: the bands above and below are the background.
    assert np.abs(pixels[:260] - FLAT).max() <= 6 and np.abs(pixels[-260:] - FLAT).max() <= 6
    # Nothing is cut: the noise square appears whole, scaled by 1080/512.
    detailed = (np.abs(pixels - FLAT).max(axis=2) > 40).sum()
    assert detailed == pytest.approx(100 * 60 * (1080 / 512) ** 2 * 0.94, rel=0.06)
    assert "crop" not in entry["files"]["instagram-square"]
    assert EXPORTER.validate(job, result) == []


def test_pad_with_a_given_colour_also_fills_transparency(tmp_path):
    source = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    source.paste((255, 255, 0, 255), (64, 64, 192, 192))
    job, _, manifest = run(tmp_path, {"presets": ["facebook-link"], "fit": "pad", "background": "#102030"},
                           [source], sizes=((256, 256),))
    _, image = read_back(job, manifest["images"][0]["files"]["facebook-link"]["path"])
    pixels = np.asarray(image, np.int16)
    # 256×256 scaled to 630×630 at x 285-915; its transparent outer quarter spans x 285-442
    # (read short of the edge, where JPEG blocks blur yellow into it).
    assert np.abs(pixels[:, :280] - (16, 32, 48)).max() <= 6  # the pad
    assert np.abs(pixels[:, 290:425] - (16, 32, 48)).max() <= 6  # the transparent border, same colour
    assert np.abs(pixels[200:430, 450:750] - (255, 255, 0)).max() <= 6  # the opaque middle


def test_presets_choose_by_name_or_platform_and_custom_ones_are_added(tmp_path):
    custom = [{"name": "tiktok-video", "width": 1080, "height": 1920, "platform": "tiktok"},
              {"name": "banner", "width": 1500, "height": 500}]
    job, result, manifest = run(tmp_path, {"presets": ["x", "instagram-square"], "custom": custom}, sizes=((64, 64),))
    assert [(p["name"], p["platform"]) for p in manifest["presets"]] == [
        ("instagram-square", "instagram"), ("x-post", "x"), ("tiktok-video", "tiktok"), ("banner", "custom")]
    files = manifest["images"][0]["files"]
    assert files["tiktok-video"]["path"] == "tiktok/item-000-tiktok-video.jpg"
    assert read_back(job, files["banner"]["path"])[1].size == (1500, 500)  # a 64 px source, upscaled
    assert result.metadata["presets"] == ["instagram-square", "x-post", "tiktok-video", "banner"]
    assert EXPORTER.validate(job, result) == []


def test_only_custom_presets_when_presets_is_empty(tmp_path):
    job, result, manifest = run(tmp_path, {"presets": [], "custom": [{"name": "a", "width": 64, "height": 64}]},
                                sizes=((64, 64),))
    assert list(manifest["images"][0]["files"]) == ["a"]
    assert set(job.written) == {job.key("presets.json"), job.key("custom/item-000-a.jpg")}


@pytest.mark.parametrize(("options", "message"), [
    ({"presets": ["instgram-square"]},
     "presets has unknown name 'instgram-square'; did you mean 'instagram-square'? presets: instagram-square,"),
    ({"presets": "instagram"}, "presets must be \"all\" or a list of preset or platform names, got 'instagram'"),
    ({"presets": ["x", "x"]}, "presets names x more than once"),
    ({"presets": []}, "presets is [] and custom adds none"),
    ({"custom": {"name": "a"}}, "custom must be a list of {name, width, height} mappings, got {'name': 'a'}"),
    ({"custom": ["tiktok"]}, "custom entry 1 must be a mapping with name, width and height, got 'tiktok'"),
    ({"custom": [{"name": "a", "width": 100}]}, "custom entry 1 ('a') lacks height"),
    ({"custom": [{"name": "a", "width": 100, "height": 100, "size": 3}]},
     "custom entry 1 ('a') has unknown key 'size'; keys: name, width, height, platform"),
    ({"custom": [{"name": "A b", "width": 100, "height": 100}]},
     "custom entry 1 ('A b') name must be 1-40 lowercase letters, digits or '-'"),
    ({"custom": [{"name": "a", "width": 100, "height": 100, "platform": "../x"}]},
     "custom entry 1 ('a') platform must be 1-40 lowercase letters"),
    ({"custom": [{"name": "x-post", "width": 100, "height": 100}]},
     "custom entry 1 ('x-post') name 'x-post' is a built-in preset"),
    ({"custom": [{"name": "a", "width": 100, "height": 100}, {"name": "big", "width": 5000, "height": 4000}]},
     "custom entry 2 ('big') width must be an integer from 64 to 4096, got 5000"),
    ({"custom": [{"name": "a", "width": 1080.0, "height": 100}]}, "custom entry 1 ('a') width must be an integer"),
    ({"custom": [{"name": "a", "width": 2000, "height": 400}]},
     "custom entry 1 ('a') is 2000×400, a ratio of 5:1; at most 4:1 is allowed"),
    ({"custom": [{"name": "a", "width": 100, "height": 100}] * 2}, "custom names a more than once"),
    ({"custom": [{"name": f"p{i}", "width": 100, "height": 100} for i in range(21)]},
     "custom has 21 presets; at most 20 are allowed"),
    ({"fit": "stretch"}, "fit must be one of crop, pad, got 'stretch'"),
    ({"background": "blu"}, "background must be \"auto\" or a colour such as \"#1a1a1a\" or \"white\", got 'blu'"),
    ({"background": "#ff000080"}, "background must be an opaque colour (a JPEG has no transparency)"),
    ({"max_kb": 2000}, "max_kb must be an integer from 100 to 1000, got 2000"),
    ({"quality": 20}, "quality must be an integer from 60 to 100, got 20"),
    ({"sizes": []}, "unknown option 'sizes'"),
])
def test_bad_options_are_refused_with_what_was_expected(options, message):
    with pytest.raises(ExportOptionsError) as raised:
        EXPORTER.parse_options(options)
    assert str(raised.value).startswith(message), str(raised.value)


def test_good_colours_and_defaults_parse():
    assert EXPORTER.parse_options({}) == {
        "presets": "all", "custom": [], "fit": "crop", "background": "auto", "max_kb": 1000, "quality": 90}
    for colour in ("white", "#fff", "#1a1a1a", "rgb(1, 2, 3)", "#102030ff"):
        assert EXPORTER.parse_options({"background": colour})["background"] == colour


def test_validate_reads_back_each_file(tmp_path):
    job, result, manifest = run(tmp_path, {"presets": ["instagram"]}, sizes=((64, 64),))
    files = manifest["images"][0]["files"]
    square, portrait, story = (files[f"instagram-{kind}"]["path"] for kind in ("square", "portrait", "story"))
    buffer = io.BytesIO()
    Image.new("RGB", (1080, 1080)).save(buffer, "JPEG")  # no ICC profile
    job.write(square, buffer.getvalue())
    job.write(portrait, job.read(story))  # the wrong size
    del job.written[job.key(story)]
    job.write("instagram/stray.jpg", b"x")
    assert EXPORTER.validate(job, result) == [
        f"{portrait} is 1080×1920, not 1080×1350",
        f"{square} has no embedded ICC profile",
        f"{story} was not written",
        f"files outside presets.json: ['{job.key('instagram/stray.jpg')}']",
    ]


def test_validate_finds_a_manifest_that_misses_files(tmp_path):
    job, result, manifest = run(tmp_path, {"presets": ["x"]}, sizes=((64, 64),))
    manifest["images"][0]["files"].clear()
    job.write("presets.json", json.dumps(manifest).encode())
    [problem] = EXPORTER.validate(job, result)
    assert problem.startswith("presets.json lists 0 files, expected 1 (one per image and preset); "
                              "missing [('item-000.png', 'x-post')]")
