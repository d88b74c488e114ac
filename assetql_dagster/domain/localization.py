"""The localisation vocabulary: every tag label the tagger emits and every category name of the
hierarchy, in Spanish, French, German and Japanese.

Tags and categories are computed in English (CLIP and the keyword rules read English); these tables
give a catalogue, a manifest or a storefront of another language its words. A label without an
entry (a Bedrock label, a team's own category) is kept as is. Two labels mean different things by
kind: `landscape` and `portrait` are an orientation as `composition` tags and a subject as
categories, so a tag's kind picks the sense.

`python -m assetql_dagster.domain.localization` prints docs/languages.md from these tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from assetql_dagster.domain.categories import HIERARCHY
from assetql_dagster.domain.glossary import MATCHING_RULES
from assetql_dagster.domain.languages import DEFAULT_LANGUAGE, LANGUAGES
from assetql_dagster.domain.tagging import (
    COLOR_NAMES,
    CONTRAST_LABELS,
    LIGHTING_LABELS,
    TAG_GROUPS,
    TEMPERATURE_LABELS,
    WIDE_RATIO,
    Tag,
    composition_tags,
)

TRANSLATED = LANGUAGES[1:]  # English is the vocabulary's own language


def _t(es: str, fr: str, de: str, ja: str) -> dict[str, str]:
    return {"es": es, "fr": fr, "de": de, "ja": ja}


# label -> its translations. One entry per English word, whichever kinds use it ("sword" is an
# object tag and a subcategory alike); German nouns capitalised, adjectives not, as in a sentence.
VOCABULARY: dict[str, dict[str, str]] = {
    # Objects (zero-shot CLIP and Bedrock).
    "character": _t("personaje", "personnage", "Figur", "キャラクター"),
    "creature": _t("criatura", "créature", "Kreatur", "クリーチャー"),
    "dragon": _t("dragón", "dragon", "Drache", "ドラゴン"),
    "sword": _t("espada", "épée", "Schwert", "剣"),
    "axe": _t("hacha", "hache", "Axt", "斧"),
    "bow": _t("arco", "arc", "Bogen", "弓"),
    "staff": _t("bastón", "bâton", "Stab", "杖"),
    "shield": _t("escudo", "bouclier", "Schild", "盾"),
    "armor": _t("armadura", "armure", "Rüstung", "鎧"),
    "helmet": _t("casco", "casque", "Helm", "兜"),
    "potion": _t("poción", "potion", "Trank", "ポーション"),
    "scroll": _t("pergamino", "parchemin", "Schriftrolle", "巻物"),
    "book": _t("libro", "livre", "Buch", "本"),
    "treasure chest": _t("cofre del tesoro", "coffre au trésor", "Schatztruhe", "宝箱"),
    "key": _t("llave", "clé", "Schlüssel", "鍵"),
    "gem": _t("gema", "gemme", "Edelstein", "宝石"),
    "coin": _t("moneda", "pièce", "Münze", "コイン"),
    "ring": _t("anillo", "bague", "Ring", "指輪"),
    "crown": _t("corona", "couronne", "Krone", "王冠"),
    "food": _t("alimentos", "nourriture", "Essen", "食べ物"),
    "plant": _t("planta", "plante", "Pflanze", "植物"),
    "tree": _t("árbol", "arbre", "Baum", "木"),
    "flower": _t("flor", "fleur", "Blume", "花"),
    "animal": _t("animal", "animal", "Tier", "動物"),
    "person": _t("persona", "personne", "Person", "人物"),
    "vehicle": _t("vehículo", "véhicule", "Fahrzeug", "乗り物"),
    "building": _t("edificio", "bâtiment", "Gebäude", "建物"),
    "furniture": _t("muebles", "mobilier", "Möbel", "家具"),
    "shoe": _t("zapato", "chaussure", "Schuh", "靴"),
    "bag": _t("bolso", "sac", "Tasche", "バッグ"),
    "bottle": _t("botella", "bouteille", "Flasche", "ボトル"),
    "clothing": _t("ropa", "vêtements", "Kleidung", "衣服"),
    "jewelry": _t("joyas", "bijoux", "Schmuck", "ジュエリー"),
    "watch": _t("reloj", "montre", "Armbanduhr", "腕時計"),
    "logo": _t("logotipo", "logo", "Logo", "ロゴ"),
    "icon": _t("icono", "icône", "Symbol", "アイコン"),
    # Scenes.
    "indoor": _t("interior", "intérieur", "Innenraum", "屋内"),
    "outdoor": _t("exterior", "extérieur", "im Freien", "屋外"),
    "forest": _t("bosque", "forêt", "Wald", "森"),
    "city": _t("ciudad", "ville", "Stadt", "街"),
    "mountains": _t("montañas", "montagnes", "Berge", "山岳"),
    "sea": _t("mar", "mer", "Meer", "海"),
    "desert": _t("desierto", "désert", "Wüste", "砂漠"),
    "outer space": _t("espacio exterior", "espace", "Weltraum", "宇宙"),
    "dungeon": _t("mazmorra", "donjon", "Verlies", "ダンジョン"),
    "studio": _t("estudio", "studio", "Studio", "スタジオ"),
    "plain background": _t("fondo liso", "fond uni", "schlichter Hintergrund", "無地の背景"),
    "abstract": _t("abstracto", "abstrait", "abstrakt", "抽象"),
    # Styles.
    "photorealistic": _t("fotorrealista", "photoréaliste", "fotorealistisch", "フォトリアル"),
    "cartoon": _t("dibujo animado", "dessin animé", "Cartoon", "カートゥーン"),
    "pixel art": _t("arte de píxeles", "pixel art", "Pixel-Art", "ドット絵"),
    "watercolor": _t("acuarela", "aquarelle", "Aquarell", "水彩画"),
    "oil painting": _t("pintura al óleo", "peinture à l'huile", "Ölgemälde", "油絵"),
    "3d render": _t("render 3D", "rendu 3D", "3D-Rendering", "3Dレンダリング"),
    "flat illustration": _t("ilustración plana", "illustration en aplat", "flache Illustration", "フラットイラスト"),
    "anime": _t("anime", "anime", "Anime", "アニメ"),
    "sketch": _t("boceto", "croquis", "Skizze", "スケッチ"),
    "low poly": _t("low poly", "low poly", "Low-Poly", "ローポリ"),
    "vector art": _t("arte vectorial", "art vectoriel", "Vektorgrafik", "ベクターアート"),
    "fantasy illustration": _t("ilustración fantástica", "illustration fantasy", "Fantasy-Illustration",
                               "ファンタジーイラスト"),
    # Colours (CLIP's and the palette's names) and colour temperature.
    "red": _t("rojo", "rouge", "rot", "赤"),
    "orange": _t("naranja", "orange", "orange", "オレンジ"),
    "yellow": _t("amarillo", "jaune", "gelb", "黄色"),
    "green": _t("verde", "vert", "grün", "緑"),
    "blue": _t("azul", "bleu", "blau", "青"),
    "purple": _t("morado", "violet", "lila", "紫"),
    "pink": _t("rosa", "rose", "rosa", "ピンク"),
    "brown": _t("marrón", "marron", "braun", "茶色"),
    "black": _t("negro", "noir", "schwarz", "黒"),
    "white": _t("blanco", "blanc", "weiß", "白"),
    "gray": _t("gris", "gris", "grau", "グレー"),
    "gold": _t("dorado", "doré", "golden", "金色"),
    "silver": _t("plateado", "argenté", "silbern", "銀色"),
    "multicolored": _t("multicolor", "multicolore", "mehrfarbig", "多色"),
    "olive": _t("verde oliva", "vert olive", "olivgrün", "オリーブ色"),
    "teal": _t("verde azulado", "bleu sarcelle", "petrol", "青緑"),
    "cyan": _t("cian", "cyan", "cyan", "シアン"),
    "navy": _t("azul marino", "bleu marine", "marineblau", "紺色"),
    "maroon": _t("granate", "bordeaux", "weinrot", "えんじ色"),
    "beige": _t("beige", "beige", "beige", "ベージュ"),
    "light gray": _t("gris claro", "gris clair", "hellgrau", "ライトグレー"),
    "dark gray": _t("gris oscuro", "gris foncé", "dunkelgrau", "ダークグレー"),
    "warm tones": _t("tonos cálidos", "tons chauds", "warme Töne", "暖色系"),
    "neutral tones": _t("tonos neutros", "tons neutres", "neutrale Töne", "中間色"),
    "cool tones": _t("tonos fríos", "tons froids", "kühle Töne", "寒色系"),
    # Moods, with lighting and contrast from the pixels.
    "epic": _t("épico", "épique", "episch", "壮大"),
    "calm": _t("tranquilo", "calme", "ruhig", "穏やか"),
    "cheerful": _t("alegre", "joyeux", "fröhlich", "陽気"),
    "gloomy": _t("sombrío", "lugubre", "düster", "陰鬱"),
    "mysterious": _t("misterioso", "mystérieux", "geheimnisvoll", "神秘的"),
    "playful": _t("juguetón", "ludique", "verspielt", "遊び心"),
    "elegant": _t("elegante", "élégant", "elegant", "エレガント"),
    "menacing": _t("amenazante", "menaçant", "bedrohlich", "威圧的"),
    "cozy": _t("acogedor", "douillet", "gemütlich", "居心地の良い"),
    "dramatic": _t("dramático", "dramatique", "dramatisch", "ドラマチック"),
    "whimsical": _t("fantasioso", "fantaisiste", "skurril", "空想的"),
    "serene": _t("sereno", "serein", "friedlich", "静謐"),
    "dark": _t("oscuro", "sombre", "dunkel", "暗い"),
    "balanced lighting": _t("iluminación equilibrada", "éclairage équilibré", "ausgewogene Beleuchtung",
                            "バランスの取れた照明"),
    "bright": _t("luminoso", "lumineux", "hell", "明るい"),
    "muted": _t("apagado", "terne", "gedämpft", "くすんだ"),
    "soft": _t("suave", "doux", "weich", "柔らかい"),
    "high-contrast": _t("alto contraste", "contrasté", "kontrastreich", "ハイコントラスト"),
    # Composition, with orientation from the dimensions (see COMPOSITION_SENSES).
    "close-up": _t("primer plano", "gros plan", "Nahaufnahme", "クローズアップ"),
    "full body": _t("cuerpo entero", "en pied", "Ganzkörper", "全身"),
    "centered": _t("centrado", "centré", "zentriert", "中央配置"),
    "isometric": _t("isométrico", "isométrique", "isometrisch", "アイソメトリック"),
    "top-down": _t("vista cenital", "vue de dessus", "Draufsicht", "俯瞰"),
    "side view": _t("vista lateral", "vue de côté", "Seitenansicht", "側面図"),
    "wide shot": _t("plano general", "plan large", "Totale", "引きの構図"),
    "pattern": _t("patrón", "motif", "Muster", "パターン"),
    "square": _t("cuadrado", "carré", "quadratisch", "正方形"),
    "wide": _t("panorámico", "panoramique", "Breitformat", "ワイド"),
    # Categories: primaries, then subcategories not already above.
    "weapon": _t("arma", "arme", "Waffe", "武器"),
    "treasure": _t("tesoro", "trésor", "Schatz", "財宝"),
    "environment": _t("entorno", "environnement", "Umgebung", "背景"),
    "ui": _t("interfaz", "interface", "Benutzeroberfläche", "UIパーツ"),
    "apparel": _t("indumentaria", "habillement", "Bekleidung", "アパレル"),
    "accessory": _t("accesorios", "accessoires", "Accessoires", "ファッション小物"),
    "home": _t("hogar", "maison", "Wohnen", "ホーム&キッチン"),
    "electronics": _t("electrónica", "électronique", "Elektronik", "電子機器"),
    "beauty": _t("belleza", "beauté", "Kosmetik", "美容"),
    "dagger": _t("daga", "dague", "Dolch", "短剣"),
    "spear": _t("lanza", "lance", "Speer", "槍"),
    "hammer": _t("martillo", "marteau", "Hammer", "ハンマー"),
    "firearm": _t("arma de fuego", "arme à feu", "Schusswaffe", "銃"),
    "chestplate": _t("peto", "plastron", "Brustpanzer", "胸当て"),
    "gauntlet": _t("guantelete", "gantelet", "Panzerhandschuh", "籠手"),
    "greaves": _t("grebas", "jambières", "Beinschienen", "すね当て"),
    "health": _t("curación", "soin", "Heilung", "回復"),
    "mana": _t("maná", "mana", "Mana", "マナ"),
    "poison": _t("veneno", "poison", "Gift", "毒"),
    "elixir": _t("elixir", "élixir", "Elixier", "エリクサー"),
    "chest": _t("cofre", "coffre", "Truhe", "宝箱"),
    "hero": _t("héroe", "héros", "Held", "英雄"),
    "npc": _t("PNJ", "PNJ", "NPC", "ノンプレイヤーキャラクター"),
    "portrait": _t("retrato", "portrait", "Porträt", "肖像画"),
    "beast": _t("bestia", "bête", "Bestie", "獣"),
    "undead": _t("no muerto", "mort-vivant", "Untoter", "アンデッド"),
    "monster": _t("monstruo", "monstre", "Monster", "モンスター"),
    "landscape": _t("paisaje", "paysage", "Landschaft", "風景"),
    "vegetation": _t("vegetación", "végétation", "Vegetation", "草木"),
    "rock": _t("roca", "rocher", "Fels", "岩"),
    "button": _t("botón", "bouton", "Schaltfläche", "ボタン"),
    "panel": _t("panel", "panneau", "Panel", "パネル"),
    "badge": _t("insignia", "insigne", "Abzeichen", "バッジ"),
    "top": _t("prenda superior", "haut", "Oberteil", "トップス"),
    "bottom": _t("prenda inferior", "bas", "Unterteil", "ボトムス"),
    "dress": _t("vestido", "robe", "Kleid", "ドレス"),
    "outerwear": _t("ropa de abrigo", "vêtements d'extérieur", "Jacken & Mäntel", "アウター"),
    "hat": _t("sombrero", "chapeau", "Hut", "帽子"),
    "eyewear": _t("gafas", "lunettes", "Brillen", "アイウェア"),
    "belt": _t("cinturón", "ceinture", "Gürtel", "ベルト"),
    "wallet": _t("cartera", "portefeuille", "Geldbörse", "財布"),
    "necklace": _t("collar", "collier", "Halskette", "ネックレス"),
    "earring": _t("pendiente", "boucle d'oreille", "Ohrring", "イヤリング"),
    "bracelet": _t("pulsera", "bracelet", "Armband", "ブレスレット"),
    "lighting": _t("iluminación", "éclairage", "Beleuchtung", "照明"),
    "decor": _t("decoración", "décoration", "Dekoration", "インテリア雑貨"),
    "kitchenware": _t("menaje de cocina", "ustensiles de cuisine", "Küchenzubehör", "キッチン用品"),
    "phone": _t("teléfono", "téléphone", "Telefon", "スマートフォン"),
    "computer": _t("ordenador", "ordinateur", "Computer", "パソコン"),
    "audio": _t("audio", "audio", "Audio", "オーディオ"),
    "camera": _t("cámara", "appareil photo", "Kamera", "カメラ"),
    "skincare": _t("cuidado de la piel", "soins de la peau", "Hautpflege", "スキンケア"),
    "makeup": _t("maquillaje", "maquillage", "Make-up", "メイクアップ"),
    "fragrance": _t("fragancia", "parfum", "Parfum", "フレグランス"),
    "fruit": _t("fruta", "fruit", "Obst", "果物"),
    "meal": _t("comida", "repas", "Mahlzeit", "料理"),
    "drink": _t("bebida", "boisson", "Getränk", "飲み物"),
    "car": _t("coche", "voiture", "Auto", "車"),
    "ship": _t("barco", "navire", "Schiff", "船"),
    "aircraft": _t("avión", "avion", "Flugzeug", "飛行機"),
}
# (kind, label) -> translations where that kind means something else than VOCABULARY's entry:
# as a composition tag (from the dimensions) `landscape` and `portrait` are an orientation.
KIND_SENSES: dict[tuple[str, str], dict[str, str]] = {
    ("composition", "landscape"): _t("horizontal", "format paysage", "Querformat", "横長"),
    ("composition", "portrait"): _t("vertical", "format portrait", "Hochformat", "縦長"),
}


def check_language(language: str) -> str:
    """`language` when it is one of LANGUAGES, else a ValueError naming them."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    return language


def _key(text: str) -> str:
    """How a label is looked up: case and spacing as typed do not matter ("Treasure  Chest")."""
    return " ".join(text.split()).lower()


def localize_tag(label: str, language: str, kind: str | None = None) -> str:
    """`label` in `language` (as is for English and for labels without an entry); `kind`, when
    given, picks the sense of a label that differs by kind (composition `landscape`: an orientation)."""
    check_language(language)
    if language == DEFAULT_LANGUAGE:
        return label
    key = _key(label)
    entry = KIND_SENSES.get((kind or "", key)) or VOCABULARY.get(key)
    return entry[language] if entry else label


def localize_tags(tags: Iterable[str | Tag], language: str) -> list[str]:
    """Labels, or Tags (whose kind picks the sense), in `language`, in the order given."""
    return [
        localize_tag(tag.label, language, tag.kind) if isinstance(tag, Tag) else localize_tag(tag, language)
        for tag in tags
    ]


def localize_category(path: str, language: str) -> str:
    """A category path in `language`, segment by segment ("weapon/sword" -> "arma/espada" in es); a
    segment without entry (a team's own category) is kept as typed."""
    check_language(language)
    if language == DEFAULT_LANGUAGE:
        return path
    return "/".join(
        VOCABULARY[_key(segment)][language] if _key(segment) in VOCABULARY else segment
        for segment in path.split("/")
    )


def tagger_labels() -> dict[str, list[str]]:
    """Every label the tagger can emit, with its kinds: the zero-shot vocabularies (Bedrock answers
    are free text), the pixel labels, and the category names, in that order."""
    found: dict[str, list[str]] = {}

    def add(label: str, kind: str) -> None:
        kinds = found.setdefault(label, [])
        if kind not in kinds:
            kinds.append(kind)

    for group in TAG_GROUPS:
        for label in group.labels:
            add(label, group.kind)
    for label in (*COLOR_NAMES, *TEMPERATURE_LABELS):
        add(label, "color")
    for label in (*LIGHTING_LABELS, *CONTRAST_LABELS):
        add(label, "mood")
    # Orientation labels live in composition_tags: ask it for a square, tall and wide image.
    for width, height in ((1, 1), (1, 2), (math.ceil(WIDE_RATIO), 1)):
        for tag in composition_tags(width, height):
            add(tag.label, tag.kind)
    for primary, subs in HIERARCHY.items():
        add(primary, "category")
        for sub in subs:
            add(sub.name, "category")
    return found


def _row(name: str, translations: Mapping[str, str]) -> str:
    """A docs table row: the English name, then its translations in TRANSLATED order."""
    return f"| {name} | {' | '.join(translations[language] for language in TRANSLATED)} |"


def languages_markdown() -> str:
    """docs/languages.md, generated from the vocabulary, the tagger's labels and the hierarchy."""
    header = f"| {{}} | {' | '.join(TRANSLATED)} |"
    rule = "|---" * (len(TRANSLATED) + 1) + "|"
    by_kind: dict[str, list[str]] = {}
    for label, kinds in tagger_labels().items():
        for kind in kinds:
            if kind != "category":
                by_kind.setdefault(kind, []).append(label)
    tags = []
    for kind, labels in by_kind.items():
        tags += ["", f"### `{kind}`", "", header.format("label"), rule]
        tags += [_row(label, KIND_SENSES.get((kind, label)) or VOCABULARY[label]) for label in labels]
    categories = [header.format("category"), rule]
    for primary, subs in HIERARCHY.items():
        categories.append(_row(f"**{primary}**", {lang: f"**{text}**" for lang, text in VOCABULARY[primary].items()}))
        for path in (f"{primary}/{sub.name}" for sub in subs):
            categories.append(_row(path, {lang: localize_category(path, lang) for lang in TRANSLATED}))
    return "\n".join([
        "# Languages",
        "",
        "<!-- Generated by `python -m assetql_dagster.domain.localization > docs/languages.md`; edit the",
        "tables in assetql_dagster/domain/localization.py and glossary.py, not this file. -->",
        "",
        f"Batches are written in {', '.join(LANGUAGES)} (the CSV's `language` column; empty means {DEFAULT_LANGUAGE}).",
        "Tags and categories are computed in English; `localize_tag`, `localize_tags` and",
        "`localize_category` give them in a row's language. A label without an entry (a Bedrock",
        "label, a team's own category) is kept as is. As `composition` tags, `landscape` and `portrait`",
        "are an orientation; as categories, a subject.",
        "",
        "## Glossary translation",
        "",
        "The `glossary` translator turns a row's text into the model's English with the batch's",
        "`glossary` terms:",
        "",
        *(f"- {rule}" for rule in MATCHING_RULES),
        "",
        "## Tags",
        *tags,
        "",
        "## Categories",
        "",
        "A path is translated segment by segment (`weapon/sword` is `arma/espada` in Spanish).",
        "",
        *categories,
        "",
    ])


if __name__ == "__main__":
    print(languages_markdown(), end="")
