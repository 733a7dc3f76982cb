"""A worker on the session's Temporal server, with a store and workspaces of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client

from soma.models.protocol import Model
from soma.orchestrator.worker import build_worker
from soma.settings import Settings
from soma.store import Store


@dataclass
class Harness:
    settings: Settings
    client: Client
    store: Store
    models: dict[str, Model]


@pytest.fixture
def harness_settings(temporal_settings: Settings, tmp_path: Path) -> Settings:
    return temporal_settings.model_copy(
        update={"home": tmp_path, "task_queue": f"test-{uuid.uuid4().hex[:8]}"}
    )


@pytest.fixture
def store(harness_settings: Settings) -> Store:
    return Store.open(harness_settings.store_url)


@pytest.fixture
async def harness(
    harness_settings: Settings, temporal_client: Client, store: Store
) -> AsyncIterator[Harness]:
    """Runs a worker for the test; tests register models by name in ``harness.models``."""
    models: dict[str, Model] = {}
    lookup: Callable[[str], Model] = models.__getitem__
    worker = build_worker(temporal_client, harness_settings, store=store, models=lookup)
    async with worker:
        yield Harness(harness_settings, temporal_client, store, models)


# A gateway with the engine and a worker, for tests that drive projects over HTTP.
from tests.gateway.conftest import (  # noqa: E402
    engine_gateway,
    gateway_settings,
    model_table,
)

__all__ = ["Harness", "engine_gateway", "gateway_settings", "model_table"]
