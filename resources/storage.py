"""Where batch inputs, images and exports live.

Assets only talk to `AssetStorage`; `LocalStorage` (the embedded default) and `S3Storage`
(production) implement it, so switching is a change of resource binding, not of asset code.
Keys are POSIX-style relative paths following the bucket layout of the design:
`raw/{batch}/…`, `thumbnails/{batch}/…`, `exports/{batch}/…`, `style-references/{batch}/…`,
plus `batches/{batch}/…` for the per-stage records.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

import dagster as dg

# The process umask, read once at import: os.umask can only be read by setting it, so it is set
# and immediately restored here, before any threads of ours write files.
_UMASK = os.umask(0)
os.umask(_UMASK)
# Stored files get the usual mode for new files (0o666 minus the umask); tempfile.mkstemp alone
# would leave every object and export readable by its writer only (0o600).
FILE_MODE = 0o666 & ~_UMASK

# How `AssetStorage.link` makes a URL, as `link_signing` reports it and the links manifest names it.
LOCAL_LINKS = "local"  # file URIs on the machine holding the storage
S3_PRESIGNED = "s3-presigned"  # SigV4 presigned S3 GET URLs, at most 7 days
CLOUDFRONT_SIGNED = "cloudfront-signed"  # CDN URLs signed with a CloudFront key pair (canned policy)
CDN_PUBLIC = "cdn-public"  # plain CDN URLs that never expire; the distribution must allow public reads


def write_atomically(path: Path, fill: Callable[[BinaryIO], object]) -> Path:
    """Write `path` through `fill(file)`, all or nothing, with the usual mode for new files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write to a uniquely named sibling temp file and rename: a crash mid-write never leaves a
    # torn file that a resumed run would mistake for a complete image, and concurrent writers
    # of the same key never share a temp file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)
            fill(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_key(key: str) -> str:
    """Reject keys that could escape the storage root or are ambiguous."""
    if not key or key.startswith("/") or "\\" in key:
        raise ValueError(f"storage key {key!r} must be a non-empty relative POSIX path")
    # Split by hand: PurePosixPath would normalise "a/./b" and "a//b" to "a/b", which S3 does not.
    if any(p in ("", ".", "..") for p in key.split("/")) or any(ord(c) < 32 or c == "\x7f" for c in key):
        raise ValueError(f"storage key {key!r} must not contain '.', '..' or control characters")
    return key


class AssetStorage(dg.ConfigurableResource):
    """Interface every storage backend implements."""

    def write_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        """Store `data` at `key` (replacing it) and return the object's URI."""
        raise NotImplementedError(type(self).__name__)

    def read_bytes(self, key: str) -> bytes:
        raise NotImplementedError(type(self).__name__)

    def exists(self, key: str) -> bool:
        raise NotImplementedError(type(self).__name__)

    def sizes(self, prefix: str) -> dict[str, int]:
        """Every key under `prefix` with its size in bytes, in key order (one listing, no reads)."""
        raise NotImplementedError(type(self).__name__)

    def delete(self, keys: Iterable[str]) -> None:
        """Remove the objects at `keys`; keys that do not exist are skipped."""
        raise NotImplementedError(type(self).__name__)

    def list_keys(self, prefix: str) -> list[str]:
        """All keys under `prefix`, sorted."""
        return list(self.sizes(prefix))

    def uri(self, key: str) -> str:
        raise NotImplementedError(type(self).__name__)

    def link(self, key: str, expires_in_s: int | None) -> str:
        """A URL a person can open for `expires_in_s` seconds (None: permanently), as `link_signing` says."""
        raise NotImplementedError(type(self).__name__)

    def link_signing(self, expires_in_s: int | None) -> str:
        """How `link` makes URLs of this lifetime (LOCAL_LINKS here); ValueError if it cannot make them."""
        return LOCAL_LINKS

    @property
    def links_are_local(self) -> bool:
        return True

    def write_file(self, key: str, path: Path, content_type: str | None = None) -> str:
        """Store a local file; backends override this to stream instead of reading it whole."""
        return self.write_bytes(key, Path(path).read_bytes(), content_type)

    def write_text(self, key: str, text: str, content_type: str = "text/plain; charset=utf-8") -> str:
        return self.write_bytes(key, text.encode("utf-8"), content_type)

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")


class LocalStorage(AssetStorage):
    """Files under a local root directory (default `./data`)."""

    root: str = "data"

    def _path(self, key: str) -> Path:
        return Path(self.root).resolve() / check_key(key)

    def _write_atomically(self, key: str, fill: Callable[[BinaryIO], object]) -> str:
        return write_atomically(self._path(key), fill).as_uri()

    def write_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        return self._write_atomically(key, lambda fh: fh.write(data))

    def write_file(self, key: str, path: Path, content_type: str | None = None) -> str:
        with open(path, "rb") as source:
            return self._write_atomically(key, lambda fh: shutil.copyfileobj(source, fh))

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def sizes(self, prefix: str) -> dict[str, int]:
        root = Path(self.root).resolve()
        base = root / prefix if prefix else root
        if not base.exists():
            return {}
        found = {
            p.relative_to(root).as_posix(): p.stat().st_size
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".part")
        }
        return dict(sorted(found.items()))

    def delete(self, keys: Iterable[str]) -> None:
        root = Path(self.root).resolve()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            # Empty folders left behind would show up as batches that still have images.
            for folder in path.parents:
                if folder == root or not folder.is_relative_to(root):
                    break
                # rmdir removes only an empty folder, so a file another writer just added keeps it.
                try:
                    folder.rmdir()
                except FileNotFoundError:
                    continue  # a missing key's folder may be gone already
                except OSError:
                    break  # not empty: it and every folder above it stay

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def link(self, key: str, expires_in_s: int | None) -> str:
        # File URIs do not expire; the lifetime matters only to storages that sign.
        return self.uri(key)

    def local_path(self, key: str) -> Path:
        return self._path(key)
