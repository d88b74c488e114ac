"""The languages AssetQL localises batches into, and how a per-language setting falls back."""

from __future__ import annotations

from collections.abc import Mapping

# The CSV's `language` column takes these (ISO 639-1); an empty cell means English.
LANGUAGES = ("en", "es", "fr", "de", "ja")
DEFAULT_LANGUAGE = "en"
# The key of a per-language setting's value for languages it does not name.
DEFAULT_KEY = "default"


def per_language(value: str | Mapping[str, str] | None, language: str) -> str | None:
    """A per-language setting's value for `language`: the text itself, or the mapping's entry for
    the language, else its `default`, else its English one; None when there is none."""
    if value is None or isinstance(value, str):
        return value
    for key in (language or DEFAULT_LANGUAGE, DEFAULT_KEY, DEFAULT_LANGUAGE):
        if key in value:
            return value[key]
    return None
