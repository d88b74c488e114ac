"""The `glossary` translator: a row's text into English with the batch's {term: English} entries,
offline, telling which words it had no entry for (MATCHING_RULES are the rules, also printed in
docs/languages.md).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

# Scripts written without spaces between words (Japanese; Chinese alike): kanji, hiragana,
# katakana with its prolonged-sound mark, half-width katakana, and 々〆〇. Python's `re` has no
# script classes, so the Unicode blocks are spelled out; the katakana middle dot ・ is punctuation
# and stays out.
_UNSPACED = (
    "\u3005-\u3007\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9d"
)
_HAS_UNSPACED = re.compile(f"[{_UNSPACED}]")
_LETTER = r"[^\W\d_]"
# A word of a spaced script: letters, joined by inner apostrophes or hyphens ("l'épée", "rot-gold").
_WORD = re.compile(rf"{_LETTER}+(?:['’-]{_LETTER}+)*")
# What is left of a Japanese text: runs of letters outside ASCII (its Latin words are names and
# loanwords already in English: "LED", "RPG").
_NON_ASCII_RUN = re.compile(rf"(?:(?![\x00-\x7f]){_LETTER})+")

MATCHING_RULES = (
    "Terms are matched without regard to case, longest first: with `de acero` and `acero inoxidable`, "
    "`de acero inoxidable` becomes `de` plus the English of `acero inoxidable`; a span already "
    "replaced is not matched again.",
    "A term in a spaced script (Latin letters: es, fr, de) matches whole words only: `espada` is not "
    "found in `espadas`, so each inflected form is its own term. Spaces inside a term match any "
    "spacing, and `'` matches `’` too.",
    "A term holding Japanese (kanji, hiragana, katakana) matches anywhere, since Japanese puts no "
    "spaces between words; an English replacement next to other letters gets a space around it "
    "(`赤い剣` with `赤い: red` and `剣: sword` is `red sword`).",
    "A term whose English is empty is dropped (particles and articles: `の`, `de`, `la`).",
    "Numbers and punctuation are left as they are, and never reported.",
    "Reported as untranslated, in order and once each (by case-insensitive spelling): the words left "
    "with no entry, or in a Japanese text (any kana or kanji) the runs of non-ASCII letters left.",
)


@dataclass(frozen=True)
class _Term:
    """One entry: as typed, its English, how it is found, and whether it is matched as whole words."""

    source: str
    english: str
    pattern: re.Pattern[str]
    spaced: bool


# Every text of a batch is matched against the same terms: each is compiled once.
@functools.lru_cache(maxsize=4096)
def _term(source: str, english: str) -> _Term:
    """A glossary entry with how it is found: whole words for a spaced term, anywhere otherwise."""
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"glossary term must be non-empty text, got {source!r}")
    if not isinstance(english, str):
        raise ValueError(f"English of glossary term {source!r} must be text, got {english!r}")
    words = unicodedata.normalize("NFC", source).split()
    # Typed apostrophes and typographic ones are the same letter to a reader (l'épée, l’épée).
    body = r"\s+".join("".join("['’]" if c in "'’" else re.escape(c) for c in word) for word in words)
    return _Term(source, english.strip(), re.compile(body, re.IGNORECASE), not _HAS_UNSPACED.search(source))


def _joins(char: str) -> bool:
    """Whether `char` continues a word of a spaced script (so a spaced term next to it is not a word)."""
    return char.isalnum() and not _HAS_UNSPACED.match(char)


def _matches(term: _Term, text: str, taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Where `term` is found in `text` outside the `taken` spans (at word boundaries when spaced)."""
    found = []
    pos = 0
    while (m := term.pattern.search(text, pos)) is not None:
        start, end = m.span()
        bounded = not term.spaced or (
            (start == 0 or not _joins(text[start - 1])) and (end == len(text) or not _joins(text[end]))
        )
        free = all(end <= a or start >= b for a, b in taken + found)
        if bounded and free:
            found.append((start, end))
            pos = end
        else:
            pos = start + 1  # an overlapping occurrence may still start further on
    return found


def translate_with_glossary(text: str, terms: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with every glossary term replaced by its English (MATCHING_RULES), and the words
    left untranslated, in order, each once."""
    if not isinstance(text, str):
        raise ValueError(f"text to translate must be a string, got {text!r}")
    if not isinstance(terms, Mapping):
        raise ValueError(f"glossary must be a mapping of term to its English, got {terms!r}")
    text = unicodedata.normalize("NFC", text)
    compiled = sorted((_term(source, english) for source, english in terms.items()),
                      key=lambda t: -len(" ".join(t.source.split())))
    replaced: dict[tuple[int, int], str] = {}
    for term in compiled:
        for span in _matches(term, text, list(replaced)):
            replaced[span] = term.english
    pieces: list[tuple[str, bool]] = []  # (text, whether it is a replacement)
    pos = 0
    for (start, end), english in sorted(replaced.items()):
        pieces += [(text[pos:start], False), (english, True)]
        pos = end
    pieces.append((text[pos:], False))
    out, last_english = "", False
    for piece, is_english in (p for p in pieces if p[0]):
        # English words set into text without spaces (Japanese), or next to each other, need one.
        if out and (is_english or last_english) and out[-1].isalnum() and piece[0].isalnum():
            out += " "
        out += piece
        last_english = is_english
    left = _NON_ASCII_RUN if _HAS_UNSPACED.search(text) else _WORD
    untranslated: dict[str, str] = {}
    for piece, is_english in pieces:
        if not is_english:
            for word in left.findall(piece):
                untranslated.setdefault(word.casefold(), word)
    return re.sub(r"[ \t]{2,}", " ", out).strip(), list(untranslated.values())
