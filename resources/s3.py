"""The one way AssetQL reaches S3 (or any S3-compatible endpoint).

`S3Connection` is the resource the code location binds once, as `s3`: storage, the drop sensor
and the campaign sources all get their client from it. `S3Bucket` is that client with a bucket
name: listing, HEAD, GET, PUT, DELETE, download, presigned links and lifecycle rules, with the not-found rule in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import PrivateAttr

# SigV4 signatures carry X-Amz-Expires, which S3 accepts from 1 second to 7 days.
SIGV4_MIN_EXPIRY_S = 1
SIGV4_MAX_EXPIRY_S = 7 * 24 * 3600
LIST_PAGE_SIZE = 1000  # the most ListObjectsV2 returns per page
DELETE_BATCH_SIZE = 1000  # the most keys one DeleteObjects request takes
# HEAD has no body, so a missing object is a bare 404 (NotFound on some S3-compatible servers);
# GET says NoSuchKey.
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")


def _is_not_found(error: ClientError) -> bool:
    return error.response["Error"]["Code"] in _NOT_FOUND


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


@dataclasses.dataclass(frozen=True)
class S3Object:
    """One listed object."""

    key: str
    etag: str  # without the quotes S3 wraps it in
    last_modified: datetime
    size: int


@dataclasses.dataclass(frozen=True)
class S3Bucket:
    """A bucket reached through `client`; keys are whole object keys, never prefixed here."""

    client: Any
    name: str

    def list(self, prefix: str, page_size: int = LIST_PAGE_SIZE) -> Iterator[S3Object]:
        """Every object whose key starts with `prefix`, following all pages, in key order."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix, PaginationConfig={"PageSize": page_size}
        )
        for page in pages:
            for obj in page.get("Contents", []):
                yield S3Object(obj["Key"], obj["ETag"].strip('"'), obj["LastModified"], obj["Size"])

    def head(self, key: str) -> dict | None:
        """The object's HEAD response (metadata, size, encryption), or None when it does not exist."""
        try:
            return self.client.head_object(Bucket=self.name, Key=key)
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise

    def read(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when it does not exist, like reading a local file."""
        try:
            return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        except ClientError as exc:
            if _is_not_found(exc):
                raise FileNotFoundError(f"{s3_uri(self.name, key)} does not exist") from exc
            raise

    def put(self, key: str, data: bytes, **args: Any) -> None:
        """Store `data` at `key`; `args` are further PutObject parameters (ContentType, Metadata, …)."""
        self.client.put_object(Bucket=self.name, Key=key, Body=data, **args)

    def upload(self, key: str, path: Path, **args: Any) -> None:
        """Stream the local file `path` to `key` (multipart when large); `args` as for `put`."""
        self.client.upload_file(str(path), self.name, key, ExtraArgs=args)

    def delete(self, keys: Iterable[str]) -> None:
        """Remove the objects at `keys` (missing ones are no error), DELETE_BATCH_SIZE per request."""
        keys = list(keys)
        for start in range(0, len(keys), DELETE_BATCH_SIZE):
            batch = [{"Key": key} for key in keys[start:start + DELETE_BATCH_SIZE]]
            answer = self.client.delete_objects(Bucket=self.name, Delete={"Objects": batch, "Quiet": True})
            # DeleteObjects answers 200 even when some keys failed (e.g. access denied); say which.
            if answer.get("Errors"):
                failed = "; ".join(f"{e['Key']}: {e['Code']} {e.get('Message', '')}".strip() for e in answer["Errors"][:5])
                raise OSError(f"could not delete {len(answer['Errors'])} object(s) of bucket {self.name}: {failed}")

    def lifecycle(self) -> list[dict]:
        """The bucket's lifecycle rules ([] when it has none)."""
        try:
            return self.client.get_bucket_lifecycle_configuration(Bucket=self.name)["Rules"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "NoSuchLifecycleConfiguration":
                return []
            raise

    def put_lifecycle(self, rules: list[dict]) -> None:
        """Replace the bucket's lifecycle rules with `rules`."""
        self.client.put_bucket_lifecycle_configuration(Bucket=self.name, LifecycleConfiguration={"Rules": rules})

    def download(self, key: str, path: Path) -> None:
        """Write the object to the local file `path`, whose folder must exist."""
        self.client.download_file(self.name, key, str(path))

    def presigned_get(self, key: str, expires_in_s: int) -> str:
        """A URL anyone can GET the object with for `expires_in_s` seconds."""
        if not SIGV4_MIN_EXPIRY_S <= expires_in_s <= SIGV4_MAX_EXPIRY_S:
            # boto3 would sign it anyway, and S3 would refuse the URL only when it is opened.
            raise ValueError(
                f"presigned URL expiry {expires_in_s}s is out of range: SigV4 signatures allow "
                f"{SIGV4_MIN_EXPIRY_S}s to {SIGV4_MAX_EXPIRY_S}s (7 days)"
            )
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.name, "Key": key}, ExpiresIn=expires_in_s
        )


class S3Connection(dg.ConfigurableResource):
    """Endpoint, region and credentials of S3; bind the credentials with `dg.EnvVar`.

    Without credentials boto3's default chain applies (environment, shared config, instance or
    task role).
    """

    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None

    _client: Any = PrivateAttr(default=None)

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use and shared by every bucket of this connection."""
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

    def bucket(self, name: str) -> S3Bucket:
        return S3Bucket(self.client, name)
