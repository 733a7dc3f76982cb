"""Reliability fixtures: the gateway, telemetry and PostgreSQL fixtures of the suites they
come from, so these tests run real services the same way those suites do."""

from __future__ import annotations

# PostgreSQL: one database per session, one schema per test (see tests/store/conftest.py).
from tests.store.conftest import postgres_database, postgres_url  # noqa: F401

# The in-memory span exporter (installed once per process) and the logging reset.
from tests.telemetry.conftest import (  # noqa: F401
    _session_exporter,
    engine_gateway,
    gateway,
    gateway_settings,
    model_table,
    restore_logging,
    spans,
)
