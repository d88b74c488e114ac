import dataclasses

from harness.record_samples import JOB, SAMPLES

from assetql_dagster.domain.categories import CategoryPath
from assetql_dagster.domain.records import TagSet
from assetql_dagster.pipeline.categorizing import (
    ManualCategory,
    categorized,
    found_category,
    load_overrides,
    save_override,
    with_overrides,
)
from resources.storage import LocalStorage

TAGS = next(s for s in SAMPLES if isinstance(s, TagSet))


def test_overrides_are_kept_in_storage_set_replaced_and_cleared(tmp_path):
    storage = LocalStorage(root=str(tmp_path))
    assert load_overrides(storage, "b-1") == {}
    save_override(storage, "b-1", "img1", ManualCategory("weapon/bow", "2026-01-01T00:00:00Z"))
    save_override(storage, "b-1", "img2", ManualCategory("potion", "2026-01-01T00:00:01Z"))
    save_override(storage, "b-1", "img1", ManualCategory("weapon/axe", "2026-01-01T00:00:02Z"))
    assert storage.exists("batches/b-1/category_overrides.json")
    assert load_overrides(storage, "b-1") == {
        "img1": ManualCategory("weapon/axe", "2026-01-01T00:00:02Z"),
        "img2": ManualCategory("potion", "2026-01-01T00:00:01Z"),
    }
    save_override(storage, "b-1", "img2", None)
    assert list(load_overrides(storage, "b-1")) == ["img1"]


def test_found_category_tries_the_csv_then_the_prompt():
    # The CSV's bare primary takes its subcategory from the prompt ("a sword, ...") ...
    assert found_category(JOB) == (CategoryPath("weapon", "sword"), "csv+keywords", 0.9)
    # ... but never another primary's, and a CSV path stands as typed.
    assert found_category(dataclasses.replace(JOB, prompt="a potion of healing")) == (CategoryPath("weapon"), "csv", 1.0)
    assert found_category(dataclasses.replace(JOB, category="weapon/axe")) == (CategoryPath("weapon", "axe"), "csv", 1.0)
    keyworded = dataclasses.replace(JOB, category=" ", prompt="a longbow of yew")
    assert found_category(keyworded) == (CategoryPath("weapon", "bow"), "keywords", 0.9)
    assert found_category(dataclasses.replace(JOB, category="", prompt="a cloud")) is None


def test_overrides_replace_only_the_category_and_its_tags():
    image = TAGS.images[0]
    [overridden] = with_overrides(TAGS, {image.image_id: ManualCategory("armor/shield", "2026-01-01T00:00:00Z")}).images
    assert (overridden.category, overridden.category_source) == ("armor/shield", "override")
    assert [(t.label, t.source) for t in overridden.tags if t.kind == "category"] == [
        ("armor", "override"), ("shield", "override")]
    assert [t for t in overridden.tags if t.kind != "category"] == [t for t in image.tags if t.kind != "category"]
    assert with_overrides(TAGS, {"another": ManualCategory("ui", "2026-01-01T00:00:00Z")}) == TAGS
    cleared = categorized(image, None, "")
    assert (cleared.category, cleared.category_source) == ("", "") and not [t for t in cleared.tags if t.kind == "category"]
