"""boto3 clients of the AWS APIs AssetQL calls besides S3 (Bedrock, Translate, SageMaker), made one way."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def aws_client(service: str, region_name: str | None, endpoint_url: str | None, aws_access_key_id: str | None,
               aws_secret_access_key: str | None, max_attempts: int, timeout_s: float) -> Any:
    """A `service` client with standard retries (`max_attempts` calls in all) and bounded timeouts;
    botocore's BotoCoreError when it cannot make one (e.g. no region)."""
    # Its own session: boto3's default one is shared by the process and keeps the credentials it
    # first found.
    return boto3.session.Session().client(
        service,
        region_name=region_name,
        endpoint_url=endpoint_url,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            read_timeout=timeout_s,
            connect_timeout=min(timeout_s, 10.0),
        ),
    )
