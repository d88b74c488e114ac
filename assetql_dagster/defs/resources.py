"""Resources per deployment: the embedded default (local files) or production (S3), from the environment."""

import os

import dagster as dg

from resources.catalog import CATALOG_URL_ENV, AssetCatalog, sqlite_url_beside
from resources.clip import ClipEmbedder
from resources.generator import ImageGenerator
from resources.cms import CmsConnections
from resources.translator import AwsTranslate
from resources.notifier import FORMATS, Notifier, base_url, is_http_url
from resources.s3 import S3Connection
from resources.s3_storage import S3Storage
from resources.storage import AssetStorage, LocalStorage
from resources.vision_tagger import VisionTagger

DATA_DIR_ENV = "ASSETQL_DATA_DIR"
STORAGE_ENV = "ASSETQL_STORAGE"
S3_BUCKET_ENV = "ASSETQL_S3_BUCKET"
S3_PREFIX_ENV = "ASSETQL_S3_PREFIX"
S3_ENDPOINT_ENV = "ASSETQL_S3_ENDPOINT_URL"
S3_REGION_ENV = "ASSETQL_S3_REGION"
S3_SSE_ENV = "ASSETQL_S3_SSE"
S3_KMS_KEY_ENV = "ASSETQL_S3_KMS_KEY_ID"
CDN_BASE_URL_ENV = "ASSETQL_CDN_BASE_URL"
CLOUDFRONT_KEY_PAIR_ID_ENV = "ASSETQL_CLOUDFRONT_KEY_PAIR_ID"
CLOUDFRONT_PRIVATE_KEY_ENV = "ASSETQL_CLOUDFRONT_PRIVATE_KEY"
BEDROCK_REGION_ENV = "ASSETQL_BEDROCK_REGION"
BEDROCK_ENDPOINT_ENV = "ASSETQL_BEDROCK_ENDPOINT_URL"
REMOTE_REGION_ENV = "ASSETQL_REMOTE_REGION"
SAGEMAKER_ENDPOINT_ENV = "ASSETQL_SAGEMAKER_ENDPOINT_URL"
TRANSLATE_REGION_ENV = "ASSETQL_TRANSLATE_REGION"
TRANSLATE_ENDPOINT_ENV = "ASSETQL_TRANSLATE_ENDPOINT_URL"
STORAGE_KINDS = ("local", "s3")
NOTIFY_WEBHOOK_ENV = "ASSETQL_NOTIFY_WEBHOOK_URL"
# More webhooks, one variable each (ASSETQL_NOTIFY_WEBHOOK_URL_OPS, ..._2): each is bound as its own
# `dg.EnvVar`, so the UI shows every name and no URL, which may hold a secret (Slack's do).
NOTIFY_WEBHOOKS_PREFIX = f"{NOTIFY_WEBHOOK_ENV}_"
WEBHOOK_SECRET_ENV = "ASSETQL_WEBHOOK_SECRET"
NOTIFY_FORMAT_ENV = "ASSETQL_NOTIFY_FORMAT"
DAGSTER_URL_ENV = "ASSETQL_DAGSTER_URL"
LIBRARY_URL_ENV = "ASSETQL_LIBRARY_URL"


def s3_connection() -> S3Connection:
    """The one S3 connection (ASSETQL_S3_ENDPOINT_URL, ASSETQL_S3_REGION) of S3 storage, the drop
    sensor and `s3://` campaign sources.

    Keys given in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are bound as `dg.EnvVar`s, so the UI
    shows the variable names, never the secrets; without them boto3's default chain applies
    (shared config, instance or task role).
    """
    return S3Connection(
        endpoint_url=os.environ.get(S3_ENDPOINT_ENV) or None,
        region_name=os.environ.get(S3_REGION_ENV) or None,
        aws_access_key_id=_secret("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY"),
    )


def s3_storage(connection: S3Connection) -> S3Storage:
    """S3Storage configured from ASSETQL_S3_*, reaching S3 through `connection`; shareable links go
    through the CDN at ASSETQL_CDN_BASE_URL when set, signed with the CloudFront key pair in
    ASSETQL_CLOUDFRONT_KEY_PAIR_ID / ASSETQL_CLOUDFRONT_PRIVATE_KEY (PEM text, bound as `dg.EnvVar`s)
    when those are set."""
    bucket = os.environ.get(S3_BUCKET_ENV)
    if not bucket:
        raise ValueError(f"{STORAGE_ENV}=s3 needs the bucket name in {S3_BUCKET_ENV}, which is not set")
    sse = os.environ.get(S3_SSE_ENV, "AES256")
    return S3Storage(
        connection=connection,
        bucket=bucket,
        prefix=os.environ.get(S3_PREFIX_ENV, ""),
        server_side_encryption=None if sse.lower() in ("", "none") else sse,
        sse_kms_key_id=os.environ.get(S3_KMS_KEY_ENV) or None,
        cdn_base_url=os.environ.get(CDN_BASE_URL_ENV) or None,
        cloudfront_key_pair_id=_secret(CLOUDFRONT_KEY_PAIR_ID_ENV),
        cloudfront_private_key=_secret(CLOUDFRONT_PRIVATE_KEY_ENV),
    )


def _secret(name: str) -> dg.EnvVar | None:
    return dg.EnvVar(name) if os.environ.get(name) else None


def asset_catalog(default_dir: str) -> AssetCatalog:
    """The asset catalog: $ASSETQL_CATALOG_URL (bound as a `dg.EnvVar`, so the UI shows the variable,
    never a password in the URL) when set, else an SQLite file `catalog.sqlite3` in `default_dir`."""
    if os.environ.get(CATALOG_URL_ENV):
        return AssetCatalog(url=dg.EnvVar(CATALOG_URL_ENV))
    return AssetCatalog(url=sqlite_url_beside(default_dir))


def vision_tagger() -> VisionTagger:
    """The Bedrock tagger batches with `tagger: bedrock` use: ASSETQL_BEDROCK_REGION (else boto3's
    region) and ASSETQL_BEDROCK_ENDPOINT_URL (else AWS's), with the AWS credentials bound as
    `dg.EnvVar`s like S3's, or boto3's default chain without them. Batches tagging locally never call it."""
    return VisionTagger(
        region_name=os.environ.get(BEDROCK_REGION_ENV) or None,
        endpoint_url=os.environ.get(BEDROCK_ENDPOINT_ENV) or None,
        aws_access_key_id=_secret("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY"),
    )


def image_generator() -> ImageGenerator:
    """The image generator; for `sagemaker:`/`bedrock:` models region $ASSETQL_REMOTE_REGION (else boto3's),
    endpoint URLs $ASSETQL_SAGEMAKER_ENDPOINT_URL and $ASSETQL_BEDROCK_ENDPOINT_URL (else AWS's), credentials
    bound as `dg.EnvVar`s like S3's, or boto3's default chain. Local models never use them."""
    return ImageGenerator(
        remote_region_name=os.environ.get(REMOTE_REGION_ENV) or None,
        sagemaker_endpoint_url=os.environ.get(SAGEMAKER_ENDPOINT_ENV) or None,
        bedrock_endpoint_url=os.environ.get(BEDROCK_ENDPOINT_ENV) or None,
        aws_access_key_id=_secret("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY"),
    )


def aws_translate() -> AwsTranslate:
    """Amazon Translate for batches with `translator: aws-translate`: ASSETQL_TRANSLATE_REGION (else
    boto3's region) and ASSETQL_TRANSLATE_ENDPOINT_URL, the AWS credentials bound as for S3. Other
    batches never call it."""
    return AwsTranslate(
        region_name=os.environ.get(TRANSLATE_REGION_ENV) or None,
        endpoint_url=os.environ.get(TRANSLATE_ENDPOINT_ENV) or None,
        aws_access_key_id=_secret("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY"),
    )


def webhook_envs() -> list[str]:
    """The set variables of webhook URLs: $ASSETQL_NOTIFY_WEBHOOK_URL, then each $ASSETQL_NOTIFY_WEBHOOK_URL_<NAME>."""
    names = [NOTIFY_WEBHOOK_ENV, *sorted(n for n in os.environ if n.startswith(NOTIFY_WEBHOOKS_PREFIX))]
    names = [name for name in names if os.environ.get(name)]
    # Checked now, so that a mistyped URL stops the code location loading instead of a later sensor
    # tick; the error names the variable but never shows the value.
    for name in names:
        if not is_http_url(os.environ[name]):
            raise ValueError(f"${name} must be an http(s) URL such as https://hooks.example/assetql; "
                             f"its value is not shown, since a webhook URL may be a secret")
    return names


def notifier() -> Notifier:
    """Where batch completion is notified: every webhook of `webhook_envs()` (each bound as a
    `dg.EnvVar`; with none, notifications are off), signed with $ASSETQL_WEBHOOK_SECRET (a
    `dg.EnvVar` too) when it is set, in $ASSETQL_NOTIFY_FORMAT (`json`, the default, or `slack`),
    linking to the run on $ASSETQL_DAGSTER_URL and to the batch on $ASSETQL_LIBRARY_URL when those are set."""
    form = os.environ.get(NOTIFY_FORMAT_ENV) or "json"
    if form not in FORMATS:
        raise ValueError(f"{NOTIFY_FORMAT_ENV}={form[:40]!r} is not a notification format; expected one of {FORMATS}")
    # Checked now, so that a mistyped URL stops the code location loading instead of a later sensor tick.
    ui_url = base_url(os.environ.get(DAGSTER_URL_ENV, ""), f"${DAGSTER_URL_ENV}")
    library_url = base_url(os.environ.get(LIBRARY_URL_ENV, ""), f"${LIBRARY_URL_ENV}")
    webhooks = webhook_envs()
    return Notifier(
        webhook_url=_secret(NOTIFY_WEBHOOK_ENV) or "",
        webhook_urls=[dg.EnvVar(name) for name in webhooks if name != NOTIFY_WEBHOOK_ENV],
        signing_secret=_secret(WEBHOOK_SECRET_ENV) or "",
        format=form, ui_url=ui_url, library_url=library_url,
    )


def _resources(storage: AssetStorage, s3: S3Connection, catalog: AssetCatalog) -> dict:
    return {
        "storage": storage, "generator": image_generator(), "clip": ClipEmbedder(), "s3": s3, "catalog": catalog,
        "vision_tagger": vision_tagger(), "notifier": notifier(),
        # CMS connections for the wordpress/contentful/strapi exporters' `upload: true`, from ASSETQL_* variables.
        "cms": CmsConnections.from_env(), "aws_translate": aws_translate(),
    }


def local_resources() -> dict:
    """The embedded default: files under ./data (or $ASSETQL_DATA_DIR), tiny models unless configured."""
    data_dir = os.environ.get(DATA_DIR_ENV, "data")
    return _resources(LocalStorage(root=data_dir), s3_connection(), asset_catalog(data_dir))


def production_resources() -> dict:
    """Assets, references and exports in S3 (see `s3_storage`), through the same connection as
    the drop sensor and campaign sources. The catalog is $ASSETQL_CATALOG_URL (PostgreSQL in
    production); without it, an SQLite file `catalog.sqlite3` in the working directory, which is
    fine for one machine but not shared between workers (set the variable there)."""
    s3 = s3_connection()
    return _resources(s3_storage(s3), s3, asset_catalog("."))


def resources_from_env() -> dict:
    """`local_resources()` or `production_resources()`, as $ASSETQL_STORAGE says."""
    kind = os.environ.get(STORAGE_ENV, "local")
    if kind not in STORAGE_KINDS:
        raise ValueError(f"{STORAGE_ENV}={kind!r} is not a storage kind; expected one of {STORAGE_KINDS}")
    return production_resources() if kind == "s3" else local_resources()
