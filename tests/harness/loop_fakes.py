"""A stand-in model and scorer for the style loop: images whose red channel follows the seed."""

from PIL import Image

from assetql_dagster.domain.layout import raw_image_key, thumbnail_key
from assetql_dagster.domain.records import ImageJob, ImageScore, StoredImage

BATCH = "demo-12345678"


def job(i: int) -> ImageJob:
    return ImageJob(image_id=f"img-{i}", file_name=f"img-{i}.png", variant_id=f"v{i}", variation=1, seed=100 + i,
                    prompt=f"prompt {i}", negative_prompt="", category="", sku="", language="", extra={}, row=i + 2)


def record(i: int) -> StoredImage:
    return StoredImage(f"img-{i}", f"img-{i}.png", raw_image_key(BATCH, f"img-{i}"), thumbnail_key(BATCH, f"img-{i}"),
                       16, 16, 100 + i)


def shade(seed: int) -> int:
    return seed % 251


class FakeModel:
    """`generate` and `score` for `run_loop`: an image's score is its red / 255, passing at `threshold`."""

    def __init__(self, threshold: float = 1.01):
        self.threshold = threshold
        self.calls: list[tuple[list[tuple[int, str]], float]] = []  # ([(seed, prompt)], style boost) per call

    @property
    def generated(self) -> list[int]:
        return [seed for jobs, _ in self.calls for seed, _ in jobs]

    @property
    def boosts(self) -> list[float]:
        return [boost for _, boost in self.calls]

    @staticmethod
    def image(seed: int) -> Image.Image:
        return Image.new("RGB", (16, 16), (shade(seed), 0, 0))

    def generate(self, jobs, boost):
        self.calls.append(([(j.seed, j.prompt) for j in jobs], boost))
        return [self.image(j.seed) for j in jobs]

    def score_of(self, rec: StoredImage, img: Image.Image) -> ImageScore:
        value = round(img.getpixel((0, 0))[0] / 255, 4)
        return ImageScore(rec.image_id, rec.file_name, "pass" if value >= self.threshold else "review", value)

    def score(self, records, imgs):
        return [self.score_of(r, i) for r, i in zip(records, imgs)]
