"""Shared fixtures: real PostgreSQL, Redis and S3-compatible servers on loopback.

A server that cannot start fails the requesting tests with what to install; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import boto3
import pytest

# tests/ has no __init__.py files, so make the harness importable however pytest imports us.
sys.path.insert(0, str(Path(__file__).parent))

from harness.postgres import HarnessUnavailable, running_postgres  # noqa: E402
from harness.redis_server import running_redis  # noqa: E402
from harness.s3_server import CREDENTIALS_ENV, running_s3_server  # noqa: E402


def _enter_or_fail(stack: contextlib.ExitStack, server: AbstractContextManager[str]) -> str:
    try:
        return stack.enter_context(server)
    except HarnessUnavailable as exc:
        reason = str(exc)
    # Failing outside the except block keeps pytest from printing the message twice.
    pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of database `assetql_test` on a fresh PostgreSQL cluster for this session."""
    with contextlib.ExitStack() as stack:
        yield _enter_or_fail(stack, running_postgres())


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint URL of a moto S3 server for this session, with dummy AWS credentials in the env."""
    with pytest.MonkeyPatch.context() as mp, contextlib.ExitStack() as stack:
        for name, value in CREDENTIALS_ENV.items():
            mp.setenv(name, value)
        mp.delenv("AWS_PROFILE", raising=False)
        yield _enter_or_fail(stack, running_s3_server())


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis database for the requesting module's Celery broker and result backend."""
    with contextlib.ExitStack() as stack:
        yield _enter_or_fail(stack, running_redis())


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str):
    """A boto3 S3 client talking to the session's S3 server."""
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def s3_bucket(s3_client) -> str:
    """A new, empty bucket with a unique name; the server is discarded with the session."""
    name = f"assetql-test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name
