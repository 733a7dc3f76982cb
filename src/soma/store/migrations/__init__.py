"""Alembic migrations of the store; :meth:`soma.store.Store.open` upgrades to head."""
