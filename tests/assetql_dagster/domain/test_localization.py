import subprocess
import sys
from pathlib import Path

import pytest

from assetql_dagster.domain.categories import HIERARCHY, leaves
from assetql_dagster.domain.glossary import MATCHING_RULES, translate_with_glossary
from assetql_dagster.domain.languages import LANGUAGES
from assetql_dagster.domain.localization import (
    KIND_SENSES,
    TRANSLATED,
    VOCABULARY,
    languages_markdown,
    localize_category,
    localize_tag,
    localize_tags,
    tagger_labels,
)
from assetql_dagster.domain.tagging import (
    COLOR_NAMES,
    TAG_GROUPS,
    Tag,
    category_tags,
    color_tags,
    composition_tags,
    mood_tags,
    temperature_tag,
)

ROOT = Path(__file__).resolve().parents[3]
# Kana and kanji: a Japanese translation holds some.
JAPANESE = ("\u3041", "\u30ff", "\u4e00", "\u9fff")


def emitted_tags() -> set[tuple[str, str]]:
    """(kind, label) of every tag the tagger emits, by running its functions over their ranges."""
    tags = [Tag(label, g.kind, 1.0, "clip") for g in TAG_GROUPS for label in g.labels]
    palette = [(f"#{r:02x}{g:02x}{b:02x}", 0.0) for r, g, b in COLOR_NAMES.values()]
    tags += color_tags(palette, max_tags=len(COLOR_NAMES))
    tags += [temperature_tag(k) for k in range(1000, 20001, 250)]
    steps = [i / 20 for i in range(21)]
    tags += [t for brightness in steps for contrast in steps for t in mood_tags(brightness, contrast)]
    tags += [t for w in range(1, 41) for h in range(1, 41) for t in composition_tags(w, h)]
    tags += [t for path, _ in leaves() for t in category_tags(path, "csv")]
    return {(t.kind, t.label) for t in tags}


def test_every_label_the_tagger_emits_and_every_category_has_all_four_translations():
    emitted = emitted_tags()
    names = set(HIERARCHY) | {sub.name for subs in HIERARCHY.values() for sub in subs}
    assert {label for _, label in emitted} >= names
    assert set(TRANSLATED) == set(LANGUAGES) - {"en"} == {"es", "fr", "de", "ja"}
    for kind, label in sorted(emitted):
        entry = KIND_SENSES.get((kind, label)) or VOCABULARY.get(label)
        assert entry is not None, f"no translations of {kind} tag {label!r}"
        assert set(entry) == set(TRANSLATED), f"{label!r} has {sorted(entry)}"
        assert all(entry[lang].strip() == entry[lang] and entry[lang] for lang in TRANSLATED), entry
        assert any(JAPANESE[0] <= c <= JAPANESE[1] or JAPANESE[2] <= c <= JAPANESE[3] for c in entry["ja"]), entry
        assert localize_tag(label, "ja", kind) == entry["ja"]
    # The module's own list of labels (it writes docs/languages.md) is the same set.
    assert {(kind, label) for label, kinds in tagger_labels().items() for kind in kinds} == emitted


def test_the_vocabulary_holds_nothing_the_tagger_never_emits():
    assert set(VOCABULARY) == {label for _, label in emitted_tags()}
    assert {label for _, label in KIND_SENSES} <= set(VOCABULARY)


@pytest.mark.parametrize(
    ("label", "language", "kind", "expected"),
    [
        ("sword", "es", None, "espada"),
        ("treasure chest", "fr", None, "coffre au trésor"),
        ("Treasure  Chest", "de", None, "Schatztruhe"),
        ("warm tones", "ja", None, "暖色系"),
        ("landscape", "de", "composition", "Querformat"),
        ("landscape", "de", "category", "Landschaft"),
        ("landscape", "de", None, "Landschaft"),
        ("portrait", "ja", "composition", "縦長"),
        ("sword", "en", None, "sword"),
        ("glowing runes", "fr", "object", "glowing runes"),  # a Bedrock label without entry
    ],
)
def test_localize_tag(label, language, kind, expected):
    assert localize_tag(label, language, kind) == expected


def test_localize_tags_takes_labels_or_tags_whose_kind_picks_the_sense():
    tags = [Tag("landscape", "composition", 1.0, "pixels"), Tag("landscape", "category", 0.9, "keywords")]
    assert localize_tags(tags, "fr") == ["format paysage", "paysage"]
    assert localize_tags(["sword", "wide", "season:christmas"], "es") == ["espada", "panorámico", "season:christmas"]


@pytest.mark.parametrize(
    ("path", "language", "expected"),
    [
        ("weapon/sword", "es", "arma/espada"),
        ("weapon/sword", "ja", "武器/剣"),
        ("environment/landscape", "fr", "environnement/paysage"),
        ("apparel/outerwear", "de", "Bekleidung/Jacken & Mäntel"),
        ("weapon/laser cannon", "de", "Waffe/laser cannon"),
        ("Props/sword", "es", "Props/espada"),
        ("potion", "ja", "ポーション"),
        ("character/npc", "fr", "personnage/PNJ"),
        ("Weapon/Swords", "es", "arma/Swords"),  # looked up as written: resolve_category first
        ("weapon/sword", "en", "weapon/sword"),
    ],
)
def test_localize_category_segment_by_segment(path, language, expected):
    assert localize_category(path, language) == expected


@pytest.mark.parametrize("call", [lambda: localize_tag("sword", "pt"), lambda: localize_category("weapon", "EN"),
                                  lambda: localize_tags(["sword"], "")])
def test_an_unknown_language_names_the_languages(call):
    with pytest.raises(ValueError, match=r"language must be one of en, es, fr, de, ja, got '(pt|EN|)'"):
        call()


def test_docs_languages_md_is_generated_from_the_tables():
    written = (ROOT / "docs" / "languages.md").read_text()
    assert written == languages_markdown(), (
        "docs/languages.md differs from the tables in assetql_dagster/domain/localization.py and glossary.py; "
        "regenerate it with `python -m assetql_dagster.domain.localization > docs/languages.md`"
    )
    printed = subprocess.run([sys.executable, "-m", "assetql_dagster.domain.localization"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert printed == written
    assert "| landscape | horizontal | format paysage | Querformat | 横長 |" in written
    assert "| weapon/sword | arma/espada | arme/épée | Waffe/Schwert | 武器/剣 |" in written
    assert all(rule in written for rule in MATCHING_RULES)


SPANISH = {"espada": "sword", "de acero": "made of steel", "acero inoxidable": "stainless steel", "la": "",
           "roja": "red"}


@pytest.mark.parametrize(
    ("text", "terms", "english", "untranslated"),
    [
        # Longest phrase first, even when a shorter one starts earlier; case-insensitive.
        ("La Espada de acero inoxidable", SPANISH, "sword de stainless steel", ["de"]),
        ("espada de acero, roja", SPANISH, "sword made of steel, red", []),
        # Whole words only: plurals are their own terms; numbers and punctuation stay, unreported.
        ("3 espadas rojas (x2)!", SPANISH, "3 espadas rojas (x2)!", ["espadas", "rojas", "x"]),
        # Untranslated words once each, in order, whatever their case.
        ("brillante espada Brillante, muy brillante", SPANISH, "brillante sword Brillante, muy brillante",
         ["brillante", "muy"]),
        ("l’épée rouge", {"l'épée": "the sword", "rouge": "red"}, "the sword red", []),
        ("Das   Schwert aus  Stahl", {"das": "", "schwert": "sword", "aus stahl": "made of steel"},
         "sword made of steel", []),
        # Japanese: substrings, English spaced apart, punctuation and numbers kept.
        ("赤い剣、金の柄", {"赤い": "red", "剣": "sword", "金": "gold", "の": "", "柄": "hilt"}, "red sword、gold hilt", []),
        ("赤い剣と盾を3つ", {"剣": "sword"}, "赤い sword と盾を3つ", ["赤い", "と盾を", "つ"]),
        # Longest first in Japanese too: 宝箱 is not 宝 plus 箱.
        ("宝箱と宝石", {"宝": "treasure", "宝箱": "treasure chest", "宝石": "gem", "と": "and"},
         "treasure chest and gem", []),
        # ASCII words of a Japanese text are names and loanwords: not reported; a spaced term still
        # matches next to kana.
        ("LEDライトのRPG", {"LED": "LED"}, "LED ライトのRPG", ["ライトの"]),
        ("", SPANISH, "", []),
    ],
)
def test_translate_with_glossary(text, terms, english, untranslated):
    assert translate_with_glossary(text, terms) == (english, untranslated)


@pytest.mark.parametrize(
    ("text", "terms", "message"),
    [
        ("espada", {" ": "x"}, "glossary term must be non-empty text, got ' '"),
        ("espada", {"espada": 3}, "English of glossary term 'espada' must be text, got 3"),
        (None, {}, "text to translate must be a string, got None"),
        ("espada", [("espada", "sword")], "glossary must be a mapping of term to its English"),
    ],
)
def test_glossary_errors_name_the_value(text, terms, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        translate_with_glossary(text, terms)
