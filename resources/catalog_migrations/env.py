"""Alembic environment of the asset catalog.

`AssetCatalog.migrate()` passes its open connection as `config.attributes["connection"]` (so its
SQLite settings and PostgreSQL migration lock apply); there is no alembic.ini at runtime. To write
the next revision by hand or with autogenerate:

    python -c "from alembic import command; from resources.catalog import _alembic_config as c; \
cfg = c(); cfg.set_main_option('sqlalchemy.url', 'sqlite:///data/catalog.sqlite3'); \
command.revision(cfg, 'what changed', autogenerate=True)"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from resources.catalog_models import Base, is_search_object

config = context.config
target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Autogenerate ignores the dialect-specific full-text objects, which revisions manage by hand."""
    return not is_search_object(name)


def _configure(**kwargs) -> None:
    context.configure(target_metadata=target_metadata, include_object=include_object, compare_type=True, **kwargs)


def _run(connection: Connection) -> None:
    # SQLite cannot ALTER most things in place; batch mode recreates tables for such revisions.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    _run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url"), poolclass=NullPool).connect() as connection:
        _run(connection)
