import pytest

from assetql_dagster.domain.categories import (
    CLIP_CATEGORY_THRESHOLD,
    HIERARCHY,
    CategoryPath,
    categories_markdown,
    category_from_probabilities,
    category_from_prompt,
    category_path_error,
    leaves,
    parse_category_path,
    resolve_category,
)


def test_leaf_names_and_keywords_have_one_place_in_the_tree():
    names = [sub.name for subs in HIERARCHY.values() for sub in subs]
    words = [word for subs in HIERARCHY.values() for sub in subs for word in sub.keywords]
    assert len(names) == len(set(names)) and not set(names) & set(HIERARCHY)
    assert len(words) == len(set(words))
    assert all(sub.keywords and sub.clip_text for subs in HIERARCHY.values() for sub in subs)
    # Game assets and e-commerce products alike.
    assert {"weapon", "potion", "armor", "apparel", "accessory", "electronics"} <= set(HIERARCHY)
    assert CategoryPath("weapon", "bow") in [path for path, _ in leaves()]


@pytest.mark.parametrize(
    ("typed", "path"),
    [
        ("weapon/sword", "weapon/sword"),
        ("weapon", "weapon"),
        ("sword", "weapon/sword"),
        ("  Swords ", "weapon/sword"),
        ("Weapons / Swords", "weapon/sword"),
        ("potion/health", "potion/health"),
        ("shoe", "apparel/shoe"),
        ("weapon/trident", "weapon/trident"),
        ("Magic Items", "Magic Items"),
        ("gadgets/phone case", "gadgets/phone case"),
    ],
)
def test_csv_values_map_to_paths_known_names_written_the_hierarchys_way(typed, path):
    assert resolve_category(typed).path == path


def test_empty_csv_values_are_no_category():
    assert resolve_category("") is None and resolve_category("   ") is None and resolve_category(None) is None


def test_known_says_whether_the_hierarchy_holds_a_path():
    assert CategoryPath("weapon", "sword").known and CategoryPath("weapon").known
    assert not CategoryPath("weapon", "trident").known and not CategoryPath("gizmo").known
    assert not CategoryPath("potion", "sword").known


@pytest.mark.parametrize(
    ("prompt", "path"),
    [
        ("a longsword made of steel in a forge, centered game item icon", "weapon/sword"),
        ("a healing potion on a table", "potion/health"),
        ("two old keys and a treasure chest", "treasure/key"),
        ("white sneakers, product photo", "apparel/shoe"),
        ("a cotton t-shirt", "apparel/top"),
        ("a rack for every weapon", "weapon"),
    ],
)
def test_the_first_keyword_of_the_prompt_names_the_category(prompt, path):
    assert category_from_prompt(prompt).path == path


def test_keywords_match_whole_words_only():
    assert category_from_prompt("a swordfish in the sea") is None
    assert category_from_prompt("a chestplate of bronze").path == "armor/chestplate"
    assert category_from_prompt("abstract shapes") is None


def test_clip_categorises_only_above_the_threshold():
    sword, bow = CategoryPath("weapon", "sword"), CategoryPath("weapon", "bow")
    assert category_from_probabilities([(sword, 0.6), (bow, 0.4)]) == (sword, 0.6)
    assert category_from_probabilities([(sword, CLIP_CATEGORY_THRESHOLD - 0.01), (bow, 0.1)]) is None
    assert category_from_probabilities([]) is None


@pytest.mark.parametrize("good", ["weapon/sword", "weapon", "Magic Items", "home/decor & art"])
def test_paths_a_person_sets_are_checked_then_resolved(good):
    assert category_path_error(good) is None
    assert parse_category_path(good) == resolve_category(good)
    assert parse_category_path(" sword ") == CategoryPath("weapon", "sword")


@pytest.mark.parametrize("bad", ["", "weapon/", "/sword", "weapon//sword", "a/b/c", "x" * 41, "-weapon", "weapon/sw\x00rd", 3])
def test_malformed_paths_are_rejected_naming_the_value_and_the_syntax(bad):
    assert f"got {bad!r}" in category_path_error(bad)
    with pytest.raises(ValueError, match="'primary' or 'primary/sub'"):
        parse_category_path(bad)


def test_markdown_lists_every_subcategory():
    table = categories_markdown().splitlines()
    assert len(table) == 2 + len(leaves())
    assert "| `weapon` | `sword` | sword | sword, longsword, katana, scimitar, sabre, saber, rapier, blade |" in table
