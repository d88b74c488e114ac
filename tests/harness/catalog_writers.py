"""A catalog writer for concurrency tests: importable by name, so spawned processes can run it."""

from __future__ import annotations

from resources.catalog import AssetCatalog, asset_id
from resources.catalog_models import AssetEntry, BatchEntry, TagEntry, VersionEntry

# Each writer's words and tags, so a test can tell whose row or tag set survived.
WRITER_WORDS = ("crimson castle", "azure sword")
WRITER_TAGS = (
    (TagEntry("red", "colour", 0.9), TagEntry("castle", "object", 0.8), TagEntry("bright", "mood", 0.7)),
    (TagEntry("blue", "colour", 0.6), TagEntry("sword", "object", 0.5)),
)
VERSIONS = 3


def image_ids(images: int) -> list[str]:
    return [f"img-{i:03d}" for i in range(images)]


def write_batch(url: str, batch: str, writer: int, rounds: int, images: int) -> None:
    """Catalogue the whole batch `rounds` times, as writer `writer` (0 or 1) would."""
    catalog = AssetCatalog(url=url)
    ids = image_ids(images)
    # Writer 1 goes through the images in reverse: the catalog must order its writes itself.
    ordered = ids if writer == 0 else ids[::-1]
    for r in range(rounds):
        catalog.upsert_batch(BatchEntry(key=batch, name=f"writer-{writer}", status=f"round-{r}",
                                        images_planned=images, settings={"writer": writer}))
        catalog.upsert_assets(batch, [
            AssetEntry(image_id=i, file_name=f"{i}.png", prompt=f"{WRITER_WORDS[writer]} {i}",
                       style_score=writer + r / 10, verdict="pass", width=64, height=64,
                       file_size=writer * 1000 + r, embedding=[float(writer)] * 8)
            for i in ordered
        ])
        catalog.upsert_versions(batch, [
            VersionEntry(image_id=i, version=v, seed=writer * 1000 + v, prompt=WRITER_WORDS[writer])
            for i in ordered for v in range(1, VERSIONS + 1)
        ])
        catalog.replace_tags_many({asset_id(batch, i): WRITER_TAGS[writer] for i in ordered})
        catalog.upsert_exports(batch, {"zip": f"exports/{batch}/w{writer}.zip", "manifest": f"exports/{batch}/m.csv"})


def write_batch_together(url: str, batch: str, writer: int, rounds: int, images: int, barrier) -> None:
    """`write_batch` once every writer reached `barrier` (a multiprocessing Barrier), so they overlap."""
    barrier.wait(120)
    write_batch(url, batch, writer, rounds, images)
