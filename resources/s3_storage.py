"""Production storage: objects in an S3 bucket (or any S3-compatible endpoint)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from resources.s3 import LIST_PAGE_SIZE, S3Bucket, S3Connection, s3_uri
from resources.storage import AssetStorage, check_key

SSE_MODES = (None, "AES256", "aws:kms")
SHA256_METADATA = "sha256"  # sent as the x-amz-meta-sha256 header


class S3Storage(AssetStorage):
    """Objects under `prefix` in `bucket`, reached through the shared `connection`."""

    connection: S3Connection
    bucket: str
    prefix: str = ""
    server_side_encryption: str | None = "AES256"
    sse_kms_key_id: str | None = None
    list_page_size: int = LIST_PAGE_SIZE

    @property
    def objects(self) -> S3Bucket:
        """The storage bucket; keys passed to it are full keys, prefix included."""
        return self.connection.bucket(self.bucket)

    def _full_key(self, key: str) -> str:
        check_key(key)
        base = self.prefix.strip("/")
        return f"{check_key(base)}/{key}" if base else key

    def _encryption_args(self) -> dict[str, str]:
        if self.server_side_encryption not in SSE_MODES:
            raise ValueError(
                f"server_side_encryption {self.server_side_encryption!r} must be one of {SSE_MODES}"
            )
        if self.sse_kms_key_id and self.server_side_encryption != "aws:kms":
            raise ValueError(
                f"sse_kms_key_id is set but server_side_encryption is "
                f"{self.server_side_encryption!r}; expected 'aws:kms'"
            )
        args = {}
        if self.server_side_encryption:
            args["ServerSideEncryption"] = self.server_side_encryption
        if self.sse_kms_key_id:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args

    def _is_stored(self, full_key: str, digest: str) -> bool:
        """Whether the object at `full_key` already holds the content hashing to `digest`."""
        head = self.objects.head(full_key)
        return bool(head) and head.get("Metadata", {}).get(SHA256_METADATA) == digest

    def _put_args(self, content_type: str | None, digest: str) -> dict[str, Any]:
        return {
            "ContentType": content_type or "application/octet-stream",
            "Metadata": {SHA256_METADATA: digest},
            **self._encryption_args(),
        }

    def write_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        """Store `data` at `key`; an identical object already there is left untouched."""
        full_key = self._full_key(key)
        digest = hashlib.sha256(data).hexdigest()
        # A retried step rewrites the same bytes; skipping the PUT keeps versioned buckets
        # from growing a new version (and its storage cost) per retry.
        if not self._is_stored(full_key, digest):
            self.objects.put(full_key, data, **self._put_args(content_type, digest))
        return self.uri(key)

    def write_file(self, key: str, path: Path, content_type: str | None = None) -> str:
        """Stream a local file to `key` (multipart when large); an identical object is left untouched."""
        full_key = self._full_key(key)
        with Path(path).open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if not self._is_stored(full_key, digest):
            self.objects.upload(full_key, path, **self._put_args(content_type, digest))
        return self.uri(key)

    def read_bytes(self, key: str) -> bytes:
        # A missing object raises FileNotFoundError, as with LocalStorage, so callers handle it once.
        return self.objects.read(self._full_key(key))

    def exists(self, key: str) -> bool:
        return self.objects.head(self._full_key(key)) is not None

    def sizes(self, prefix: str) -> dict[str, int]:
        """Keys under the folder `prefix` ("" for all), relative to the storage prefix, with sizes."""
        base = self.prefix.strip("/")
        folder = self._full_key(prefix.rstrip("/")) if prefix else base
        # The trailing slash makes "raw/b1" match "raw/b1/x" but not "raw/b10/x", like a folder.
        listed = self.objects.list(f"{folder}/" if folder else "", self.list_page_size)
        strip = len(base) + 1 if base else 0
        return dict(sorted((obj.key[strip:], obj.size) for obj in listed))

    def uri(self, key: str) -> str:
        return s3_uri(self.bucket, self._full_key(key))

    def link(self, key: str, expires_in_s: int) -> str:
        """A presigned GET URL valid for `expires_in_s` seconds (at most 7 days, the SigV4 limit)."""
        return self.objects.presigned_get(self._full_key(key), expires_in_s)

    @property
    def links_are_local(self) -> bool:
        return False
