"""What people do in the library, for the pages and the API alike: review, download, roll back,
regenerate, export, transfer, delete, submit batches, quick generate and edit style profiles.

Each action checks everything before it changes anything, raises `service.BadRequest` (400),
`NotFound` (404), `Conflict` (409) or `Unavailable` (503) (all in `service`) with a message that says what to do, and
leaves a line in the activity log (the review, transfer and delete functions of `pipeline.reviews`
log their own). Regeneration generates images, which takes a while: the request is checked at once,
and the work returned as a `RegenerationTask` that runs after the response.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from assetql_dagster.domain.batch_loader import REFERENCES_DIR
from assetql_dagster.domain.export_writers import EXPORT_FORMATS
from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.library import service
from assetql_dagster.library.auth import Identity
from assetql_dagster.library.service import BadRequest, Conflict, Library, NotFound, Unavailable
from assetql_dagster.pipeline import reviews
from assetql_dagster.pipeline.cataloguing import EXPIRED
from assetql_dagster.pipeline.profiles import ProfileNotFound, copy_profile_references, create_profile, get_profile
from assetql_dagster.pipeline.records import read_record

LOG = logging.getLogger(__name__)
LINK_EXPIRY_S = 3600  # presigned URLs the library redirects to
UPLOAD_ORIGIN = "asset-library upload"  # what an uploaded batch's record and runs say it came from
# What a changed image needs rebuilt (as `assetql rollback`/`regenerate`), and the catalog after it.
REEXPORT = ("curated_images", "tags", "exports", "catalog_entry")
ACTIVE = ("queued", "running")


# ---- files ---------------------------------------------------------------------------------------------


def file_response(lib: Library, key: str, download: bool = False, file_name: str | None = None) -> Response:
    """A stored file: streamed from local storage, or a redirect to a presigned URL (S3)."""
    if not lib.storage.links_are_local:
        return RedirectResponse(lib.storage.link(key, LINK_EXPIRY_S), status_code=307)
    path = lib.storage.local_path(key)
    if not path.is_file():
        raise NotFound("the file is catalogued but missing from storage; rebuild the catalog")
    name = file_name or PurePosixPath(key).name
    response = FileResponse(path, media_type=lib.content_type(key), filename=name if download else None)
    # Thumbnails are replaced in place by a rollback: revalidate (ETag) instead of trusting a copy.
    response.headers["cache-control"] = "private, no-cache"
    return response


def asset_download(lib: Library, identity: Identity, row: dict[str, Any], kind: str) -> Response:
    """An image as its original PNG or as a compressed JPEG, recorded in the download history."""
    if kind == "original":
        reviews.record_download(lib.catalog, identity.user, row["id"], "original")
        return file_response(lib, row["raw_key"], download=True, file_name=row["file_name"])
    if kind == "jpeg":
        data = service.compressed_jpeg(lib, row["raw_key"])
        reviews.record_download(lib.catalog, identity.user, row["id"], "compressed")
        name = PurePosixPath(row["file_name"]).stem + ".jpg"
        return Response(data, media_type="image/jpeg", headers={"content-disposition": f'attachment; filename="{name}"'})
    raise BadRequest(f"format {kind[:40]!r} is not original or jpeg")


def zip_response(lib: Library, identity: Identity, rows: list[dict[str, Any]]) -> Response:
    """The selected images as one ZIP (with their manifest), recorded once per batch they come from."""
    chunks = service.selection_zip(lib, rows)
    for batch in dict.fromkeys(r["batch_key"] for r in rows):
        reviews.record_download(lib.catalog, identity.user, batch, "zip")
    name = f"assetql-{len(rows)}-images.zip"
    return StreamingResponse(chunks, media_type="application/zip",
                             headers={"content-disposition": f'attachment; filename="{name}"'})


# ---- reviews, exports, ownership ------------------------------------------------------------------------


def review(lib: Library, identity: Identity, asset_ids: Iterable[str], decision: str) -> int:
    """Approve, reject or clear (decision "approved", "rejected" or "clear") the review of images."""
    ids = [str(a) for a in asset_ids if str(a).strip()]
    if not ids:
        raise BadRequest("select at least one image")
    if decision not in ("approved", "rejected", "clear"):
        raise BadRequest(f"decision {decision[:40]!r} is not approved, rejected or clear")
    try:
        return reviews.set_review(lib.storage, lib.catalog, ids, None if decision == "clear" else decision,
                                  identity.user)
    except LookupError as missing:
        raise NotFound(str(missing)) from None
    except ValueError as problem:  # e.g. an id that is not {batch}/{image_id}
        raise BadRequest(str(problem)) from None


def export_approved(lib: Library, identity: Identity, key: str) -> Any:
    """The batch's package rewritten with its approved images only; the catalog's exports follow."""
    return export_preset(lib, identity, key, None, "approved")


def export_preset(lib: Library, identity: Identity, key: str, exports: list[str] | None, export_only: str) -> Any:
    """The batch's package rewritten in the formats `exports` (None: the batch's own) with the images
    `export_only` takes (all, approved); the catalog's exports become the new package's files."""
    if exports is not None and not exports:
        raise BadRequest(f"choose at least one export format among {', '.join(EXPORT_FORMATS)}")
    if (lib.catalog.get_batch(key) or {}).get("status") == EXPIRED:
        raise Conflict(f"batch {key}'s images were deleted by the retention; its packages stay as they are")
    try:
        summary = reviews.export_preset(lib.storage, key, exports, export_only)
    except LookupError as missing:
        raise NotFound(str(missing)) from None
    except ValueError as problem:
        raise BadRequest(str(problem)) from None
    lib.catalog.upsert_exports(key, summary.files, replace=True)
    action = "export.approved" if exports is None and export_only == "approved" else "export.preset"
    formats = ", ".join(summary.exports)
    reviews.record_activity(lib.catalog, identity.user, action, key,
                            f"{summary.images} image(s) ({export_only}) as {formats}")
    return summary


def transfer(lib: Library, identity: Identity, key: str, owner: str) -> None:
    try:
        reviews.transfer_ownership(lib.storage, lib.catalog, key, owner.strip(), identity.user)
    except LookupError as missing:
        raise NotFound(str(missing)) from None
    except ValueError as problem:
        raise BadRequest(str(problem)) from None


def delete(lib: Library, identity: Identity, key: str) -> None:
    try:
        reviews.delete_batch(lib.storage, lib.catalog, key, identity.user)
    except LookupError as missing:
        raise NotFound(str(missing)) from None


# ---- versions -----------------------------------------------------------------------------------------------


def refuse_while_running(lib: Library, key: str) -> None:
    progress = service.batch_progress(lib, key)
    if progress is not None and progress.status in ACTIVE:
        raise Conflict(f"batch {key} has a run {progress.status}; try again when it has ended")


def reexport(lib: Library, key: str) -> str:
    """Launch the run that rebuilds a changed batch's curated images, tags, package and catalog rows
    (adding its partition where the instance lacks it: storage may have been filled through another)."""
    lib.launcher.add_partition(key)
    return lib.launcher.launch(key, list(REEXPORT))


def rollback(lib: Library, identity: Identity, asset_id: str, version: str) -> None:
    """Make an earlier version of an image current (pinned), then re-export its batch."""
    from assetql_dagster.pipeline.versions import rollback as roll_back

    try:
        number = int(version)
    except ValueError:
        raise BadRequest(f"version {version[:20]!r} is not a version number") from None
    ref = service.image_ref(lib, asset_id)
    refuse_while_running(lib, ref.key)
    try:
        roll_back(lib.storage, ref, number)
    except LookupError as missing:
        raise BadRequest(str(missing)) from None
    reexport(lib, ref.key)
    reviews.record_activity(lib.catalog, identity.user, "version.rollback", asset_id, f"to v{number}")


@dataclasses.dataclass
class RegenerationTask:
    """Manual regenerations checked and ready to run: one new version per image (current and pinned,
    as `assetql regenerate` makes it), then each batch re-exported."""

    lib: Library
    identity: Identity
    refs: list[Any]  # versions.ImageRef
    seed: int | None = None
    prompt: str | None = None
    strength: float | None = None

    @property
    def count(self) -> int:
        return len(self.refs)

    def run(self) -> None:
        """Runs after the answer was sent: a failure is logged and left in the activity log of the
        batch, where the person who asked sees it."""
        by_batch: dict[str, list[Any]] = {}
        for ref in self.refs:
            by_batch.setdefault(ref.key, []).append(ref)
        with self.lib.model_lock:
            for key, refs in by_batch.items():
                try:
                    self._regenerate(key, refs)
                except Exception as error:
                    LOG.exception("regenerating images of batch %s failed", key)
                    detail = " ".join(f"{type(error).__name__}: {error}".split())[:500]
                    reviews.record_activity(self.lib.catalog, self.identity.user, "version.regenerate.failed", key, detail)

    def _regenerate(self, key: str, refs: list[Any]) -> None:
        from assetql_dagster.pipeline.versions import loop_functions, regenerate

        lib = self.lib
        profile = read_record(lib.storage, key, "style_profile")
        generate, score = loop_functions(lib.storage, refs[0].batch, profile, lib.generator, lib.clip)
        for ref in refs:
            updated = regenerate(lib.storage, ref, generate, score, self.seed, self.prompt, self.strength)
            reviews.record_activity(lib.catalog, self.identity.user, "version.regenerate", f"{key}/{ref.job.image_id}",
                                    f"v{updated.current}, seed {updated.current_version.seed}")
        reexport(lib, key)


def _regeneration(lib: Library, identity: Identity, asset_ids: list[str], seed: int | None, prompt: str | None,
                  strength: float | None) -> RegenerationTask:
    from assetql_dagster.pipeline.regeneration import load_histories
    from assetql_dagster.pipeline.versions import check_regeneration

    if lib.generator is None or lib.clip is None:
        raise Unavailable("this library has no image generator; regenerate with `assetql regenerate` instead")
    if not asset_ids:
        raise BadRequest("select at least one image")
    if len(asset_ids) > service.MAX_SELECTION:
        raise BadRequest(f"at most {service.MAX_SELECTION} images at a time, got {len(asset_ids)}")
    refs = [service.image_ref(lib, a) for a in dict.fromkeys(asset_ids)]
    for key in dict.fromkeys(r.key for r in refs):
        refuse_while_running(lib, key)
        histories = load_histories(lib.storage, key)
        for ref in (r for r in refs if r.key == key):
            try:
                check_regeneration(ref, histories.get(ref.job.image_id), seed, prompt, strength)
            except ValueError as problem:
                raise BadRequest(str(problem).replace("--", "")) from None
    return RegenerationTask(lib, identity, refs, seed, prompt, strength)


def regenerate_many(lib: Library, identity: Identity, asset_ids: Iterable[str]) -> RegenerationTask:
    """One new version of each image with a fresh seed (the planned prompt and style strength)."""
    return _regeneration(lib, identity, [str(a) for a in asset_ids if str(a).strip()], None, None, None)


def regenerate_one(lib: Library, identity: Identity, asset_id: str, params: Any) -> RegenerationTask:
    """One new version of an image with the prompt, seed and style strength of `params` (each
    optional: the planned prompt, a fresh seed, the batch's palette lock)."""
    def number(name: str, kind: type) -> Any:
        value = str(params.get(name) or "").strip()
        if not value:
            return None
        try:
            return kind(value)
        except ValueError:
            raise BadRequest(f"{name.replace('_', ' ')}: {value[:40]!r} is not a {kind.__name__} number") from None

    prompt = str(params.get("prompt") or "").strip() or None
    return _regeneration(lib, identity, [asset_id], number("seed", int), prompt, number("style_strength", float))


# ---- style profiles -----------------------------------------------------------------------------------------


async def create_profile_from(lib: Library, identity: Identity, form: Any) -> Any:
    """A new profile version from uploaded references and the form's locks, threshold, notes and
    preset; the images are checked exactly like a batch's references/."""
    name = str(form.get("name") or "").strip()
    preset = str(form.get("preset") or "").strip() or None
    locks, threshold = service.locks_from(form), service.threshold_from(form)
    with tempfile.TemporaryDirectory(prefix="assetql-profile-") as tmp:
        folder = Path(tmp) / REFERENCES_DIR
        if not await service.save_references(form.getlist("references"), folder):
            raise BadRequest("choose 1 to 5 reference images (JPEG, PNG or WebP)")
        spec = create_profile(lib.storage, name, folder, locks, threshold, str(form.get("notes") or ""), preset)
    reviews.record_activity(lib.catalog, identity.user, "style.create", spec.ref, f"{len(spec.references)} reference(s)")
    return spec


def edit_profile(lib: Library, identity: Identity, name: str, params: Any) -> Any:
    """The next version of a profile: the same references with the locks, threshold, notes and preset
    of `params` (a profile version is never changed)."""
    try:
        current = get_profile(lib.storage, name)
    except (ProfileNotFound, ValueError) as missing:
        raise NotFound(str(missing)) from None
    preset = str(params.get("preset") or "").strip() or None
    with tempfile.TemporaryDirectory(prefix="assetql-profile-") as tmp:
        folder = Path(tmp) / REFERENCES_DIR
        copy_profile_references(lib.storage, current, folder)
        spec = create_profile(lib.storage, current.name, folder, service.locks_from(params),
                              service.threshold_from(params), str(params.get("notes") or ""), preset)
    reviews.record_activity(lib.catalog, identity.user, "style.edit", spec.ref, f"from {current.ref}")
    return spec


# ---- new batches and quick generate ------------------------------------------------------------------------


def submit(lib: Library, identity: Identity, token: str) -> str:
    """Register the staged upload `token` as `identity` and launch its run; its partition key."""
    from assetql_dagster.pipeline.launching import submit_batch

    folder = service.upload_folder(lib, token, identity.user)
    try:
        key = submit_batch(lib.storage, folder, identity.user, None, lib.launcher, origin=UPLOAD_ORIGIN)
    except BatchValidationError as invalid:
        raise BadRequest("; ".join(str(p) for p in invalid.problems)[:2000]) from None
    service.discard_upload(lib, token)
    catalog_new(lib, key)
    reviews.record_activity(lib.catalog, identity.user, "batch.submit", key)
    return key


def catalog_new(lib: Library, key: str) -> None:
    """Catalog a batch just registered, as registered (no images yet), so the batches page lists it
    while its first run goes; the run's `catalog_entry` fills it in. A batch already catalogued (the
    same content submitted again) is left as it is."""
    from assetql_dagster.pipeline.cataloguing import catalog_records
    from assetql_dagster.pipeline.library_state import load_state
    from assetql_dagster.pipeline.registration import registered_batch

    if lib.catalog.get_batch(key) is None:
        catalog_records(lib.catalog, registered_batch(lib.storage, key), None, None, None, None, {}, {}, {}, {},
                        load_state(lib.storage, key))


def quick_generate(lib: Library, identity: Identity, prompt: str | None, more_of: str | None = None) -> str:
    """Start four variations of `prompt` (or four more of quick batch `more_of`); the key to show."""
    from assetql_dagster.pipeline.launching import quick_generate as start

    try:
        key = start(lib.storage, prompt or "", identity.user, lib.launcher, lib.config.default_style_profile,
                    lib.config.default_lora, more_of=more_of)
    except LookupError as missing:
        raise NotFound(str(missing)) from None
    except ValueError as problem:  # BatchValidationError included: every problem is in its message
        raise BadRequest(" ".join(str(problem).split())[:2000]) from None
    if more_of is None:
        catalog_new(lib, key)
    reviews.record_activity(lib.catalog, identity.user, "generate.more" if more_of else "generate.quick", key)
    return key


def quick_results(lib: Library, key: str) -> dict[str, Any]:
    """A quick batch's prompt, run progress and images by variation, in groups of four (one 2×2
    grid per "generate"), with empty places for the images still being made."""
    from assetql_dagster.pipeline.launching import QUICK_VARIATIONS
    from assetql_dagster.pipeline.versions import open_batch

    try:
        batch = open_batch(lib.storage, key)
    except LookupError as missing:
        raise NotFound(str(missing)) from None
    progress = service.batch_progress(lib, key)
    rows = lib.catalog.search(None, sort="name", limit=service.MAX_PAGE_SIZE, batch=key)
    order = {}
    try:
        order = {j.image_id: j.variation for j in read_record(lib.storage, key, "prompts").jobs}
    except FileNotFoundError:
        pass
    rows.sort(key=lambda r: order.get(r["image_id"], 0))
    planned = len(batch.rows) * batch.settings.variations
    running = progress is not None and progress.status in ACTIVE
    places: list[dict[str, Any] | None] = [*rows, *([None] * max(0, planned - len(rows)))] if running else list(rows)
    groups = [places[i:i + QUICK_VARIATIONS] for i in range(0, len(places), QUICK_VARIATIONS)]
    return {"key": key, "prompt": batch.rows[0].prompt if batch.rows else "", "progress": progress,
            "groups": groups, "running": running, "failed": progress is not None and progress.status == "failed"}
