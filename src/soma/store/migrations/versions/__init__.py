"""Alembic revisions, oldest first. Revisions are frozen: never import the ORM models here."""
