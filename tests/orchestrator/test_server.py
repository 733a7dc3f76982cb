"""The embedded Temporal server: lifecycle, reuse across processes, and clear failures.

Lifecycle tests start their own server in a private home (they stop it, so they cannot share the
session server); everything else uses the session server from ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import temporalio.api.workflowservice.v1
from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from soma.orchestrator.server import (
    EmbeddedTemporal,
    TemporalServerError,
    connect,
    connect_patiently,
    managed_temporal,
    temporal_binary,
)
from soma.settings import Settings


def _settings(home: Path, address: str | None = None) -> Settings:
    """Settings that ignore any SOMA_TEMPORAL_* in the developer's environment."""
    return Settings(home=home, temporal_address=address, temporal_namespace="default")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Greeting(BaseModel):
    name: str
    times: int


@workflow.defn(sandboxed=False)
class EchoWorkflow:
    @workflow.run
    async def run(self, greeting: Greeting) -> Greeting:
        return Greeting(name=greeting.name.upper(), times=greeting.times + 1)


def test_binary_is_found() -> None:
    assert temporal_binary().is_file()


@pytest.mark.slow
async def test_lifecycle_start_reuse_stop(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    server = EmbeddedTemporal(settings)
    assert not server.status().running

    address = await asyncio.to_thread(server.start)
    status = server.status()
    assert status.running
    assert status.address == address
    assert address.startswith("127.0.0.1:")
    assert status.pid is not None
    assert status.started_at is not None
    assert status.db_path == tmp_path / "temporal" / "temporal.db"
    assert status.db_path.is_file()

    # A second manager (as a second CLI process would) reuses the server instead of starting one.
    again = await asyncio.to_thread(EmbeddedTemporal(settings).start)
    assert again == address
    assert EmbeddedTemporal(settings).status().pid == status.pid

    client = await connect(settings)
    assert [wf async for wf in client.list_workflows()] == []

    assert await asyncio.to_thread(server.stop)
    after = server.status()
    assert not after.running
    assert after.pid is None
    assert not server.state_path.exists()
    assert not await asyncio.to_thread(server.stop)  # nothing left to stop


@pytest.mark.slow
def test_stale_state_file_is_replaced(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    server = EmbeddedTemporal(settings)
    server.dir.mkdir(parents=True)
    dead = _dead_pid()
    stale = {
        "pid": dead,
        "address": f"127.0.0.1:{_closed_port()}",
        "started_at": "2020-01-01T00:00:00+00:00",
    }
    server.state_path.write_text(json.dumps(stale))
    assert not server.status().running

    with managed_temporal(settings) as address:
        status = server.status()
        assert status.running
        assert status.address == address
        assert status.pid != dead
    assert not server.status().running


@pytest.mark.slow
def test_concurrent_starts_share_one_server(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    addresses: list[str] = []

    def start() -> None:
        addresses.append(EmbeddedTemporal(settings).start())

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(addresses) == 3
        assert len(set(addresses)) == 1
    finally:
        assert EmbeddedTemporal(settings).stop()


def test_start_failure_shows_server_log(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    server = EmbeddedTemporal(settings)
    server.db_path.mkdir(parents=True)  # a directory where the SQLite file should go

    with pytest.raises(TemporalServerError) as excinfo:
        server.start(wait_s=20)
    assert "exited" in str(excinfo.value) or "not ready" in str(excinfo.value)
    assert str(server.log_path) in str(excinfo.value)
    assert not server.state_path.exists()
    assert not server.status().running


async def test_unreachable_explicit_address_fails_fast(tmp_path: Path) -> None:
    settings = _settings(tmp_path, f"127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    with pytest.raises(TemporalServerError, match="SOMA_TEMPORAL_ADDRESS"):
        await connect(settings, timeout_s=2)
    assert time.monotonic() - started < 5
    assert not (tmp_path / "temporal").exists()  # an explicit address never starts a server


async def test_unknown_namespace_is_reported(temporal_settings: Settings) -> None:
    settings = temporal_settings.model_copy(update={"temporal_namespace": "no-such-namespace"})
    with pytest.raises(TemporalServerError, match="no-such-namespace"):
        await connect(settings, timeout_s=5)


async def test_session_client_runs_a_pydantic_workflow(temporal_client: Client) -> None:
    queue = f"test-{uuid.uuid4()}"
    async with Worker(temporal_client, task_queue=queue, workflows=[EchoWorkflow]):
        result = await temporal_client.execute_workflow(
            EchoWorkflow.run,
            Greeting(name="soma", times=1),
            id=f"echo-{uuid.uuid4()}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=20),
        )
    assert result == Greeting(name="SOMA", times=2)


async def test_a_patient_connect_gives_up_after_its_patience(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(home=tmp_path, temporal_address=f"127.0.0.1:{port}")
    waits: list[float] = []
    with pytest.raises(TemporalServerError, match="cannot reach"):
        await connect_patiently(settings, patience_s=2.0, on_retry=lambda _, d: waits.append(d))
    assert waits[:2] == [0.5, 1.0]


async def test_a_patient_connect_waits_for_a_server_that_comes_up(
    temporal_settings: Settings, tmp_path: Path
) -> None:
    """The cluster is unreachable when the worker starts and reachable a second later (a
    proxy in front of the session's server opens late)."""
    assert temporal_settings.temporal_address is not None
    target_host, target_port = temporal_settings.temporal_address.rsplit(":", 1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            target_host, int(target_port)
        )
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def open_late() -> asyncio.Server:
        await asyncio.sleep(1.0)
        return await asyncio.start_server(forward, "127.0.0.1", port)

    opening = asyncio.create_task(open_late())
    settings = temporal_settings.model_copy(
        update={"home": tmp_path, "temporal_address": f"127.0.0.1:{port}"}
    )
    waits: list[float] = []
    client = await connect_patiently(
        settings, patience_s=30.0, on_retry=lambda _, d: waits.append(d)
    )
    proxy = await opening
    try:
        assert waits, "the first attempt found no server"
        await client.workflow_service.get_system_info(
            temporalio.api.workflowservice.v1.GetSystemInfoRequest()
        )
    finally:
        proxy.close()
