"""Alembic environment and revisions of the asset catalog (run by `AssetCatalog.migrate()`)."""
