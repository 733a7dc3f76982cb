"""Fixtures shared by the whole suite.

One embedded Temporal dev server serves the entire test session: starting one takes a fraction
of a second, but per-test servers would still dominate the suite's runtime, and workflows from
different tests are kept apart by unique workflow ids and task queues anyway.

The session fixture is sync on purpose: pytest-asyncio runs async fixtures in a per-function
loop here (``asyncio_default_fixture_loop_scope = "function"``), so a session-scoped async
fixture would need its own loop scope. Clients are bound to the loop that created them, which
is why ``temporal_client`` is function-scoped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from temporalio.client import Client

from soma.orchestrator.server import connect, managed_temporal
from soma.settings import Settings


@pytest.fixture(scope="session")
def temporal_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at the session's Temporal server (``temporal_address`` is set).

    ``home`` belongs to the server; tests that need their own state should
    ``model_copy(update={"home": tmp_path})``, which keeps the server address.
    """
    home = tmp_path_factory.mktemp("temporal-home")
    settings = Settings(home=home, temporal_address=None, temporal_namespace="default")
    with managed_temporal(settings) as address:
        yield settings.model_copy(update={"temporal_address": address})


@pytest.fixture(scope="session")
def temporal_address(temporal_settings: Settings) -> str:
    """``host:port`` of the session's Temporal server."""
    assert temporal_settings.temporal_address is not None
    return temporal_settings.temporal_address


@pytest.fixture
async def temporal_client(temporal_settings: Settings) -> Client:
    """A client on the session server, with the pydantic data converter Soma uses."""
    return await connect(temporal_settings)
