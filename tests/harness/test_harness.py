import contextlib
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
from harness import postgres
from harness.postgres import HarnessUnavailable, find_bin_dir, running_postgres
from harness.s3_server import CREDENTIALS_ENV, running_s3_server


def _fake_bin_dir(root: Path, version: str) -> Path:
    bin_dir = root / version / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("initdb", "pg_ctl", "postgres"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(stat.S_IRWXU)
    return bin_dir


def _query_one(url: str, sql: str) -> tuple:
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def test_postgres_url_points_at_a_private_loopback_database(postgres_url):
    url = urlsplit(postgres_url)
    database, host, port = _query_one(
        postgres_url, "SELECT current_database(), host(inet_server_addr()), inet_server_port()"
    )
    assert (url.scheme, url.hostname, database) == ("postgresql", "127.0.0.1", "assetql_test")
    assert (host, port) == ("127.0.0.1", url.port)
    # The machine's own service, if any, listens on the default port; ours must not be it.
    assert port != 5432


def test_postgres_cluster_is_stopped_and_removed_after_use():
    with running_postgres() as url:
        cluster_dir = Path(_query_one(url, "SHOW data_directory")[0]).parent
        assert cluster_dir.is_dir()
    assert not cluster_dir.exists()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(url, connect_timeout=2).close()


def test_find_bin_dir_prefers_the_highest_installed_version(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for version in ("9", "16", "15"):
        _fake_bin_dir(tmp_path, version)
    assert find_bin_dir(tmp_path) == tmp_path / "16" / "bin"


def test_find_bin_dir_names_the_package_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HarnessUnavailable, match="initdb.*install Debian package 'postgresql'"):
        find_bin_dir(tmp_path)


def test_running_as_root_without_postgres_user_is_explained(monkeypatch):
    monkeypatch.setattr(postgres.os, "geteuid", lambda: 0)
    monkeypatch.setattr(postgres, "SYSTEM_USER", "assetql-no-such-user")
    with pytest.raises(HarnessUnavailable, match="refuses to run as root.*'assetql-no-such-user'"):
        with running_postgres():
            pass


def test_s3_endpoint_serves_buckets_with_dummy_credentials(s3_endpoint, s3_client, s3_bucket):
    assert urlsplit(s3_endpoint).hostname == "127.0.0.1"
    assert {k: os.environ[k] for k in CREDENTIALS_ENV} == CREDENTIALS_ENV
    names = [b["Name"] for b in s3_client.list_buckets()["Buckets"]]
    assert s3_bucket in names
    assert s3_client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_s3_server_is_terminated_after_use():
    with running_s3_server() as url:
        urllib.request.urlopen(url, timeout=5).close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
