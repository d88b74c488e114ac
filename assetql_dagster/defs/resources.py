"""Resources per deployment: the embedded default (local files) or production (S3), from the environment."""

import os

import dagster as dg
from dagster_aws.s3 import S3Resource

from resources.clip import ClipEmbedder
from resources.generator import ImageGenerator
from resources.s3_storage import S3Storage
from resources.storage import AssetStorage, LocalStorage

DATA_DIR_ENV = "ASSETQL_DATA_DIR"
STORAGE_ENV = "ASSETQL_STORAGE"
S3_BUCKET_ENV = "ASSETQL_S3_BUCKET"
S3_PREFIX_ENV = "ASSETQL_S3_PREFIX"
S3_ENDPOINT_ENV = "ASSETQL_S3_ENDPOINT_URL"
S3_REGION_ENV = "ASSETQL_S3_REGION"
S3_SSE_ENV = "ASSETQL_S3_SSE"
S3_KMS_KEY_ENV = "ASSETQL_S3_KMS_KEY_ID"
STORAGE_KINDS = ("local", "s3")


def s3_client_resource() -> S3Resource:
    """The boto3 client the S3 drop sensor and S3 campaign sources use."""
    return S3Resource(
        endpoint_url=os.environ.get(S3_ENDPOINT_ENV) or None,
        region_name=os.environ.get(S3_REGION_ENV) or None,
    )


def s3_storage() -> S3Storage:
    """S3Storage configured from ASSETQL_S3_*.

    Keys given in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are bound as `dg.EnvVar`s, so the UI
    shows the variable names, never the secrets; without them boto3's default chain applies
    (shared config, instance or task role).
    """
    bucket = os.environ.get(S3_BUCKET_ENV)
    if not bucket:
        raise ValueError(f"{STORAGE_ENV}=s3 needs the bucket name in {S3_BUCKET_ENV}, which is not set")
    sse = os.environ.get(S3_SSE_ENV, "AES256")
    return S3Storage(
        bucket=bucket,
        prefix=os.environ.get(S3_PREFIX_ENV, ""),
        endpoint_url=os.environ.get(S3_ENDPOINT_ENV) or None,
        region_name=os.environ.get(S3_REGION_ENV) or None,
        server_side_encryption=None if sse.lower() in ("", "none") else sse,
        sse_kms_key_id=os.environ.get(S3_KMS_KEY_ENV) or None,
        aws_access_key_id=_secret("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY"),
    )


def _secret(name: str) -> dg.EnvVar | None:
    return dg.EnvVar(name) if os.environ.get(name) else None


def _resources(storage: AssetStorage) -> dict:
    return {"storage": storage, "generator": ImageGenerator(), "clip": ClipEmbedder(), "s3": s3_client_resource()}


def local_resources() -> dict:
    """The embedded default: files under ./data (or $ASSETQL_DATA_DIR), tiny models unless configured."""
    return _resources(LocalStorage(root=os.environ.get(DATA_DIR_ENV, "data")))


def production_resources() -> dict:
    """Assets, references and exports in S3 (see `s3_storage`)."""
    return _resources(s3_storage())


def resources_from_env() -> dict:
    """`local_resources()` or `production_resources()`, as $ASSETQL_STORAGE says."""
    kind = os.environ.get(STORAGE_ENV, "local")
    if kind not in STORAGE_KINDS:
        raise ValueError(f"{STORAGE_ENV}={kind!r} is not a storage kind; expected one of {STORAGE_KINDS}")
    return production_resources() if kind == "s3" else local_resources()
