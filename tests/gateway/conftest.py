"""A live gateway per test: a real uvicorn server on a loopback port, in its own thread.

Served from a thread (not the test's event loop) so that synchronous clients, like the official
``openai`` SDK's ``OpenAI``, can be used against it without blocking the server.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from soma.gateway.app import build_services, create_app
from soma.gateway.services import Services
from soma.identity.permissions import Permission, Role
from soma.models.protocol import Model
from soma.settings import Settings


@dataclass
class LiveGateway:
    url: str
    services: Services
    _tenants: set[str] = field(default_factory=set)

    def key(
        self,
        tenant: str = "acme",
        role: Role = "admin",
        *,
        scopes: list[Permission] | None = None,
        email: str | None = None,
    ) -> str:
        """A fresh user of ``role`` in ``tenant`` (created if needed) and an API key of theirs."""
        identity = self.services.identity
        if tenant not in self._tenants:
            identity.create_tenant(tenant, tenant.title())
            self._tenants.add(tenant)
        user = identity.create_user(
            tenant, email or f"{role}-{uuid.uuid4().hex[:6]}@{tenant}.test", role
        )
        _, secret = identity.create_key(tenant, user.id, f"{role} key", scopes=scopes)
        return secret

    def headers(self, tenant: str = "acme", role: Role = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(tenant, role)}"}


def serve_in_thread(app: FastAPI) -> tuple[str, Callable[[], None]]:
    """Start ``app`` on 127.0.0.1:<free port>; returns its base URL and a stop function."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        access_log=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]

    def stop() -> None:
        server.should_exit = True
        thread.join(30)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture
def gateway_settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        secret_key=SecretStr("test-secret-key-of-enough-length-0123456789"),
        model="scripted",
        temporal_address=None,
    )


@pytest.fixture
def model_table() -> dict[str, Model]:
    """Models the gateway resolves by spec; tests put their doubles here."""
    return {}


@pytest.fixture
def gateway(gateway_settings: Settings, model_table: dict[str, Model]) -> Iterator[LiveGateway]:
    """A gateway without the durable engine: project changes answer 503, all else works."""
    services = build_services(gateway_settings, models=model_table.__getitem__)
    url, stop = serve_in_thread(create_app(services))
    try:
        yield LiveGateway(url, services)
    finally:
        stop()


@pytest.fixture
def engine_gateway(
    temporal_settings: Settings, tmp_path: Path, model_table: dict[str, Model]
) -> Iterator[LiveGateway]:
    """A gateway connected to the session's Temporal server, running its own worker."""
    settings = temporal_settings.model_copy(
        update={
            "home": tmp_path,
            "task_queue": f"gw-{uuid.uuid4().hex[:8]}",
            "secret_key": SecretStr("test-secret-key-of-enough-length-0123456789"),
            "model": "synthetic",
        }
    )
    services = build_services(settings, models=model_table.__getitem__)
    url, stop = serve_in_thread(create_app(services, engine=True, worker=True))
    try:
        yield LiveGateway(url, services)
    finally:
        stop()
