"""Production storage: objects in an S3 bucket (or any S3-compatible endpoint)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from resources.cloudfront import signed_url
from resources.s3 import LIST_PAGE_SIZE, SIGV4_MAX_EXPIRY_S, S3Bucket, S3Connection, s3_uri
from resources.storage import (
    CDN_PUBLIC,
    CLOUDFRONT_SIGNED,
    S3_PRESIGNED,
    AssetStorage,
    check_key,
)

SSE_MODES = (None, "AES256", "aws:kms")
SHA256_METADATA = "sha256"  # sent as the x-amz-meta-sha256 header


class S3Storage(AssetStorage):
    """Objects under `prefix` in `bucket`, reached through the shared `connection`.

    Shareable links are S3 presigned URLs (at most 7 days), unless `cdn_base_url` names a CDN
    distribution serving the bucket's root: then links last up to any lifetime as CloudFront signed
    URLs when `cloudfront_key_pair_id` and `cloudfront_private_key` (bind both with `dg.EnvVar`) are
    set, and permanent links are plain CDN URLs, which work only where the distribution allows public
    reads.
    """

    connection: S3Connection
    bucket: str
    prefix: str = ""
    server_side_encryption: str | None = "AES256"
    sse_kms_key_id: str | None = None
    list_page_size: int = LIST_PAGE_SIZE
    cdn_base_url: str | None = None
    cloudfront_key_pair_id: str | None = None
    cloudfront_private_key: str | None = None

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

    def delete(self, keys: Iterable[str]) -> None:
        self.objects.delete(self._full_key(key) for key in keys)

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

    def _cdn_base(self) -> str | None:
        """`cdn_base_url` without its trailing slash, or None without a CDN."""
        if not self.cdn_base_url:
            return None
        parts = urlsplit(self.cdn_base_url)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(
                f"cdn_base_url {self.cdn_base_url[:200]!r} must be an http(s) URL of the CDN distribution "
                "serving the bucket, without query or fragment, e.g. 'https://d111111abcdef8.cloudfront.net'"
            )
        return self.cdn_base_url.rstrip("/")

    def _signs_with_cloudfront(self) -> bool:
        """Whether a complete CloudFront key pair is configured (a half-configured one is an error)."""
        given = {"cloudfront_key_pair_id": self.cloudfront_key_pair_id,
                 "cloudfront_private_key": self.cloudfront_private_key}
        missing = [name for name, value in given.items() if not value]
        if len(missing) == 1:
            raise ValueError(
                f"CloudFront signing needs both cloudfront_key_pair_id and cloudfront_private_key; "
                f"{missing[0]} is not set"
            )
        if missing:
            return False
        if self._cdn_base() is None:
            raise ValueError(
                "a CloudFront key pair is set but cdn_base_url is not; set it to the URL of the "
                "distribution that trusts the key pair"
            )
        return True

    def link_signing(self, expires_in_s: int | None) -> str:
        """CDN_PUBLIC when permanent, CLOUDFRONT_SIGNED with a key pair, else S3_PRESIGNED (at most 7 days)."""
        cdn = self._cdn_base()
        if expires_in_s is None:
            if cdn is None:
                raise ValueError(
                    "permanent links need a CDN: S3 presigned URLs last at most "
                    f"{SIGV4_MAX_EXPIRY_S}s (7 days, the SigV4 limit); set the storage's cdn_base_url to a "
                    "distribution that allows public reads, or give the links a lifetime"
                )
            return CDN_PUBLIC
        if self._signs_with_cloudfront():
            if isinstance(expires_in_s, bool) or not isinstance(expires_in_s, int) or expires_in_s < 1:
                raise ValueError(f"CloudFront signed link expiry {expires_in_s!r} must be a whole number of "
                                 "seconds, at least 1")
            return CLOUDFRONT_SIGNED
        if expires_in_s > SIGV4_MAX_EXPIRY_S:
            to_set = "cdn_base_url is set, so also set" if cdn else "set cdn_base_url,"
            raise ValueError(
                f"link expiry {expires_in_s}s is out of range for S3 presigned URLs: SigV4 allows at most "
                f"{SIGV4_MAX_EXPIRY_S}s (7 days); longer links need CloudFront signing: {to_set} "
                "cloudfront_key_pair_id and cloudfront_private_key"
            )
        return S3_PRESIGNED

    def link(self, key: str, expires_in_s: int | None) -> str:
        """A URL valid for `expires_in_s` seconds (None: permanently), made as `link_signing` says."""
        full_key = self._full_key(key)
        signing = self.link_signing(expires_in_s)
        if signing == S3_PRESIGNED:
            return self.objects.presigned_get(full_key, expires_in_s)
        url = f"{self._cdn_base()}/{quote(full_key)}"
        if signing == CDN_PUBLIC:
            return url
        expires_at = datetime.now(timezone.utc) + timedelta(seconds=expires_in_s)
        return signed_url(url, self.cloudfront_key_pair_id, self.cloudfront_private_key, expires_at)

    @property
    def links_are_local(self) -> bool:
        return False
