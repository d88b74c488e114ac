"""Per-batch settings (`batch.yaml`): one declaration per setting, YAML loading, the README table.

Each `BatchSettings` field declares its setting once: type, default, check, documentation and its
README row. The allowed keys, validation and README.md's settings table are all derived from
`dataclasses.fields(BatchSettings)`; `python -m assetql_dagster.domain.settings` prints the table.

Settings are validated once, where they enter (`parse_settings`, `read_settings`). Constructing
`BatchSettings` and restoring a stored snapshot (`BatchSettings.from_snapshot`) trust their values.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import reprlib
import stat
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from assetql_dagster.domain.errors import BatchValidationError, Problem
from assetql_dagster.domain.export_writers import EXPORT_FORMATS
from assetql_dagster.domain.languages import DEFAULT_KEY, DEFAULT_LANGUAGE, LANGUAGES, per_language
from assetql_dagster.domain.links import parse_expiry
from assetql_dagster.domain.naming import BUILTIN_PLACEHOLDERS, DEFAULT_PATTERN
from assetql_dagster.domain.priority import priority_error
from assetql_dagster.domain.scoring import LOCK_MAX, PARAMETERS, parameter_weights
from assetql_dagster.domain.seasons import region_error, season_error
from assetql_dagster.domain.style_refs import style_error

_Check = Callable[[object], str | None]

# Batch names and variant ids end up in file names and storage keys.
_IDENTIFIER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# Placeholders the default naming pattern already shows; README.md lists the others.
_DEFAULT_NAMES = frozenset(re.findall(r"\{(\w+)\}", DEFAULT_PATTERN))

_MAX_QUOTE = 200
# A YAML alias bomb (a list of aliases of lists of aliases ...) is a small file whose plain repr()
# runs to gigabytes, so user values are quoted through reprlib, which stops at these sizes while
# it builds the text instead of cutting it afterwards.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 3, 10, 10
_REPR.maxstring = _REPR.maxother = _MAX_QUOTE
_REPR.fillvalue = "…"


def _clip(text: str) -> str:
    """`text`, cut to at most _MAX_QUOTE characters with a trailing '…' when longer."""
    return text if len(text) <= _MAX_QUOTE else text[: _MAX_QUOTE - 1] + "…"


def quote(value: object) -> str:
    """repr(value) for an error message, bounded to about _MAX_QUOTE characters."""
    return _clip(_REPR.repr(value))


def identifier_error(value: str, what: str) -> str | None:
    """Why `value` cannot name a batch or variant in file names, or None when it can."""
    if _IDENTIFIER_RE.fullmatch(value):
        return None
    return (
        f"{what} {quote(value)} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
        "or digit, because it becomes part of file names"
    )


def _text(value: object, optional: bool = False, allow_empty: bool = True) -> str | None:
    if optional and value is None:
        return None
    if isinstance(value, str) and (allow_empty or value.strip()):
        return None
    expected = "non-empty text" if not allow_empty else "text"
    if isinstance(value, dict):
        # An unquoted YAML value starting with '{' (as templates do) is read as a mapping.
        return f"must be {expected}, got a mapping; put the value in quotes in YAML"
    return f"must be {expected}{' or omitted' if optional else ''}, got {quote(value)}"


def integer_check(low: int, high: int, multiple: int = 1, optional: bool = False) -> _Check:
    def check(value: object) -> str | None:
        if optional and value is None:
            return None
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        if ok and value % multiple == 0:
            return None
        step = f" that is a multiple of {multiple}" if multiple > 1 else ""
        omit = " (or omitted for the model's native size)" if optional else ""
        return f"must be an integer from {low} to {high}{step}{omit}, got {quote(value)}"

    return check


def number_check(low: float, high: float) -> _Check:
    def check(value: object) -> str | None:
        # The range comparison also rejects NaN and infinities, and unlike math.isfinite it does
        # not overflow on integers too large for a float.
        if isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high:
            return None
        return f"must be a number from {low:g} to {high:g}, got {quote(value)}"

    return check


def _name(value: object) -> str | None:
    if value is None:
        return None
    return _text(value) or identifier_error(value, "name")


def _link_expiry(value: object) -> str | None:
    # parse_expiry quotes what it rejects in full, so only numbers and texts short enough to be an
    # expiry reach it; anything else is answered here with a bounded quote.
    if isinstance(value, int) or (isinstance(value, str) and len(value) <= _MAX_QUOTE):
        try:
            parse_expiry(value)
        except ValueError as error:
            # "8d" is reported in seconds by parse_expiry; echo what the user wrote too.
            return f"{error} (got {value!r})" if isinstance(value, str) else str(error)
        return None
    return (
        "must be a whole number of seconds or a number with unit s, m, h or d (e.g. '36h'), "
        f"from 1h to 365d, or 'permanent', got {quote(value)}"
    )


# Exporter names come from installed plugins (the `assetql.exporters` entry points), which the
# pipeline checks against what is installed; here only their form is checked.
_EXPORTER_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_EXPORT_OPTIONS = 64


def exports_error(value: object) -> str | None:
    """Why `value` is not a valid `exports` list, or None."""
    expected = f"a non-empty list of export names ({', '.join(EXPORT_FORMATS)} or an installed exporter)"
    if not isinstance(value, (list, tuple)) or not value:
        return f"must be {expected}, got {quote(value)}"
    malformed = [v for v in value if not isinstance(v, str) or not _EXPORTER_NAME_RE.fullmatch(v)]
    if malformed:
        return (f"must be {expected}; {quote(malformed)} is not an export name (1-32 lowercase letters, digits "
                "or '_'; an exporter's options go under export_options)")
    if len(set(value)) != len(value):
        return f"lists an export more than once: {quote(list(value))}"
    return None


def _export_options(value: object) -> str | None:
    """The form of `export_options`: {exporter: {option: value}}; each exporter checks its own options."""
    if not isinstance(value, Mapping):
        return f"must be a mapping of exporter name to its options, e.g. {{unity: {{format: tga}}}}, got {quote(value)}"
    for name, options in value.items():
        if not isinstance(name, str) or not _EXPORTER_NAME_RE.fullmatch(name):
            return f"has {quote(name)} where an exporter name is expected"
        if not isinstance(options, Mapping):
            return f"{name}: must be a mapping of option to value, got {quote(options)}"
        if len(options) > MAX_EXPORT_OPTIONS:
            return f"{name}: has {len(options)} options, more than {MAX_EXPORT_OPTIONS}"
        try:
            json.dumps(options, allow_nan=False)
        except (TypeError, ValueError):
            return f"{name}: options must be text, numbers, booleans, lists and mappings, got {quote(options)}"
    return None


def _per_language(optional: bool) -> _Check:
    """Text, or a mapping of language (or `default`) to text, e.g. {en: "...", ja: "...", default: "..."}."""
    def check(value: object) -> str | None:
        if isinstance(value, Mapping):
            if not value:
                return "must name at least one language"
            keys = [k for k in value if k not in (*LANGUAGES, DEFAULT_KEY)]
            if keys:
                return (f"has {quote(keys)} where a language is expected; languages: {', '.join(LANGUAGES)} "
                        f"and {DEFAULT_KEY} (for the others). A text starting with '{{' is read by YAML as a "
                        "mapping: put the value in quotes in YAML")
            for key, text in value.items():
                problem = _text(text, allow_empty=not optional)
                if problem:
                    return f"{key}: {problem}"
            return None
        return _text(value, optional=optional, allow_empty=not optional)

    return check


def _glossary(value: object) -> str | None:
    """{language: {term: English}}: the offline translations of the `glossary` translator."""
    if not isinstance(value, Mapping):
        return f"must be a mapping of language to {{term: English}}, e.g. {{es: {{espada: sword}}}}, got {quote(value)}"
    for language, terms in value.items():
        if language not in LANGUAGES or language == DEFAULT_LANGUAGE:
            return f"has {quote(language)} where a language to translate from is expected: {', '.join(LANGUAGES[1:])}"
        if not isinstance(terms, Mapping):
            return f"{language}: must be a mapping of term to its English, got {quote(terms)}"
        bad = next(((t, e) for t, e in terms.items() if not isinstance(t, str) or not t.strip()
                    or not isinstance(e, str)), None)
        if bad is not None:
            return f"{language}: terms and their English must be text, got {quote(bad[0])}: {quote(bad[1])}"
    return None


_HEX = re.compile(r"#[0-9a-fA-F]{6}")
MAX_PALETTE = 8


def _palette(value: object) -> str | None:
    if value is None or value == "season":
        return None
    if (isinstance(value, (list, tuple)) and 1 <= len(value) <= MAX_PALETTE
            and all(isinstance(c, str) and _HEX.fullmatch(c) for c in value)):
        return None
    return (f"must be a list of 1 to {MAX_PALETTE} colours as '#rrggbb' (quoted in YAML), or 'season', "
            f"got {quote(value)}")


def _micro_batch(value: object) -> str | None:
    if value == "auto" or integer_check(1, 64)(value) is None:
        return None
    return f"must be 'auto' or an integer from 1 to 64, got {quote(value)}"


def _locks(value: object) -> str | None:
    if not isinstance(value, Mapping):
        return f"must be a mapping of style parameter to weight 0-{LOCK_MAX}, e.g. {{palette: 80}}, got {quote(value)}"
    try:
        parameter_weights(value)
    except ValueError as error:
        return str(error)
    return None


LORA_SCALE_MAX = 2.0


def _loras(value: object) -> str | None:
    expected = f"must be a list of {{path: ..., scale: 0 to {LORA_SCALE_MAX:g}}} entries"
    if not isinstance(value, (list, tuple)):
        return f"{expected}, got {quote(value)}"
    for index, entry in enumerate(value, start=1):
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            entry = {"path": entry[0], "scale": entry[1]}  # the stored (path, scale) form
        if not isinstance(entry, Mapping) or set(entry) - {"path", "scale"} or "path" not in entry:
            return f"{expected}; entry {index} is {quote(entry)}"
        problem = _text(entry["path"], allow_empty=False) or number_check(0, LORA_SCALE_MAX)(entry.get("scale", 1.0))
        if problem:
            return f"entry {index}: {'path' if _text(entry['path'], allow_empty=False) else 'scale'} {problem}"
    return None


def _shown(default: object) -> str:
    """How README.md shows a default value: text and lists in code style, "" for empty text."""
    if default == "":
        return '""'
    if isinstance(default, str):
        return f"`{default}`"
    if isinstance(default, tuple):
        return f"`[{', '.join(default)}]`"
    return str(default)


def _setting(default: Any, check: _Check, doc: str, readme: str, readme_default: str | None = None) -> Any:
    """A BatchSettings field declaring one setting.

    `doc` explains the setting in full; `readme` is its short meaning in README.md's table and
    `readme_default` the default shown there, needed where the default is None (omitted).
    """
    shown = readme_default if readme_default is not None else _shown(default)
    metadata = {"check": check, "doc": doc, "readme": readme, "readme_default": shown}
    return dataclasses.field(default=default, metadata=metadata)


_UNIT = number_check(0, 1)
TAGGERS = ("local", "bedrock")
TRANSLATORS = ("none", "glossary", "aws-translate")


def _json_pairs(value: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> tuple[tuple[str, str], ...]:
    """A mapping (or its pairs) as sorted (name, value as JSON) pairs; values already JSON stay."""
    pairs = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted(
        (str(name), v if isinstance(v, str) else json.dumps(v, sort_keys=True, ensure_ascii=False)) for name, v in pairs
    ))


def _json_value(pairs: Sequence[tuple[str, str]], name: str) -> dict[str, Any]:
    """The decoded value of `name` among `_json_pairs` ({} when absent)."""
    return next((json.loads(text) for key, text in pairs if key == name), {})


def _mapping(value: str | tuple | None) -> str | dict[str, str] | None:
    return value if value is None or isinstance(value, str) else dict(value)
EXPORT_ONLY = ("all", "approved")
# Claude 3 Sonnet, the vision model the design document names for auto-tagging.
BEDROCK_MODEL = "anthropic.claude-3-sonnet-20240229-v1:0"


@dataclass(frozen=True)
class BatchSettings:
    """Settings of one batch: every field is a `batch.yaml` key; its metadata documents it."""

    name: str | None = _setting(
        None,
        _name,
        "Batch name used in file and storage names (letters, digits, '.', '_', '-'; at most 64). "
        "When omitted: the batch folder name, or the CSV file name without extension.",
        "batch name (the partition key is `name-<8 hex of content hash>`)",
        readme_default="folder name",
    )
    description: str = _setting("", _text, "Free text describing the batch.", "free text")
    template: str | tuple[tuple[str, str], ...] | None = _setting(
        None,
        _per_language(optional=True),
        "Prompt template filled from CSV columns, e.g. '{subject}, {style|flat art}"
        '{{if category == "character"}}, full body shot{{endif}}\'. '
        "Or one per language: {en: '...', ja: '...', default: '...'}; a row takes the template of its "
        "`language` column, else `default`, else `en`. When omitted, the CSV 'prompt' column is the prompt.",
        "prompt template, or one per language (`{en: …, es: …, default: …}`); without it the `prompt` column is used",
        readme_default="none",
    )
    style: str | list[str] | None = _setting(
        None,
        lambda v: style_error(v, identifier_error),
        "Style profile and/or preset: 'brand-x' (the profile's latest version when the batch is "
        "registered), 'brand-x@2', 'preset:watercolor', or a list of at most one profile and one "
        "preset. Registration pins the profile version and uses its references, locks and threshold.",
        "style profile `name` / `name@N` and/or `preset:<name>` (a list of one of each), "
        "see [Style profiles](#style-profiles)",
        readme_default="none",
    )
    negative_prompt: str | tuple[tuple[str, str], ...] = _setting(
        "", _per_language(optional=False),
        "What the images must not show: text, or one per language like `template`.",
        "negative prompt for every image, or one per language",
    )
    modifiers: str = _setting(
        "",
        _text,
        "Seasonal or campaign modifiers appended to every prompt after ', ' "
        "(text, or a YAML list of texts joined with ', ').",
        "seasonal/campaign modifiers appended to every prompt",
    )
    model: str = _setting(
        "tiny",
        lambda v: _text(v, allow_empty=False),
        "Image model: a hub id, a local model folder, 'tiny' for the built-in test model, or a remote one: "
        "'sagemaker:ENDPOINT' or 'bedrock:MODEL_ID' (a Stability image model).",
        "`tiny`, a hub id already in the local Hugging Face cache, a local directory, or `sagemaker:ENDPOINT` / "
        "`bedrock:MODEL_ID`, see [Remote models](#remote-models-sagemaker-and-bedrock)",
    )
    width: int | None = _setting(
        None,
        integer_check(64, 2048, multiple=8, optional=True),
        "Image width in pixels, a multiple of 8 from 64 to 2048; when omitted, the model's native size.",
        "image width in pixels, a multiple of 8, 64–2048",
        readme_default="model's native size",
    )
    height: int | None = _setting(
        None,
        integer_check(64, 2048, multiple=8, optional=True),
        "Image height in pixels, a multiple of 8 from 64 to 2048; when omitted, the model's native size.",
        "image height in pixels, a multiple of 8, 64–2048",
        readme_default="model's native size",
    )
    steps: int = _setting(20, integer_check(1, 150), "Denoising steps, 1 to 150.", "denoising steps, 1–150")
    guidance_scale: float = _setting(
        7.5, number_check(0, 30), "Classifier-free guidance scale, 0 to 30.", "classifier-free guidance, 0–30"
    )
    variations: int = _setting(
        1,
        integer_check(1, 8),
        "Images generated per CSV row, 1 to 8.",
        "images per row, 1–8; seed per row × variation derived from `seed`",
    )
    seed: int = _setting(
        0,
        integer_check(0, 2**32 - 1),
        "Base random seed, 0 to 4294967295; the same seed reproduces the same images.",
        "batch seed; same batch + seed gives the same images",
    )
    max_rows: int = _setting(
        500, integer_check(1, 10_000), "Largest number of CSV data rows accepted, 1 to 10000.", "row limit"
    )
    # Scores and shares, all from 0 to 1.
    style_threshold: float = _setting(
        0.85, _UNIT, "Style score, 0 to 1, at or above which an image passes (else it needs review).",
        "style score at or above which an image passes (else: review)",
    )
    ip_adapter: str | None = _setting(
        None,
        lambda v: _text(v, optional=True, allow_empty=False),
        "IP-Adapter conditioning every image on the batch's style references: a folder holding "
        "ip_adapter.safetensors (or .bin) and image_encoder/, or a cached hub id such as "
        "h94/IP-Adapter/models/ip-adapter_sd15.safetensors. Applied with InstantStyle's style-only "
        "block scales, so the references give style, not content.",
        "IP-Adapter on the style references (folder with `ip_adapter.safetensors` + `image_encoder/`, "
        "or a cached hub id)",
        readme_default="none",
    )
    style_strength: float = _setting(
        0.6,
        _UNIT,
        "IP-Adapter scale, 0 to 1: how strongly the references' style conditions each image (the "
        "regeneration loop steps it up for images that drift).",
        "IP-Adapter scale, 0–1 (stepped up by the regeneration loop)",
    )
    lora: tuple[tuple[str, float], ...] = _setting(
        (),
        _loras,
        f"Brand LoRAs applied to every image: a list of {{path, scale}} (scale 0 to {LORA_SCALE_MAX:g}, "
        "default 1); path is a .safetensors file or a folder holding one.",
        f"brand LoRAs, a list of `{{path, scale}}` (scale 0–{LORA_SCALE_MAX:g}); `.safetensors` file or folder",
        readme_default="none",
    )
    locks: tuple[tuple[str, int], ...] = _setting(
        (),
        _locks,
        f"Style parameters held toward the references, each with a weight 0 to {LOCK_MAX}, e.g. "
        f"{{palette: 80, lighting: 50}}; parameters: {', '.join(PARAMETERS)}. A lock raises the "
        "parameter's share of the style score and, for the palette, pulls every image's colours toward "
        "the references' palette with that strength.",
        f"`{{parameter: weight}}` (weights 0–{LOCK_MAX}) among {', '.join(f'`{p}`' for p in PARAMETERS)}; "
        "see [Style locks and the regeneration loop](#style-locks-and-the-regeneration-loop)",
        readme_default="none",
    )
    max_attempts: int = _setting(
        3,
        integer_check(1, 10),
        "Generations per image at most, 1 to 10, counting the first: an image below the style "
        "threshold is regenerated (new seed, then stronger style) until it passes or this is reached.",
        "generations per image at most, counting the first (1 turns regeneration off)",
    )
    regeneration_budget: float = _setting(
        0.3,
        _UNIT,
        "Extra images the regeneration loop may generate for the whole batch, as a fraction 0 to 1 "
        "of the planned images.",
        "extra generations for the batch, as a fraction of its planned images",
    )
    max_manual_regenerations: int = _setting(
        5,
        integer_check(0, 100),
        "Manual regenerations (`assetql regenerate`) allowed per image, 0 to 100; 0 turns them off.",
        "manual regenerations per image at most (`assetql regenerate`; 0 turns them off), see "
        "[Versions, rollback and more images](#versions-rollback-and-more-images)",
    )
    min_pass_rate: float = _setting(
        0.85, _UNIT, "Share of images, 0 to 1, that must pass the style threshold for the batch check to pass.",
        "`style_pass_rate` check minimum",
    )
    min_completion_rate: float = _setting(
        0.95, _UNIT, "Share of planned images, 0 to 1, that must be generated for the batch check to pass.",
        "`completion_rate` check minimum",
    )
    naming_pattern: str = _setting(
        DEFAULT_PATTERN,
        # Placeholders depend on the CSV columns, so read_batch_csv checks the pattern itself.
        lambda v: _text(v, allow_empty=False),
        "File name pattern using "
        + ", ".join(f"{{{name}}}" for name in sorted(BUILTIN_PLACEHOLDERS))
        + " and any extra CSV column (checked against the CSV header).",
        "also "
        + ", ".join(f"`{{{name}}}`" for name in sorted(BUILTIN_PLACEHOLDERS) if name not in _DEFAULT_NAMES)
        + ", any CSV column",
    )
    shard_size: int = _setting(
        25,
        integer_check(1, 500),
        "Images per generation shard (one executor step each), 1 to 500.",
        "images per generation shard (one step each)",
    )
    micro_batch: int | str = _setting(
        "auto",
        _micro_batch,
        "Images per model call, 1 to 64, or 'auto' to fit the accelerator's memory.",
        "images per pipeline call",
    )
    exports: tuple[str, ...] = _setting(
        EXPORT_FORMATS,
        exports_error,
        "What the export writes, a list among "
        + ", ".join(EXPORT_FORMATS)
        + " (zip: the package with images, manifests and gallery; manifest: standalone manifest.csv/json; "
        "gallery: standalone gallery.html; links: links.csv/json) and the installed exporters (unity, shopify, "
        "woocommerce, magento, wordpress, contentful, strapi, social, print, downloads, or a plugin's), each "
        "of which is its own `{name}_export` asset.",
        "what the export writes: `zip` (images + manifest CSV/JSON + gallery `index.html`), `manifest` "
        "(standalone `manifest.csv`/`.json`), `gallery` (standalone `gallery.html`), `links` "
        "(`links.csv`/`.json`), and any exporter, see [Distribution](#distribution)",
    )
    export_options: tuple[tuple[str, str], ...] = _setting(
        (),
        _export_options,
        "Options per exporter, e.g. {unity: {format: tga, texture_type: sprite}, social: {fit: pad}}; "
        "each exporter documents and checks its own (docs/exports.md).",
        "`{exporter: {option: value}}`, see [docs/exports.md](docs/exports.md)",
        readme_default="none",
    )
    export_only: str = _setting(
        "all",
        lambda v: None if v in EXPORT_ONLY else f"must be one of {', '.join(EXPORT_ONLY)}, got {quote(v)}",
        "Which images the export packages: 'all' stored images, or only those a reviewer 'approved' in the "
        "asset library or with `assetql review` (until then the package holds no image; the library's "
        "export-approved button writes it again from the stored records).",
        "`all` stored images, or only those `approved` in review (`assetql review`, the asset library), "
        "see [Review and ownership](#review-and-ownership)",
    )
    link_expiry: int | str = _setting(
        "7d",
        _link_expiry,
        "Lifetime of the shareable image links in the export's links manifest and the UI: seconds or a "
        "number with unit s, m, h or d, from 1h to 365d, or 'permanent'. S3 presigned URLs allow at most 7d "
        "(the SigV4 limit); longer lifetimes need the storage's CDN with a CloudFront key pair, and "
        "'permanent' gives plain CDN URLs (the distribution must allow public reads). Checked against the "
        "storage when the batch is registered.",
        "lifetime of the shareable links (`3600`, `90m`, `36h`, `7d`, `30d`, `permanent`): 1 hour to 7 days "
        "as S3 presigned URLs; up to 365 days (CloudFront signed) or `permanent` (public CDN URLs) when the "
        "storage has a CDN, see [Shareable links](#shareable-links)",
    )
    tagger: str = _setting(
        "local",
        lambda v: None if v in TAGGERS else f"must be one of {', '.join(TAGGERS)}, got {quote(v)}",
        "Who tags the images: 'local' (zero-shot CLIP, offline) or 'bedrock' (the vision-language model "
        "bedrock_model names, through the vision_tagger resource; images it cannot tag, or all of them "
        "when Bedrock is unavailable, are tagged locally with a warning).",
        "`local` (zero-shot CLIP) or `bedrock` (a vision-language model, local where it fails), see "
        "[Tags and categories](#tags-and-categories)",
    )
    bedrock_model: str = _setting(
        BEDROCK_MODEL,
        lambda v: _text(v, allow_empty=False),
        "Bedrock model id the 'bedrock' tagger asks (a Claude 3 model with vision, as the design names).",
        "Bedrock model id of the `bedrock` tagger",
    )

    translator: str = _setting(
        "none",
        lambda v: None if v in TRANSLATORS else f"must be one of {', '.join(TRANSLATORS)}, got {quote(v)}",
        "How a row's text reaches the model's language (English, what Stable Diffusion's text encoders "
        "read): 'none' keeps it (for multilingual models), 'glossary' replaces the terms of `glossary` "
        "(offline; `assetql validate` lists the words it has no entry for, by row and column), "
        "'aws-translate' asks Amazon Translate (the translator resource).",
        "`none`, `glossary` or `aws-translate`: how non-English rows become the model's English, see "
        "[Languages](#languages)",
    )
    glossary: tuple[tuple[str, str], ...] = _setting(
        (),
        _glossary,
        "Terms of the `glossary` translator per language: {es: {espada: sword, 'de acero': 'made of steel'}}.",
        "`{language: {term: English}}` for the `glossary` translator",
        readme_default="none",
    )
    season: str | None = _setting(
        None,
        lambda v: None if v is None else _text(v) or season_error(v),
        "A season of the seasonal catalogue (docs/seasons.md), e.g. christmas, lunar-new-year, summer-north; "
        "or 'auto': the one of the batch's registration date in `region`. Its modifiers go into the "
        "template's {season_modifier} (or are appended), and every image is tagged season:NAME.",
        "seasonal context from the catalogue, or `auto` (by date and `region`), see [Seasons](#seasons)",
        readme_default="none",
    )
    region: str | None = _setting(
        None,
        lambda v: None if v is None else _text(v) or region_error(v),
        "Region of the audience (e.g. US, EU, UK, IN, CN, JP, AU, BR): picks its hemisphere's seasons and its "
        "festivals for `season: auto`.",
        "audience region for `season: auto` (hemisphere, festivals)",
        readme_default="none",
    )
    palette: str | tuple[str, ...] | None = _setting(
        None,
        _palette,
        "Target palette of the style engine instead of the references' own: a list of '#rrggbb' colours "
        "(a campaign's brand colours), or 'season' for the season's palette. A palette lock pulls every "
        "image toward it and the palette score compares with it.",
        "`['#rrggbb', …]` or `season`: the palette locks and scores aim at",
        readme_default="references'",
    )
    priority: str | int = _setting(
        "normal",
        priority_error,
        "Queue priority of the batch's runs: low, normal, high, urgent, or an integer from -10 to 10 "
        "(low -5, normal 0, high 5, urgent 10). A queued run of higher priority starts first; runs of "
        "equal priority start in submission order.",
        "`low`, `normal`, `high`, `urgent` or -10…10: which queued batch starts first",
    )
    campaign: str | None = _setting(
        None,
        _name,
        "A campaign profile of the campaigns file ($ASSETQL_CAMPAIGNS): its brand colours, theme, audience, "
        "tone, style profile and exports apply to the batch, and every image carries the campaign.",
        "campaign profile to apply, see [Campaign profiles](#campaign-profiles)",
        readme_default="none",
    )

    def __post_init__(self) -> None:
        # Normalisation only (values were checked where they entered): YAML and JSON give ints for
        # whole floats and lists for tuples; a tuple keeps the frozen settings hashable.
        for name in _FLOAT_FIELDS:
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "exports", tuple(self.exports))
        for name in ("template", "negative_prompt"):  # per-language mappings as sorted (language, text) pairs
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                pairs = value.items() if isinstance(value, Mapping) else value
                object.__setattr__(self, name, tuple(sorted((str(k), str(v)) for k, v in pairs)))
        if isinstance(self.palette, (list, tuple)):
            object.__setattr__(self, "palette", tuple(c.lower() for c in self.palette))
        # Kept as (name, value as sorted JSON) pairs: hashable, and restored alike from a snapshot.
        object.__setattr__(self, "glossary", _json_pairs(self.glossary))
        object.__setattr__(self, "export_options", _json_pairs(self.export_options))
        locks = self.locks.items() if isinstance(self.locks, Mapping) else self.locks
        object.__setattr__(self, "locks", tuple(sorted((str(name), int(weight)) for name, weight in locks)))
        loras = [(e["path"], e.get("scale", 1.0)) if isinstance(e, Mapping) else e for e in self.lora]
        object.__setattr__(self, "lora", tuple((str(path), float(scale)) for path, scale in loras))

    def negative_prompt_for(self, language: str) -> str:
        """The negative prompt of a row of `language`."""
        return per_language(_mapping(self.negative_prompt), language) or ""

    def glossary_of(self, language: str) -> dict[str, str]:
        """The `glossary` terms of `language` ({} when none)."""
        return _json_value(self.glossary, language)

    def options_of(self, exporter: str) -> dict[str, Any]:
        """The `export_options` given for `exporter` ({} when none)."""
        return _json_value(self.export_options, exporter)

    @property
    def lock_weights(self) -> dict[str, int]:
        """The locks as {parameter: weight 0-100}."""
        return dict(self.locks)

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> BatchSettings:
        """Settings from `to_dict` output stored after validation; trusted, so not re-checked."""
        return cls(**data)

    def to_dict(self) -> dict[str, object]:
        """JSON-safe field values; `from_snapshot` reverses it."""
        return dataclasses.asdict(self)


_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(BatchSettings)}
_FLOAT_FIELDS = tuple(name for name, hint in typing.get_type_hints(BatchSettings).items() if hint is float)


def settings_table_markdown() -> str:
    """README.md's `batch.yaml` settings table (key | default | meaning), one row per setting."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for name, field in _FIELDS.items():
        cells = (f"`{name}`", field.metadata["readme_default"], field.metadata["readme"])
        # A literal '|' would end the cell early.
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def _unknown_key_message(key: object) -> str:
    close = difflib.get_close_matches(str(key), _FIELDS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown setting {quote(str(key))}; {hint}allowed settings: {', '.join(_FIELDS)}"


def _collect(
    data: Mapping[object, object], file: str, lines: Mapping[str, int] | None = None
) -> tuple[BatchSettings, list[Problem]]:
    """Settings from the valid entries of `data` (defaults elsewhere) and a problem per invalid one."""
    lines = lines or {}
    valid: dict[str, object] = {}
    problems: list[Problem] = []
    for key, value in data.items():
        row = lines.get(key) if isinstance(key, str) else None
        if key not in _FIELDS:
            problems.append(Problem(file, _unknown_key_message(key), row, _clip(str(key))))
            continue
        if key == "modifiers" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ", ".join(v.strip() for v in value if v.strip())
        message = _FIELDS[key].metadata["check"](value)
        if message:
            problems.append(Problem(file, message, row, key))
        else:
            valid[key] = value
    return BatchSettings(**valid), problems


def parse_settings(data: Mapping[object, object], file: str) -> BatchSettings:
    """Settings from a mapping, raising BatchValidationError listing every invalid entry."""
    settings, problems = _collect(data, file)
    if problems:
        raise BatchValidationError(problems)
    return settings


MAX_SETTINGS_BYTES = 256_000
# Limits on YAML anchors and aliases, checked on the composed node graph before any value is
# constructed: a few lines of nested aliases ("billion laughs") expand to billions of values.
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 10_000


class _YamlTooLarge(Exception):
    def __init__(self, message: str, row: int | None, column: str | None = None):
        super().__init__(message)
        self.message, self.row, self.column = message, row, column


class _CountingLoader(yaml.SafeLoader):
    """A SafeLoader that stops composing after MAX_YAML_ALIASES alias references."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                row = self.peek_event().start_mark.line + 1
                message = (
                    f"more than {MAX_YAML_ALIASES} YAML alias references (*name); "
                    "write the values out instead"
                )
                raise _YamlTooLarge(message, row)
        return super().compose_node(parent, index)


def _check_expansion(root: yaml.Node) -> None:
    """Raise _YamlTooLarge when `root` expands (aliases followed) to more than MAX_YAML_NODES nodes.

    The walk stops at the limit, so it is cheap even for a cyclic or exponential graph. The row is
    that of the top-level entry being expanded (or of the document) when the limit is crossed.
    """
    count = 0
    entries: list[tuple[int, str | None, list[yaml.Node]]] = [(root.start_mark.line + 1, None, [root])]
    if isinstance(root, yaml.MappingNode):
        entries = []
        for key, value in root.value:
            column = _clip(key.value) if isinstance(key, yaml.ScalarNode) else None
            entries.append((key.start_mark.line + 1, column, [key, value]))
    for row, column, stack in entries:
        while stack:
            node = stack.pop()
            count += 1
            if count > MAX_YAML_NODES:
                message = (
                    f"YAML expands to more than {MAX_YAML_NODES:,} values (through aliases "
                    "of anchors); write the values out instead"
                )
                raise _YamlTooLarge(message, row, column)
            if isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)
            elif isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    stack += (key, value)


def read_settings(path: Path | None) -> tuple[BatchSettings, list[Problem]]:
    """Best-effort settings from a YAML file plus every problem found in it.

    Invalid entries fall back to their defaults, so callers can keep checking the rest of a
    batch and report all problems together. A missing file (or None) means all defaults.
    """
    if path is None or not path.exists():
        return BatchSettings(), []
    file = path.name
    try:
        # stat() first: a FIFO or device must never be opened (it can block or never end).
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return BatchSettings(), [Problem(file, "is not a regular file; expected a YAML file")]
        if info.st_size > MAX_SETTINGS_BYTES:
            message = (
                f"file is {info.st_size:,} bytes, larger than the limit of {MAX_SETTINGS_BYTES:,} bytes"
            )
            return BatchSettings(), [Problem(file, message)]
        with path.open("rb") as handle:
            raw = handle.read(MAX_SETTINGS_BYTES + 1)
    except OSError as error:
        return BatchSettings(), [Problem(file, f"cannot be read: {error.strerror or error}")]
    if len(raw) > MAX_SETTINGS_BYTES:  # grew after stat()
        message = f"file is larger than the limit of {MAX_SETTINGS_BYTES:,} bytes"
        return BatchSettings(), [Problem(file, message)]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        return BatchSettings(), [Problem(file, "not valid UTF-8; save the file as UTF-8", line)]
    loader = _CountingLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node)
        data = loader.construct_document(node) if node is not None else None
    except _YamlTooLarge as error:
        return BatchSettings(), [Problem(file, error.message, error.row, error.column)]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        detail = "; ".join(filter(None, (error.context, error.problem)))
        column = f" column {mark.column + 1}" if mark else ""
        row = mark.line + 1 if mark else None
        return BatchSettings(), [Problem(file, f"invalid YAML at{column}: {detail}", row)]
    except yaml.YAMLError as error:
        return BatchSettings(), [Problem(file, f"invalid YAML: {error}")]
    except ValueError as error:
        # PyYAML builds dates and integers with Python's own constructors, which raise plain
        # ValueError for e.g. "2024-02-30" or an integer of more than 4300 digits.
        return BatchSettings(), [Problem(file, f"invalid YAML value: {_clip(str(error))}")]
    finally:
        loader.dispose()
    if data is None:
        return BatchSettings(), []
    if not isinstance(data, dict):
        message = f"must be a mapping of 'setting: value' lines, got {type(data).__name__}"
        return BatchSettings(), [Problem(file, message, node.start_mark.line + 1)]
    lines, duplicates = _key_lines(node, file)
    settings, problems = _collect(data, file, lines)
    return settings, duplicates + problems


def _key_lines(node: yaml.MappingNode, file: str) -> tuple[dict[str, int], list[Problem]]:
    """Line of each top-level key's last occurrence, and a problem per repeated key."""
    first: dict[str, int] = {}
    lines: dict[str, int] = {}
    problems: list[Problem] = []
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        line = key.start_mark.line + 1
        if key.value in first:
            message = f"setting is written again (first on row {first[key.value]}); YAML keeps the last one"
            problems.append(Problem(file, message, line, _clip(key.value)))
        first.setdefault(key.value, line)
        lines[key.value] = line
    return lines, problems


def load_settings(path: Path | None) -> BatchSettings:
    """Settings from a YAML file (defaults when None or missing), raising BatchValidationError."""
    settings, problems = read_settings(path)
    if problems:
        raise BatchValidationError(problems)
    return settings


if __name__ == "__main__":
    print(settings_table_markdown())
