"""Finding images in the catalog: the search behind `assetql search` and the asset library.

`find` adds to `AssetCatalog.search` what needs a model or storage: "more like this" from a
catalogued asset or an image file (`like`), and a text description (`describe`), both through the
CLIP model the pipeline tags with, so queries land in the catalogued embeddings' space.
`contact_sheet_html` turns results into a self-contained page.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from assetql_dagster.domain.export_writers import gallery_html, write_manifest_csv
from assetql_dagster.domain.batch_loader import MAX_REFERENCE_BYTES, MAX_REFERENCE_PIXELS
from resources.catalog import AssetCatalog
from resources.storage import AssetStorage

MAX_DESCRIPTION_CHARS = 500
# What `--format csv` and `--format json` show of each result, in order.
RESULT_COLUMNS = (
    "id", "batch_key", "image_id", "file_name", "current_version", "verdict", "review", "style_score", "category",
    "subcategory", "category_source", "tags", "width", "height", "file_size", "format", "language", "sku",
    "prompt", "raw_key", "thumb_key", "created_at",
)


def find(
    catalog: AssetCatalog,
    clip: Callable[[], Any],
    query: str | None = None,
    *,
    like: str | None = None,
    describe: str | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Catalog search (`AssetCatalog.search` options), ranked by similarity with `like` or `describe`.

    `like` is a catalog asset id (`{batch}/{image_id}`, left out of its own results) or the path of
    an image file; `describe` is text. `clip()` returns the loaded CLIP model (called only when an
    embedding has to be computed).
    """
    if like is not None and describe is not None:
        raise ValueError("give either `like` (an asset or image) or `describe` (text), not both")
    if like is not None:
        vector, model, exclude = like_embedding(catalog, clip, like)
        return catalog.search(query, like=vector, like_model=model, exclude=exclude, **options)
    if describe is not None:
        text = " ".join(str(describe).split())
        if not text or len(text) > MAX_DESCRIPTION_CHARS:
            raise ValueError(
                f"--describe must be 1 to {MAX_DESCRIPTION_CHARS} characters of text, got {len(text)}"
            )
        model = clip()
        _check_catalogued(catalog, model.embedding_model)
        return catalog.search(query, like=model.embed_texts([text])[0], like_model=model.embedding_model, **options)
    return catalog.search(query, **options)


def like_embedding(catalog: AssetCatalog, clip: Callable[[], Any], like: str) -> tuple[Any, str, str | None]:
    """(embedding, model, asset id to leave out) of `like`: a catalogued asset, else an image file."""
    stored = catalog.embedding(like)
    if stored is not None:
        return stored[0], stored[1], like
    if catalog.get_asset(like) is not None:
        raise ValueError(f"asset {like!r} has no embedding in the catalog (it was catalogued before it was tagged)")
    path = Path(like)
    if not path.is_file():
        raise ValueError(
            f"--like {like[:200]!r} is neither a catalogued asset id (batch/image_id) nor an image file"
        )
    return (*_image_embedding(catalog, clip, path), None)


def _image_embedding(catalog: AssetCatalog, clip: Callable[[], Any], path: Path) -> tuple[Any, str]:
    # A query image is held to the limits of a style reference: bytes first, pixels from the header,
    # and only then decoded.
    name = str(path)[:200]
    if path.stat().st_size > MAX_REFERENCE_BYTES:
        raise ValueError(f"--like {name!r} is {path.stat().st_size:,} bytes, over the limit of {MAX_REFERENCE_BYTES:,}")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_REFERENCE_PIXELS:
                raise ValueError(
                    f"--like {name!r} is {img.width}x{img.height} px, over the limit of {MAX_REFERENCE_PIXELS:,} pixels"
                )
            rgb = img.convert("RGB")
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"--like {name!r} cannot be read as an image ({err})") from err
    model = clip()
    _check_catalogued(catalog, model.embedding_model)
    return model.embed_images([rgb])[0], model.embedding_model


def _check_catalogued(catalog: AssetCatalog, model: str) -> None:
    models = catalog.embedding_models()
    if model not in models:
        known = ", ".join(f"{m} ({n})" for m, n in sorted(models.items())) or "none"
        raise ValueError(
            f"no catalogued image has embeddings of CLIP model {model!r} (catalogued models: {known}); "
            "tag images with this model, or configure the model they were tagged with"
        )


def results_csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Search results as CSV (spreadsheet-safe cells), with `similarity` when ranked by it."""
    columns = list(RESULT_COLUMNS) + (["similarity"] if rows and "similarity" in rows[0] else [])
    return write_manifest_csv(rows, columns)


def results_json(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    keep = list(RESULT_COLUMNS) + ["extra", "similarity"]
    return [{k: row[k] for k in keep if k in row} for row in rows]


def contact_sheet_html(storage: AssetStorage, rows: Sequence[Mapping[str, Any]], title: str,
                       link_expiry_s: int = 7 * 24 * 3600) -> str:
    """A self-contained page of the results: thumbnails inline, each linking to its full image."""
    def thumb(row: Mapping[str, Any]) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(storage.read_bytes(row["thumb_key"])).decode("ascii")

    shown = [{**row, "prompt": _caption(row)} for row in rows]
    return gallery_html(
        {"search": title, "results": len(rows)}, shown,
        image_href=lambda row: storage.link(row["raw_key"], link_expiry_s), thumb_src=thumb,
        title=title,
    )


def _caption(row: Mapping[str, Any]) -> str:
    where = f"{row['batch_key']} · {row.get('category') or 'uncategorised'}"
    if row.get("subcategory"):
        where += f"/{row['subcategory']}"
    similarity = f" · similarity {row['similarity']:.3f}" if "similarity" in row else ""
    return f"{where}{similarity} — {row.get('prompt', '')}"
