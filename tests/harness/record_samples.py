"""One filled-in instance of every stage record type, for round-trip tests."""

from PIL import Image

from assetql_dagster.domain.csv_schema import BatchRow
from assetql_dagster.domain.records import (
    BatchInput,
    Curation,
    DistributionPackage,
    ExportSummary,
    FailedRow,
    ImageHistory,
    ImageJob,
    ImagePlan,
    ImageScore,
    ImageSet,
    ImageTags,
    ImageVersion,
    PaletteColor,
    ScoreSet,
    Shard,
    ShardResult,
    StoredImage,
    StyleProfile,
    TagSet,
    VersionSet,
)
from assetql_dagster.domain.scoring import parameter_weights
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.domain.style_parameters import profile_parameters
from assetql_dagster.domain.tagging import Tag

JOB = ImageJob("demo_sword_1", "demo_sword_1.png", "sword-01", 1, 123, "a sword, ünïcode", "blurry", "weapon",
               "SKU-1", "de", {"material": "steel"}, 2)
IMAGE = StoredImage("demo_sword_1", "demo_sword_1.png", "raw/b/demo_sword_1.png", "thumbnails/b/t.jpg", 64, 96, 123)
FAILED = FailedRow("demo_shield_1", "shield-01", 1, 3, "TimeoutError: slow", "transient", 4)

SAMPLES = [
    BatchInput(
        batch="demo-1234abcd", name="demo", origin="/inbox/demo", registered_at="2026-11-25T10:00:00Z",
        content_hash="ab" * 32, settings=BatchSettings(width=64, exports=("zip", "links"), micro_batch=4),
        references=("style-references/demo-1234abcd/a.png",),
        rows=(BatchRow(2, "sword-01", "a sword", "weapon", "SKU-1", "de", {"material": "steel"}),),
    ),
    ImagePlan((JOB,)),
    StyleProfile(True, ("style-references/b/a.png",), "", "tiny", (0.5, -0.25), (PaletteColor("#aabbcc", 0.5),),
                 0.4, 0.2, parameters=profile_parameters([Image.new("RGB", (16, 8), (200, 60, 40))]),
                 reference_similarities=(0.81, 0.77, 0.9)),
    StyleProfile(False, reason="no style reference"),
    Shard(0, 0, 1, (JOB,)),
    ShardResult(0, 2, (IMAGE,), (FAILED,), 1, 0, 1, "cpu", 4, 2, 0.5, 0.75, 1),
    ImageSet(2, (IMAGE,), (FAILED,)),
    ScoreSet(0.85, parameter_weights({"palette": 80}),
             (ImageScore("demo_sword_1", "demo_sword_1.png", "pass", 0.9, 0.8, 0.95, 0.7, 0.6, 0.5, 0.85),
                                                 ImageScore("x", "x.png", "unscored", note="no style reference"))),
    VersionSet((ImageHistory("demo_sword_1", 2, (
        ImageVersion(1, 123, "a sword", 0.0, "versions/b/demo_sword_1/v1.png", "versions/b/demo_sword_1/v1_thumb.jpg",
                     ImageScore("demo_sword_1", "demo_sword_1.png", "review", 0.5), "initial", "2026-11-25T10:00:00Z"),
        ImageVersion(2, 456, "a sword", 0.25, "versions/b/demo_sword_1/v2.png", "versions/b/demo_sword_1/v2_thumb.jpg",
                     ImageScore("demo_sword_1", "demo_sword_1.png", "pass", 0.9, version=2, attempts=2),
                     "auto-regenerate", "2026-11-25T10:01:00Z"),
    ), pinned=True),)),
    Curation(ImageSet(2, (IMAGE,), (FAILED,)),
             ScoreSet(0.7, parameter_weights({}), (ImageScore("demo_sword_1", "demo_sword_1.png", "pass", 0.9,
                                                             version=2, attempts=2),)),
             pass_rate_before=0.0, regenerated=1, budget=3, seconds_generating=0.25),
    TagSet((ImageTags("demo_sword_1", "demo_sword_1.png",
                      (Tag("red", "color", 0.5, "pixels"), Tag("weapon", "category", 1.0, "csv"),
                       Tag("sword", "category", 1.0, "csv")),
                      category="weapon/sword", category_source="csv"),)),
    ExportSummary(1, 1, ("zip",), {"zip": "file:///data/exports/b/b.zip"}, zip_bytes=10, links=1, links_local=True,
                  link_expiry_s=3600),
    DistributionPackage("unity", 1, "exports/b/unity/b.unitypackage",
                        {"exports/b/unity/b.unitypackage": 2048, "exports/b/unity/Assets/x.png": 900},
                        approved_only=True, categories=("weapon",), metadata={"textures": 1, "format": "png"},
                        problems=("a problem",)),
]
