"""Catalog fixtures: the catalog on SQLite (a file per test) and PostgreSQL (a database per test)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from resources.catalog import AssetCatalog, dispose_engine, sqlite_url_beside


@pytest.fixture
def postgres_catalog_url(postgres_url):
    """A new, empty database on the session's PostgreSQL server, dropped after the test."""
    name = f"catalog_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(postgres_url).set(drivername="postgresql+psycopg2"),
                          isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engine(url)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request, tmp_path):
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_catalog_url")
        return
    url = sqlite_url_beside(tmp_path / "data")
    yield url
    dispose_engine(url)


@pytest.fixture
def catalog(catalog_url) -> AssetCatalog:
    catalog = AssetCatalog(url=catalog_url)
    catalog.migrate()
    return catalog
