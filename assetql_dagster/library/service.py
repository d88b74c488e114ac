"""What the library's pages and its JSON API both do, over storage, the catalog and the launcher.

`Library` holds the resources one app serves from; the functions here turn requests' words into
catalog searches, gather what an asset or batch page shows, stage uploads for the same validation
the command line runs, and package selections. Pages (`pages.py`) and the API (`api.py`) only
translate between HTTP and these.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import secrets
import shutil
import tempfile
import threading
import time
import typing
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from PIL import Image

from assetql_dagster.domain.batch_loader import CSV_NAME, REFERENCE_EXTENSIONS, REFERENCES_DIR, SETTINGS_NAME
from assetql_dagster.domain.palette import downscaled, palette_of_images
from assetql_dagster.domain.scoring import PARAMETERS
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.library.config import LibraryConfig, config_path
from assetql_dagster.pipeline.cataloguing import EXPIRED
from assetql_dagster.pipeline.profiles import get_profile
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.searching import RESULT_COLUMNS, results_csv
from resources.catalog import AssetCatalog
from resources.catalog_search import FILTERS, FILTERS_BY_NAME, SORTS
from resources.storage import AssetStorage, check_key

PAGE_SIZE = 60
MAX_PAGE_SIZE = 500
MAX_SELECTION = 1000  # images one ZIP download may hold
UPLOAD_TTL_S = 24 * 3600  # staged uploads older than this are removed
JPEG_QUALITY = 85
PALETTE_SIDE = 256  # references are downscaled to this before their palette is taken
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Content types of what the library serves, by file extension.
CONTENT_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".zip": "application/zip", ".csv": "text/csv; charset=utf-8", ".json": "application/json",
    ".html": "text/html; charset=utf-8",
}
# The catalog statuses of a batch whose run got to its package (and of one whose images the retention
# deleted since): the batches list asks the launcher for the progress of the others only (one Dagster
# query each); a batch's own page always asks.
SETTLED = ("exported", EXPIRED)


class NotFound(LookupError):
    """Something a request names does not exist (404)."""


class BadRequest(ValueError):
    """A request's values are not acceptable (400); the message says which and why."""


class Conflict(ValueError):
    """The request cannot be done now (409), e.g. while a run of the batch is queued or going."""


class Unavailable(RuntimeError):
    """This library lacks what the request needs (503), e.g. the image generator."""


@dataclasses.dataclass
class Library:
    """The resources one library app serves from."""

    config: LibraryConfig
    storage: AssetStorage
    catalog: AssetCatalog
    launcher: Any  # a launching.RunLauncher
    clip: Any = None  # the code location's ClipEmbedder: "find similar" by text, regeneration's scores
    generator: Any = None  # the code location's ImageGenerator: regeneration
    uploads: Path = dataclasses.field(default_factory=lambda: Path(tempfile.gettempdir()) / "assetql-uploads")
    # One regeneration at a time: each loads the batch's model.
    model_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    palettes: dict[tuple[str, int], list[tuple[str, float]]] = dataclasses.field(default_factory=dict)
    # The config file admins' role changes are written to (`roles.py`): the one `config` came from, or
    # where development mode creates one. `config` is replaced when it changes, so requests read it here.
    config_file: Path = dataclasses.field(default_factory=lambda: config_path()[0])

    def content_type(self, key: str) -> str:
        return CONTENT_TYPES.get(PurePosixPath(key).suffix.lower(), "application/octet-stream")


# ---- request words → search options --------------------------------------------------------------


def filters_from(params: Any, names: Iterable[str] | None = None) -> dict[str, Any]:
    """Catalog filters from query or form parameters (`params.get`/`getlist`), parsed as the command
    line parses them; a repeatable filter takes several parameters or comma-separated words. Only
    `names` are read when given. BadRequest names a value that does not parse."""
    wanted = [FILTERS_BY_NAME[n] for n in names] if names is not None else list(FILTERS)
    filters: dict[str, Any] = {}
    for f in wanted:
        if f.repeatable:
            raw = [w.strip() for value in params.getlist(f.name) for w in str(value).split(",") if w.strip()]
        else:
            value = str(params.get(f.name) or "").strip()
            raw = [value] if value else []
        try:
            parsed = [f.parse(w) for w in raw]
            if parsed:
                FILTERS_BY_NAME[f.name].where(parsed if f.repeatable else parsed[0])  # checks e.g. dates, sizes
        except (ValueError, TypeError) as error:
            raise BadRequest(f"filter {f.name}: {str(error)[:200]}") from None
        if parsed:
            filters[f.name] = parsed if f.repeatable else parsed[0]
    return filters


def sort_from(params: Any) -> tuple[str, bool]:
    sort = str(params.get("sort") or "score")
    if sort not in SORTS:
        raise BadRequest(f"sort {sort[:40]!r} is not one of {', '.join(SORTS)}")
    return sort, str(params.get("reverse") or "") in ("1", "true", "on")


def page_from(params: Any) -> tuple[int, int]:
    """(limit, offset) from `limit` and `page` (1-based) parameters."""
    try:
        limit = int(params.get("limit") or PAGE_SIZE)
        page = int(params.get("page") or 1)
    except ValueError:
        raise BadRequest("limit and page must be whole numbers") from None
    if not 1 <= limit <= MAX_PAGE_SIZE or page < 1:
        raise BadRequest(f"limit must be from 1 to {MAX_PAGE_SIZE} and page at least 1")
    return limit, (page - 1) * limit


def search(lib: Library, params: Any, **fixed: Any) -> list[dict[str, Any]]:
    """The catalog search a request asks for: full text `q`, `like` (a catalogued asset id),
    `describe` (text, through CLIP), sort, page and every filter; `fixed` filters win over the request's."""
    from assetql_dagster.pipeline.searching import find

    filters = {**filters_from(params), **fixed}
    sort, reverse = sort_from(params)
    limit, offset = page_from(params)
    query = str(params.get("q") or "").strip() or None
    like = str(params.get("like") or "").strip() or None
    describe = str(params.get("describe") or "").strip() or None
    # `find` also reads an image file named by `like`; from the web, only a catalogued image may be named.
    if like is not None and lib.catalog.get_asset(like) is None:
        raise BadRequest(f"like: no catalogued image {like[:200]!r}; give an asset id such as batch/image_id")
    if describe is not None and lib.clip is None:
        raise BadRequest("describe: this library has no CLIP model to read a description with")
    clip_load = lib.clip.load if lib.clip is not None else _no_clip
    try:
        return find(lib.catalog, clip_load, query, like=like, describe=describe, sort=sort, reverse=reverse,
                    limit=limit, offset=offset, **filters)
    except ValueError as error:
        raise BadRequest(str(error)) from None


def _no_clip() -> Any:
    raise BadRequest("this library has no CLIP model")


def public_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An asset row as the API shows it: the search result columns, review, extra and similarity."""
    keep = [*RESULT_COLUMNS, "review", "extra", "similarity", *(f"{p}_score" for p in PARAMETERS)]
    return {k: jsonable(row[k]) for k in keep if k in row}


def jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


# ---- batches ---------------------------------------------------------------------------------------


def pass_rate(batch: Mapping[str, Any]) -> float | None:
    scored = batch["images_passed"] + batch["images_review"]
    return batch["images_passed"] / scored if scored else None


def batch_summary(lib: Library, batch: Mapping[str, Any], progress: Any = None) -> dict[str, Any]:
    """A catalogued batch as the batches page and API show it, with its run's progress when given."""
    return {
        "key": batch["key"],
        "name": batch["name"],
        "description": batch["description"],
        "creator": batch["creator"],
        "owner": batch.get("owner") or batch["creator"],
        "status": batch["status"],
        "images_planned": batch["images_planned"],
        "images_stored": batch["images_stored"],
        "images_failed": batch["images_failed"],
        "images_passed": batch["images_passed"],
        "images_review": batch["images_review"],
        "pass_rate": pass_rate(batch),
        "style_profile": batch["style_profile"],
        "campaign": batch["campaign"],
        "registered_at": jsonable(batch["registered_at"]),
        "progress": progress_dict(progress),
    }


def progress_dict(progress: Any) -> dict[str, Any] | None:
    return None if progress is None else {k: jsonable(v) for k, v in dataclasses.asdict(progress).items()}


def batch_progress(lib: Library, key: str) -> Any:
    """The batch's `launching.Progress` (None when storage has no such batch registered)."""
    from assetql_dagster.pipeline.launching import batch_progress as progress_of

    try:
        return progress_of(lib.launcher, lib.storage, key)
    except LookupError:
        return None


def list_batches(lib: Library, limit: int, offset: int, owner: str | None = None) -> list[dict[str, Any]]:
    """A page of batches, newest first (only `owner`'s when given), with their run's progress where a
    run may still change them."""
    rows = lib.catalog.list_batches(limit=limit, offset=offset, owner=owner)
    return [batch_summary(lib, b, batch_progress(lib, b["key"]) if b["status"] not in SETTLED else None) for b in rows]


def get_batch(lib: Library, key: str) -> dict[str, Any]:
    batch = lib.catalog.get_batch(key)
    if batch is None:
        raise NotFound(f"no batch {key[:200]!r} in the catalog")
    summary = batch_summary(lib, batch, batch_progress(lib, key))
    summary["settings"] = batch["settings"]
    summary["exports"] = lib.catalog.batch_exports(key)
    return summary


# ---- one asset -----------------------------------------------------------------------------------------


def get_asset(lib: Library, asset_id: str) -> dict[str, Any]:
    row = lib.catalog.get_asset(asset_id)
    if row is None:
        raise NotFound(f"no image {asset_id[:200]!r} in the catalog")
    row.pop("embedding", None)
    row.pop("tags_text", None)
    row.pop("metadata_text", None)
    return row


def asset_detail(lib: Library, asset_id: str) -> dict[str, Any]:
    """Everything the asset page shows: the catalog row, tags with confidences, the versions (with
    their per-parameter scores, from storage), and the image's variant and variation."""
    from assetql_dagster.pipeline.versions import find_image, version_document

    row = get_asset(lib, asset_id)
    detail: dict[str, Any] = {"asset": row, "tags": lib.catalog.asset_tags(asset_id), "versions": None}
    job = image_job(lib, row["batch_key"], row["image_id"])
    if job is not None:
        detail["variant_id"], detail["variation"] = job.variant_id, job.variation
        try:
            ref = find_image(lib.storage, row["batch_key"], job.variant_id, job.variation)
        except LookupError:
            ref = None
        if ref is not None:
            detail["versions"] = version_document(lib.storage, ref)
    return detail


def image_job(lib: Library, batch_key: str, image_id: str) -> Any:
    """The planned job of an image (its variant, variation, seed and prompt), None when not planned."""
    try:
        plan = read_record(lib.storage, batch_key, "prompts")
    except FileNotFoundError:
        return None
    return next((j for j in plan.jobs if j.image_id == image_id), None)


def image_ref(lib: Library, asset_id: str) -> Any:
    """The `versions.ImageRef` of a catalogued image (NotFound when it is not there)."""
    from assetql_dagster.pipeline.versions import find_image

    row = get_asset(lib, asset_id)
    job = image_job(lib, row["batch_key"], row["image_id"])
    if job is None:
        raise NotFound(f"image {asset_id[:200]!r} has no planned job in storage")
    return find_image(lib.storage, row["batch_key"], job.variant_id, job.variation)


def compressed_jpeg(lib: Library, raw_key: str, quality: int = JPEG_QUALITY) -> bytes:
    """The image at `raw_key` as a JPEG (what "download compressed" gives)."""
    with Image.open(io.BytesIO(lib.storage.read_bytes(raw_key))) as img:
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


# ---- downloads -------------------------------------------------------------------------------------------


def selected_assets(lib: Library, asset_ids: Iterable[str]) -> list[dict[str, Any]]:
    ids = list(dict.fromkeys(str(a) for a in asset_ids if str(a).strip()))
    if not ids:
        raise BadRequest("select at least one image")
    if len(ids) > MAX_SELECTION:
        raise BadRequest(f"at most {MAX_SELECTION} images per download, got {len(ids)}")
    rows = []
    for asset_id in ids:
        row = lib.catalog.get_asset(asset_id)
        if row is None:
            raise NotFound(f"no image {asset_id[:200]!r} in the catalog")
        row["tags"] = [t["label"] for t in lib.catalog.asset_tags(asset_id)]
        rows.append(row)
    return rows


def selection_zip(lib: Library, rows: list[dict[str, Any]]) -> Iterator[bytes]:
    """A ZIP of the images of `rows` (as `{batch}/{file name}`) and their manifest.csv, streamed in
    chunks from a spooled temporary file (PNGs are stored, not compressed again)."""
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 2**20)
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED) as archive:
        for row in rows:
            archive.writestr(f"{row['batch_key']}/{row['file_name']}", lib.storage.read_bytes(row["raw_key"]))
        archive.writestr("manifest.csv", results_csv(rows), compress_type=zipfile.ZIP_DEFLATED)
    spool.seek(0)

    def chunks() -> Iterator[bytes]:
        with spool:
            while chunk := spool.read(2**20):
                yield chunk

    return chunks()


# ---- style profiles --------------------------------------------------------------------------------------


def profile_palette(lib: Library, name: str, version: int) -> list[tuple[str, float]]:
    """The dominant colours of a profile version's references, pooled, as (#rrggbb, share); versions
    never change, so each is computed once per library."""
    if (name, version) not in lib.palettes:
        spec = get_profile(lib.storage, f"{name}@{version}")
        images = []
        for ref in spec.references:
            with Image.open(io.BytesIO(lib.storage.read_bytes(ref.key))) as img:
                images.append(downscaled(img.convert("RGB"), PALETTE_SIDE, Image.Resampling.BILINEAR))
        lib.palettes[name, version] = palette_of_images(images)
    return lib.palettes[name, version]


_PROFILE_REFERENCE = re.compile(r"style-profiles/([^/]+)/v([1-9][0-9]*)/references/[^/]+")


def profile_reference(lib: Library, key: str) -> bool:
    """Whether `key` is a reference image of a stored style profile version (`profile.json` lists it)."""
    match = _PROFILE_REFERENCE.fullmatch(key)
    if match is None:
        return False
    try:
        spec = get_profile(lib.storage, f"{match[1]}@{match[2]}")
    except (LookupError, ValueError):
        return False
    return any(ref.key == key for ref in spec.references)


def locks_from(params: Any) -> dict[str, int]:
    """`lock_{parameter}` form values (0–100, empty for no lock) as the profile's locks."""
    locks = {}
    for name in PARAMETERS:
        value = str(params.get(f"lock_{name}") or "").strip()
        if value:
            try:
                locks[name] = int(value)
            except ValueError:
                raise BadRequest(f"lock {name}: {value[:40]!r} is not a whole number from 0 to 100") from None
    return locks


def threshold_from(params: Any) -> float | None:
    value = str(params.get("threshold") or "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise BadRequest(f"threshold: {value[:40]!r} is not a number from 0 to 1") from None


# ---- uploads ---------------------------------------------------------------------------------------------


def safe_file_name(name: str, fallback: str) -> str:
    """An uploaded file's name made safe for a folder: its last part, odd characters replaced."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    cleaned = _SAFE_NAME.sub("_", base).strip("._")[:100]
    return cleaned or fallback


async def save_upload(upload: Any, path: Path) -> None:
    """Write an uploaded file (a Starlette UploadFile) to `path` in chunks."""
    with path.open("wb") as out:
        while chunk := await upload.read(2**20):
            out.write(chunk)


async def save_references(uploads: Iterable[Any], folder: Path) -> int:
    """Write uploaded reference images into `folder` under safe, distinct names; returns how many.
    Their kind, size and pixels are checked afterwards, as the command line checks a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, upload in enumerate(u for u in uploads if getattr(u, "filename", "")):
        name = safe_file_name(upload.filename, f"reference-{i + 1}.png")
        if PurePosixPath(name).suffix.lower() not in REFERENCE_EXTENSIONS:
            name += ".png"  # named by its kind's check, which reads the header, not the name
        while (folder / name).exists():
            name = f"{i + 1}-{name}"
        await save_upload(upload, folder / name)
        count += 1
    return count


def _clean_uploads(root: Path) -> None:
    if not root.exists():
        return
    cutoff = time.time() - UPLOAD_TTL_S
    for entry in root.iterdir():
        if entry.is_dir() and entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry, ignore_errors=True)


def new_upload(lib: Library, user: str) -> tuple[str, Path]:
    """A fresh staging folder for one person's batch upload: (token, the batch folder in it)."""
    _clean_uploads(lib.uploads)
    token = secrets.token_urlsafe(18)
    home = lib.uploads / token
    (home / "batch").mkdir(parents=True)
    (home / "owner").write_text(user, encoding="utf-8")
    return token, home / "batch"


def upload_folder(lib: Library, token: str, user: str) -> Path:
    """The batch folder of staged upload `token`, which only the person who made it may use."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", token or ""):
        raise NotFound("no such upload")
    home = lib.uploads / token
    owner = home / "owner"
    if not owner.is_file() or owner.read_text(encoding="utf-8") != user:
        raise NotFound("no such upload (uploads are kept for a day, for the person who made them)")
    return home / "batch"


def discard_upload(lib: Library, token: str) -> None:
    shutil.rmtree(lib.uploads / token, ignore_errors=True)


# Settings offered on the new-batch form: every batch.yaml setting with a plain value (text or a
# number). `style` has its own pickers; lists and mappings (lora, locks, exports) stay in batch.yaml
# files for the command line.
_HINTS = typing.get_type_hints(BatchSettings)
_PLAIN = {str: "text", str | None: "text", int: "int", int | None: "int", float: "float"}
LONG_TEXT = ("description", "template", "negative_prompt", "modifiers")


@dataclasses.dataclass(frozen=True)
class FormSetting:
    name: str
    kind: str  # text, long, int or float
    doc: str
    default: str


FORM_SETTINGS = tuple(
    FormSetting(
        f.name, "long" if f.name in LONG_TEXT else _PLAIN[_HINTS[f.name]], f.metadata["doc"],
        "" if f.default is None else str(f.default),
    )
    for f in dataclasses.fields(BatchSettings)
    if f.name != "style" and _HINTS[f.name] in _PLAIN
)


def settings_from(params: Any) -> dict[str, Any]:
    """batch.yaml settings from form fields named like them (empty fields are left out). Numbers that
    do not parse are passed on as typed, so validation names them, with the file and field."""
    settings: dict[str, Any] = {}
    for s in FORM_SETTINGS:
        value = str(params.get(s.name) or "").strip()
        if not value:
            continue
        if s.kind in ("int", "float"):
            try:
                settings[s.name] = int(value) if s.kind == "int" else float(value)
                continue
            except ValueError:
                pass
        settings[s.name] = value
    profile, preset = str(params.get("profile") or "").strip(), str(params.get("preset") or "").strip()
    style = [v for v in (profile, f"preset:{preset}" if preset else "") if v]
    if style:
        settings["style"] = style[0] if len(style) == 1 else style
    return settings


async def stage_batch(lib: Library, user: str, form: Any) -> tuple[str, Path]:
    """Stage an uploaded batch: `csv` (required), `references` (files) and the settings fields,
    written as a batch folder (batch.csv, batch.yaml, references/) ready for validation."""
    upload = form.get("csv")
    if upload is None or not getattr(upload, "filename", ""):
        raise BadRequest("choose a CSV file (batch.csv) to upload")
    token, folder = new_upload(lib, user)
    await save_upload(upload, folder / CSV_NAME)
    await save_references(form.getlist("references"), folder / REFERENCES_DIR)
    if not any((folder / REFERENCES_DIR).iterdir()):
        (folder / REFERENCES_DIR).rmdir()
    settings = settings_from(form)
    settings.setdefault("name", _batch_name(getattr(upload, "filename", "")))
    (folder / SETTINGS_NAME).write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return token, folder


def _batch_name(file_name: str) -> str:
    stem = PurePosixPath(safe_file_name(file_name, "batch.csv")).stem
    return stem if stem and stem != "batch" and stem[0].isalnum() else "library-batch"


def csv_preview(folder: Path, rows: int = 5) -> tuple[list[str], list[list[str]]]:
    """The uploaded CSV's header and first rows, as text (for the preview page)."""
    try:
        text = (folder / CSV_NAME).read_bytes()[:200_000].decode("utf-8-sig", errors="replace")
    except OSError:
        return [], []
    reader = csv.reader(io.StringIO(text))
    lines = [line for _, line in zip(range(rows + 1), reader)]
    return (lines[0], lines[1:]) if lines else ([], [])


def storage_key(key: str) -> str:
    """`key` if it is a well-formed storage key, else NotFound (path tricks never reach storage)."""
    try:
        return check_key(key)
    except ValueError:
        raise NotFound("no such file") from None
