"""boto3 clients of the AWS APIs AssetQL calls besides S3 (Bedrock, Translate, SageMaker), made one way."""

from __future__ import annotations

from typing import Any

import boto3
import dagster as dg
from botocore.config import Config
from botocore.exceptions import BotoCoreError
from pydantic import PrivateAttr


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


class AwsApi(dg.ConfigurableResource):
    """What every AWS API resource takes (bind credentials with `dg.EnvVar`, or leave them out for
    boto3's default chain) and its clients, each made on first use."""

    region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    max_attempts: int = 4
    timeout_s: float = 60.0

    _clients: dict = PrivateAttr(default_factory=dict)

    def api_client(self, service: str, endpoint_url: str | None, unavailable: type[Exception], what: str) -> Any:
        """The `service` client (at `endpoint_url` when given); `unavailable` naming `what` when boto3
        cannot make one (e.g. no region)."""
        if service not in self._clients:
            try:
                self._clients[service] = aws_client(service, self.region_name, endpoint_url, self.aws_access_key_id,
                                                    self.aws_secret_access_key, self.max_attempts, self.timeout_s)
            except BotoCoreError as exc:
                raise unavailable(f"no {what} client: {exc}") from exc
        return self._clients[service]
