"""Revisions of the asset catalog schema."""
