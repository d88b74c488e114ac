"""The exporter interface: what a distribution format is given, what it writes, and its options table.

An exporter turns a batch's exported images (their manifest rows) into one ready-to-use package
under `exports/{batch}/{name}/` (Unity, a shop's import CSV, a CMS import, social sizes, print
files...). Built-ins and third-party exporters alike are found through the `assetql.exporters`
entry-point group (see `registry.py`); each becomes its own `{name}_export` asset.

A plugin subclasses `Exporter`, declares its options as a table of `Option`s (default, check and
documentation in one place) and implements `export` and `validate`.
"""

from __future__ import annotations

import abc
import difflib
import io
import mimetypes
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

from assetql_dagster.domain.settings import quote
from resources.storage import AssetStorage

# Above this many pixels an exporter refuses an image rather than spend its memory (a stored image
# is at most 2048×2048; print upscales to a few times that).
MAX_SOURCE_PIXELS = 2048 * 2048


class ExportOptionsError(ValueError):
    """An exporter's options are not valid; the message names the option, the value and what is expected."""


@dataclass(frozen=True)
class Option:
    """One exporter option: its default, its check (why a value is wrong, or None) and its documentation."""

    default: Any
    check: Callable[[Any], str | None]
    doc: str


def choice(*allowed: str) -> Callable[[Any], str | None]:
    """A check accepting one of `allowed`."""
    return lambda value: None if value in allowed else f"must be one of {', '.join(allowed)}, got {quote(value)}"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {quote(value)}"


def text(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be text, got {quote(value)}"


@dataclass(frozen=True)
class ExportImage:
    """One image as an exporter sees it: its manifest row (lineage, scores, tags, category, sku...)."""

    row: Mapping[str, Any]

    @property
    def file_name(self) -> str:
        return self.row["file_name"]

    @property
    def stem(self) -> str:
        return self.file_name.rsplit(".", 1)[0]

    @property
    def raw_key(self) -> str:
        return self.row["raw_key"]

    @property
    def prompt(self) -> str:
        return self.row["prompt"]

    @property
    def category(self) -> str:
        """The category path ("weapons/swords"), "" when the image has none."""
        return self.row.get("category") or ""

    @property
    def sku(self) -> str:
        return self.row.get("sku") or ""

    @property
    def tags(self) -> list[str]:
        """Tag labels, most confident first (the manifest keeps them as "label:confidence")."""
        return [t.rsplit(":", 1)[0] for t in self.row.get("tags") or ()]

    def alt_text(self, limit: int = 125) -> str:
        """Alt text in the row's language, from its own words (before translation) and its first
        localised tags, cut at a word within `limit` characters (screen readers and shops advise about 125)."""
        tags = list(self.row.get("tags_localized") or self.tags)
        text = (self.row.get("original_prompt") or self.prompt).strip()
        words = text + (f" ({', '.join(tags[:3])})" if tags else "")
        if len(words) <= limit:
            return words
        return words[: limit - 1].rsplit(" ", 1)[0].rstrip(",;( ") + "…"


@dataclass
class ExportJob:
    """One exporter's work on one batch: the images, the parsed options and where to write."""

    batch: str
    name: str
    images: Sequence[ExportImage]
    options: Mapping[str, Any]
    storage: AssetStorage
    settings: Any = None  # the batch's BatchSettings, for exporters that need e.g. its size or model
    # Upload clients by exporter name (e.g. a WordPress REST client), from the deployment's resources;
    # an exporter whose options ask for an upload finds its client here.
    clients: Mapping[str, Any] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)  # storage key -> bytes, in writing order

    @property
    def prefix(self) -> str:
        return f"exports/{self.batch}/{self.name}/"

    def key(self, relative: str) -> str:
        return self.prefix + relative

    def open_image(self, image: ExportImage) -> Image.Image:
        """The stored full-size image, loaded (its mode kept: RGBA where it has alpha)."""
        opened = Image.open(io.BytesIO(self.storage.read_bytes(image.raw_key)))
        if opened.width * opened.height > MAX_SOURCE_PIXELS:
            raise ValueError(
                f"{image.raw_key} is {opened.width}×{opened.height}, more than {MAX_SOURCE_PIXELS:,} pixels"
            )
        opened.load()
        return opened

    def write(self, relative: str, data: bytes, content_type: str | None = None) -> str:
        """Write `data` at `{prefix}{relative}`; its storage key."""
        key = self.key(relative)
        content_type = content_type or mimetypes.guess_type(relative)[0] or "application/octet-stream"
        self.storage.write_bytes(key, data, content_type)
        self.written[key] = len(data)
        return key

    def read(self, relative: str) -> bytes:
        return self.storage.read_bytes(self.key(relative))


@dataclass(frozen=True)
class ExportResult:
    """What an exporter wrote: its main file (the package a person downloads), and figures for the UI."""

    main: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


class Exporter(abc.ABC):
    """A distribution format. Subclasses set `name`, `title` and `OPTIONS`, and implement `export`
    (write the package) and `validate` (read it back: the problems found, [] when it is sound)."""

    name: ClassVar[str]
    title: ClassVar[str]
    OPTIONS: ClassVar[Mapping[str, Option]] = {}
    # An exporter that may load a model (print's diffusion upscaler) is a model step: it runs on a
    # device like generation does, not on a CPU worker.
    uses_device: ClassVar[bool] = False

    def parse_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every option with `given`'s values over the defaults; ExportOptionsError naming the first bad one."""
        for key, value in given.items():
            if key not in self.OPTIONS:
                close = difflib.get_close_matches(str(key), self.OPTIONS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                allowed = ", ".join(self.OPTIONS) or "none"
                raise ExportOptionsError(f"unknown option {quote(key)}; {hint}{self.name} options: {allowed}")
            problem = self.OPTIONS[key].check(value)
            if problem:
                raise ExportOptionsError(f"{key} {problem}")
        return {key: given.get(key, option.default) for key, option in self.OPTIONS.items()}

    def wants_clients(self, options: Mapping[str, Any]) -> bool:
        """Whether the job needs the deployment's upload clients (`job.clients`) with these options."""
        return False

    @abc.abstractmethod
    def export(self, job: ExportJob) -> ExportResult:
        """Write the package through `job.write`."""

    @abc.abstractmethod
    def validate(self, job: ExportJob, result: ExportResult) -> list[str]:
        """Read the written package back (`job.read`, `job.written`): what is wrong with it."""
