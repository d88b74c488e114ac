"""Production storage: objects in an S3 bucket (or any S3-compatible endpoint)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import PrivateAttr

from assetql_dagster.domain.links import validate_expiry
from resources.storage import AssetStorage, check_key

SSE_MODES = (None, "AES256", "aws:kms")
SHA256_METADATA = "sha256"  # sent as the x-amz-meta-sha256 header
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")


def is_not_found(error: ClientError) -> bool:
    """Whether an S3 call failed because the object does not exist (HEAD says 404, GET NoSuchKey)."""
    return error.response["Error"]["Code"] in _NOT_FOUND


class S3Storage(AssetStorage):
    """Objects under `prefix` in `bucket`; bind the credentials with `dg.EnvVar`."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    server_side_encryption: str | None = "AES256"
    sse_kms_key_id: str | None = None
    list_page_size: int = 1000

    _client: Any = PrivateAttr(default=None)

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use."""
        if self._client is None:
            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region_name,
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
                # SigV4 everywhere: SSE-KMS objects can only be fetched through SigV4 links.
                config=Config(signature_version="s3v4", retries={"mode": "standard"}),
            )
        return self._client

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

    def _head(self, full_key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=full_key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise

    def _is_stored(self, full_key: str, digest: str) -> bool:
        """Whether the object at `full_key` already holds the content hashing to `digest`."""
        head = self._head(full_key)
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
            self.client.put_object(
                Bucket=self.bucket, Key=full_key, Body=data, **self._put_args(content_type, digest)
            )
        return self.uri(key)

    def write_file(self, key: str, path: Path, content_type: str | None = None) -> str:
        """Stream a local file to `key` (multipart when large); an identical object is left untouched."""
        full_key = self._full_key(key)
        with Path(path).open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if not self._is_stored(full_key, digest):
            self.client.upload_file(
                str(path), self.bucket, full_key, ExtraArgs=self._put_args(content_type, digest)
            )
        return self.uri(key)

    def read_bytes(self, key: str) -> bytes:
        full_key = self._full_key(key)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=full_key)["Body"].read()
        except ClientError as exc:
            if is_not_found(exc):
                # Same exception as LocalStorage, so callers handle a missing object once.
                raise FileNotFoundError(f"{self.uri(key)} does not exist") from exc
            raise

    def exists(self, key: str) -> bool:
        return self._head(self._full_key(key)) is not None

    def list_keys(self, prefix: str) -> list[str]:
        """Sorted keys under the folder `prefix` ("" for all), relative to the storage prefix."""
        base = self.prefix.strip("/")
        folder = self._full_key(prefix.rstrip("/")) if prefix else base
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            # The trailing slash makes "raw/b1" match "raw/b1/x" but not "raw/b10/x", like a folder.
            Prefix=f"{folder}/" if folder else "",
            PaginationConfig={"PageSize": self.list_page_size},
        )
        strip = len(base) + 1 if base else 0
        return sorted(obj["Key"][strip:] for page in pages for obj in page.get("Contents", []))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full_key(key)}"

    def link(self, key: str, expires_in_s: int) -> str:
        """A presigned GET URL valid for `expires_in_s` seconds (1 hour to 7 days)."""
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._full_key(key)},
            ExpiresIn=validate_expiry(expires_in_s),
        )

    @property
    def links_are_local(self) -> bool:
        return False

