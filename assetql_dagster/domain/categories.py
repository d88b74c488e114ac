"""The category hierarchy (primary/subcategory) of game assets and e-commerce products, and how an
image's category path is found: from the CSV `category` column, else from keywords in its prompt,
else by zero-shot CLIP over the subcategories (above CLIP_CATEGORY_THRESHOLD), else none.

A path is `primary` or `primary/sub` (`weapon/sword`). Names the hierarchy knows are written its
way (lowercase, singular); anything else is kept as typed, so a team's own categories still work.
`python -m assetql_dagster.domain.tagging` prints the hierarchy into docs/tags.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Where an image's category came from, in the order they are tried (an override beats them all).
# "csv+keywords": the CSV named a primary (`weapon`) and a keyword of the prompt its subcategory.
CATEGORY_SOURCES = ("override", "csv", "csv+keywords", "keywords", "clip")
# Confidence of a category found in the prompt: the prompt asked for it, the image may not show it.
KEYWORD_CONFIDENCE = 0.9
# Least zero-shot probability (softmax over every subcategory) for CLIP to categorise an image.
CLIP_CATEGORY_THRESHOLD = 0.3
SEGMENT_MAX = 40
_SEGMENT = re.compile(rf"[^\W_][\w .&'-]{{0,{SEGMENT_MAX - 1}}}")


@dataclass(frozen=True)
class Subcategory:
    """A leaf of the hierarchy: its name, the noun phrase CLIP scores for it, and the prompt words
    (whole words, plural -s/-es too) that mean it."""

    name: str
    clip_text: str
    keywords: tuple[str, ...]


def _sub(name: str, clip_text: str, *keywords: str) -> Subcategory:
    return Subcategory(name, clip_text, keywords)


# primary -> its subcategories. Leaf names and keywords are unique across the whole tree, so a
# bare `sword` in the CSV or "longsword" in a prompt has exactly one place.
HIERARCHY: dict[str, tuple[Subcategory, ...]] = {
    "weapon": (
        _sub("sword", "sword", "sword", "longsword", "katana", "scimitar", "sabre", "saber", "rapier", "blade"),
        _sub("axe", "battle axe", "axe", "battleaxe", "hatchet"),
        _sub("bow", "bow and arrows", "bow", "longbow", "crossbow"),
        _sub("staff", "magic staff", "staff", "wand", "sceptre", "scepter"),
        _sub("dagger", "dagger", "dagger", "knife"),
        _sub("spear", "spear", "spear", "lance", "halberd", "trident"),
        _sub("hammer", "war hammer", "hammer", "warhammer", "mace", "flail"),
        _sub("firearm", "gun", "gun", "pistol", "rifle", "musket", "blaster"),
    ),
    "armor": (
        _sub("helmet", "helmet", "helmet", "helm"),
        _sub("shield", "shield", "shield", "buckler"),
        _sub("chestplate", "chest armor", "chestplate", "breastplate", "cuirass", "chainmail"),
        _sub("gauntlet", "armored gauntlet", "gauntlet"),
        _sub("greaves", "armored leg greaves", "greaves", "sabatons"),
    ),
    "potion": (
        _sub("health", "red health potion", "health potion", "healing potion"),
        _sub("mana", "blue mana potion", "mana potion", "magic potion"),
        _sub("poison", "green poison potion", "poison"),
        _sub("elixir", "glowing elixir flask", "elixir", "tonic"),
    ),
    "treasure": (
        _sub("gem", "gemstone", "gem", "gemstone", "jewel", "ruby", "emerald", "sapphire", "diamond"),
        _sub("coin", "gold coin", "coin"),
        _sub("chest", "treasure chest", "chest"),
        _sub("key", "old key", "key"),
        _sub("crown", "crown", "crown", "tiara"),
    ),
    "character": (
        _sub("hero", "fantasy hero", "hero", "knight", "warrior", "wizard", "mage", "archer", "rogue"),
        _sub("npc", "villager", "npc", "villager", "merchant", "shopkeeper"),
        _sub("portrait", "character portrait", "portrait", "avatar"),
    ),
    "creature": (
        _sub("dragon", "dragon", "dragon", "wyvern", "drake"),
        _sub("beast", "wild beast", "beast", "wolf", "bear"),
        _sub("undead", "undead skeleton", "undead", "skeleton", "zombie", "ghost"),
        _sub("monster", "monster", "monster", "goblin", "orc", "troll", "slime"),
    ),
    "environment": (
        _sub("building", "building", "building", "house", "castle", "tower", "tavern", "temple"),
        _sub("landscape", "landscape", "landscape", "forest", "mountain", "cave", "island"),
        _sub("vegetation", "plant", "tree", "bush", "plant", "flower", "mushroom"),
        _sub("rock", "rock", "rock", "boulder", "cliff"),
    ),
    "ui": (
        _sub("icon", "app icon", "icon"),
        _sub("button", "user interface button", "button"),
        _sub("panel", "user interface panel", "panel", "frame", "banner"),
        _sub("badge", "badge emblem", "badge", "emblem", "medal"),
    ),
    "apparel": (
        _sub("shoe", "shoe", "shoe", "sneaker", "boot", "sandal", "heels", "loafer"),
        _sub("top", "shirt", "shirt", "t-shirt", "blouse", "sweater", "hoodie"),
        _sub("bottom", "pair of trousers", "trousers", "pants", "jeans", "skirt", "shorts"),
        _sub("dress", "dress", "dress", "gown"),
        _sub("outerwear", "jacket", "jacket", "coat", "parka"),
        _sub("hat", "hat", "hat", "cap", "beanie"),
    ),
    "accessory": (
        _sub("bag", "bag", "bag", "handbag", "backpack", "purse", "tote"),
        _sub("watch", "wristwatch", "watch", "wristwatch"),
        _sub("eyewear", "pair of sunglasses", "sunglasses", "glasses", "eyewear"),
        _sub("belt", "leather belt", "belt"),
        _sub("wallet", "wallet", "wallet"),
    ),
    "jewelry": (
        _sub("ring", "ring", "ring"),
        _sub("necklace", "necklace", "necklace", "pendant", "amulet"),
        _sub("earring", "earring", "earring"),
        _sub("bracelet", "bracelet", "bracelet", "bangle"),
    ),
    "home": (
        _sub("furniture", "piece of furniture", "furniture", "chair", "table", "sofa", "couch", "bed", "desk", "shelf"),
        _sub("lighting", "lamp", "lamp", "lantern", "chandelier"),
        _sub("decor", "home decoration", "decor", "vase", "rug", "cushion", "candle"),
        _sub("kitchenware", "kitchenware", "kitchenware", "mug", "cup", "bowl", "saucepan", "kettle"),
    ),
    "electronics": (
        _sub("phone", "smartphone", "phone", "smartphone"),
        _sub("computer", "laptop computer", "laptop", "computer", "tablet"),
        _sub("audio", "headphones", "headphones", "earbuds", "speaker"),
        _sub("camera", "camera", "camera"),
    ),
    "beauty": (
        _sub("skincare", "skincare bottle", "skincare", "cream", "serum", "lotion"),
        _sub("makeup", "makeup", "makeup", "lipstick", "mascara", "eyeshadow"),
        _sub("fragrance", "perfume bottle", "perfume", "fragrance", "cologne"),
    ),
    "food": (
        _sub("fruit", "fruit", "fruit", "apple", "banana", "berries", "grapes"),
        _sub("meal", "meal", "meal", "bread", "meat", "cheese", "pie", "soup"),
        _sub("drink", "drink", "drink", "juice", "coffee", "tea", "wine", "beer"),
    ),
    "vehicle": (
        _sub("car", "car", "car", "truck", "van"),
        _sub("ship", "ship", "ship", "boat", "airship"),
        _sub("aircraft", "airplane", "airplane", "aircraft", "plane"),
    ),
}

_LEAVES: dict[str, tuple[str, Subcategory]] = {
    sub.name: (primary, sub) for primary, subs in HIERARCHY.items() for sub in subs
}
_KEYWORDS: dict[str, tuple[str, str]] = {
    word: (primary, sub.name) for primary, subs in HIERARCHY.items() for sub in subs for word in sub.keywords
}


def _word(word: str) -> re.Pattern[str]:
    """`word` as a whole word (hyphens join words: "shirt" is not in "t-shirt"), plural -s/-es too."""
    return re.compile(rf"(?<![\w-]){re.escape(word)}(?:e?s)?(?![\w-])")


_KEYWORD_PATTERNS = [(_word(word), path) for word, path in _KEYWORDS.items()]
_PRIMARY_PATTERNS = [(_word(primary), primary) for primary in HIERARCHY]


@dataclass(frozen=True)
class CategoryPath:
    """`primary` or `primary/sub` (sub empty for a primary alone)."""

    primary: str
    sub: str = ""

    @property
    def path(self) -> str:
        return f"{self.primary}/{self.sub}" if self.sub else self.primary

    @property
    def known(self) -> bool:
        """True when the hierarchy holds this path."""
        if self.sub:
            return _LEAVES.get(self.sub, ("",))[0] == self.primary
        return self.primary in HIERARCHY


def leaves() -> list[tuple[CategoryPath, str]]:
    """Every subcategory's path with the noun phrase CLIP scores for it, in hierarchy order."""
    return [(CategoryPath(primary, sub.name), sub.clip_text) for primary, subs in HIERARCHY.items() for sub in subs]


def _known_name(text: str, names: Iterable[str]) -> str | None:
    """The hierarchy's spelling of `text` (any case, singular or plural -s/-es), or None."""
    word = " ".join(text.split()).lower()
    names = set(names)
    for candidate in (word, word[:-1] if word.endswith("s") else "", word[:-2] if word.endswith("es") else ""):
        if candidate in names:
            return candidate
    return None


def resolve_category(value: str | None) -> CategoryPath | None:
    """The category path a typed value means, None when it is empty.

    `weapon/sword`, `weapon` and `sword` (a known subcategory, placed under its primary) are
    written the hierarchy's way (`Swords` is `weapon/sword`); an unknown primary, or an unknown
    subcategory of a known primary, is kept as typed.
    """
    text = " ".join((value or "").split())
    if not text:
        return None
    primary, _, sub = (part.strip() for part in text.partition("/"))
    if not primary or (not sub and "/" in text):
        return CategoryPath(text)
    known_primary = _known_name(primary, HIERARCHY)
    if sub:
        if known_primary is None:
            return CategoryPath(primary, sub)
        known_sub = _known_name(sub, (s.name for s in HIERARCHY[known_primary]))
        return CategoryPath(known_primary, known_sub or sub)
    if known_primary is not None:
        return CategoryPath(known_primary)
    leaf = _known_name(primary, _LEAVES)
    return CategoryPath(_LEAVES[leaf][0], leaf) if leaf else CategoryPath(primary)


def category_path_error(value: object) -> str | None:
    """Why `value` is not a category path a person may set, or None when it is one."""
    expected = (
        f"a category path 'primary' or 'primary/sub' (e.g. 'weapon/sword'), each part 1-{SEGMENT_MAX} "
        "letters, digits, spaces, '_', '.', '&', \"'\" or '-', starting with a letter or digit"
    )
    if not isinstance(value, str):
        return f"expected {expected}, got {value!r}"
    parts = value.strip().split("/")
    if len(parts) > 2 or not all(_SEGMENT.fullmatch(part.strip()) for part in parts):
        return f"expected {expected}, got {value!r}"
    return None


def parse_category_path(value: str) -> CategoryPath:
    """A path a person typed (e.g. `assetql categorize --set`), checked, then resolved like a CSV value."""
    problem = category_path_error(value)
    if problem:
        raise ValueError(problem)
    resolved = resolve_category(value)
    assert resolved is not None  # a checked path is never empty
    return resolved


def category_from_prompt(prompt: str) -> CategoryPath | None:
    """The category whose keyword comes first in `prompt` (whole words, plurals too), else the
    first primary named in it, else None."""
    text = prompt.lower()
    found = [(m.start(), path) for pattern, path in _KEYWORD_PATTERNS for m in [pattern.search(text)] if m]
    if found:
        primary, sub = min(found)[1]
        return CategoryPath(primary, sub)
    named = [(m.start(), primary) for pattern, primary in _PRIMARY_PATTERNS for m in [pattern.search(text)] if m]
    return CategoryPath(min(named)[1]) if named else None


def category_from_probabilities(
    ranked: Sequence[tuple[CategoryPath, float]], threshold: float = CLIP_CATEGORY_THRESHOLD
) -> tuple[CategoryPath, float] | None:
    """The most probable subcategory when its probability reaches `threshold`, else None."""
    best = max(ranked, key=lambda item: item[1], default=None)
    return best if best is not None and best[1] >= threshold else None


def categories_markdown() -> str:
    """docs/tags.md's hierarchy table: primary | subcategory | what CLIP reads | prompt keywords."""
    lines = ["| primary | subcategory | CLIP reads | prompt keywords |", "|---|---|---|---|"]
    for primary, subs in HIERARCHY.items():
        for sub in subs:
            words = ", ".join(sub.keywords)
            lines.append(f"| `{primary}` | `{sub.name}` | {sub.clip_text} | {words} |")
    return "\n".join(lines)
