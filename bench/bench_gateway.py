"""Gateway overhead: ``/v1/chat/completions`` proxied to a zero-latency upstream.

    .venv/bin/python bench/bench_gateway.py [--requests 3000] [--seconds 4]

Processes on loopback: a minimal OpenAI-compatible upstream (a raw asyncio protocol on
uvloop that answers every request with the same ``chat.completion``), the gateway as
``soma serve`` runs it (``create_app(build_services(settings))``, uvicorn with uvloop and
httptools, no access log) with ``SOMA_MODEL=openai:bench`` pointing at the upstream, and this
process generating load. The same request goes straight to the upstream and through the
gateway, so the difference is what the gateway adds: authentication, rate limits and the token
quota, validation, conversion to and from our model types, and its own HTTP client hop.

(a) sequential requests (concurrency 1) give the added p50/p99 latency; (b) keep-alive
connections at concurrency 16 and 32 give requests/s. A second gateway process answers
``openai:bench`` with an in-process model, which separates the gateway's own cost from the cost
of its HTTP client hop to the upstream. The load is generated with raw asyncio sockets: an
httpx client costs several times the upstream's latency per request (printed for comparison),
and on a 2-core machine every cycle the client spends is taken from the servers.
Target: added p50 < 2 ms, p99 < 10 ms, >= 1,000 req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import httpx
import uvloop
from rich.console import Console

from _table import print_table

UPSTREAM_REPLY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi! How can I help you today?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
    }
).encode()

PATH = "/v1/chat/completions"
JSON = {"content-type": "application/json"}


def chat_body(model: str) -> bytes:
    return json.dumps(
        {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hi."},
            ],
            "max_tokens": 16,
        }
    ).encode()


# --- the upstream ------------------------------------------------------------------------------


class _Upstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive, just enough of it: headers, a Content-Length body, a fixed reply."""

    RESPONSE = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(UPSTREAM_REPLY)}\r\n\r\n".encode()
        + UPSTREAM_REPLY
    )

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = _content_length(self.buffer[:end])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            assert self.transport is not None
            self.transport.write(self.RESPONSE)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def serve_upstream() -> None:
    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(_Upstream, "127.0.0.1", 0)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()

    uvloop.run(run())


# --- the gateway -------------------------------------------------------------------------------


class InProcessModel:
    """``openai:bench`` answered inside the gateway: the gateway's cost without its client hop."""

    name = "openai:bench"

    def __init__(self) -> None:
        from soma.models.openai_compat import parse_completion

        self.reply = parse_completion(json.loads(UPSTREAM_REPLY), default_model="bench")

    async def complete(self, request: Any) -> Any:
        return self.reply

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        from soma.models.types import StreamChunk

        yield StreamChunk(response=self.reply)


def serve_gateway(upstream_port: int, home: str, in_process: bool) -> None:
    import uvicorn
    from pydantic import SecretStr

    from soma.gateway.app import build_services, create_app
    from soma.settings import Settings

    settings = Settings(
        home=Path(home),
        model="openai:bench",
        openai_base_url=f"http://127.0.0.1:{upstream_port}/v1",
        secret_key=SecretStr("bench-secret-key-of-enough-length-0123456789"),
        key_requests_per_min=10**9,
        tenant_requests_per_min=10**9,
        tenant_tokens_per_min=10**12,
        temporal_address=None,
    )
    model = InProcessModel()
    services = build_services(settings, models=(lambda spec: model) if in_process else None)
    identity = services.identity
    identity.create_tenant("bench", "Bench")
    user = identity.create_user("bench", "bench@bench.test", "developer")
    _, key = identity.create_key("bench", user.id, "bench key")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # connections made before uvicorn serves wait in the backlog
    config = uvicorn.Config(
        create_app(services),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )
    print(f"PORT {sock.getsockname()[1]} KEY {key}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def start(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """A server in its own process; its first output line says where it listens."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    process = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if not line or line[0] != "PORT":
        process.kill()
        raise RuntimeError(f"server {args[0]} did not start")
    return process, line


# --- the load ----------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection sending the same request again and again."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def call(self) -> None:
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected response: {head[:200]!r}")
        await self.reader.readexactly(_content_length(head))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def raw_request(port: int, model: str, key: str | None) -> bytes:
    body = chat_body(model)
    auth = f"authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST {PATH} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\n{auth}content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def sequential(call: Callable[[], Awaitable[None]], count: int) -> list[float]:
    for _ in range(min(300, count)):  # warm caches, pools and the JIT-less interpreter alike
        await call()
    clock = time.perf_counter
    latencies = []
    for _ in range(count):
        before = clock()
        await call()
        latencies.append(clock() - before)
    latencies.sort()
    return latencies


async def throughput(port: int, request: bytes, concurrency: int, seconds: float) -> float:
    connections = [Connection(port, request) for _ in range(concurrency)]
    for connection in connections:
        await connection.open()
        await connection.call()
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(connection: Connection) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await connection.call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        await connection.close()
    return done / elapsed


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def check(port: int, key: str) -> None:
    """One request through the SDK-shaped path, so a broken gateway fails loudly, not fast."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        reply = await client.post(
            PATH,
            content=chat_body("openai:bench"),
            headers={**JSON, "authorization": f"Bearer {key}"},
        )
        reply.raise_for_status()
        assert reply.json()["choices"][0]["message"]["content"] == "Hi! How can I help you today?"


def ms(values: list[float], fraction: float) -> float:
    return 1000.0 * percentile(values, fraction)


Gateway = tuple[int, str]  # port, API key


async def measure(
    upstream: int, gateways: tuple[Gateway, Gateway], count: int, seconds: float
) -> list[tuple[object, ...]]:
    """Rows of (workload, direct, via gateway, added, gateway with in-process model, target)."""
    for port, key in gateways:
        await check(port, key)
    ports = (upstream, *(port for port, _ in gateways))
    requests = (
        raw_request(upstream, "bench", None),
        *(raw_request(port, "openai:bench", key) for port, key in gateways),
    )
    latencies = []
    for port, request in zip(ports, requests, strict=True):
        connection = Connection(port, request)
        await connection.open()
        latencies.append(await sequential(connection.call, count))
        await connection.close()
    direct, via, inside = latencies

    rows: list[tuple[object, ...]] = []
    for label, fraction, target in (("p50", 0.5, "added < 2 ms"), ("p99", 0.99, "added < 10 ms")):
        d, g, i = ms(direct, fraction), ms(via, fraction), ms(inside, fraction)
        rows.append(
            (
                f"{label} latency, 1 connection (ms)",
                f"{d:.3f}",
                f"{g:.3f}",
                f"{g - d:.3f}",
                f"{i:.3f}",
                target,
            )
        )
    async with httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{upstream}{PATH}"
        body = chat_body("bench")

        async def httpx_call() -> None:
            (await client.post(url, content=body, headers=JSON)).raise_for_status()

        with_httpx = await sequential(httpx_call, count // 2)
    rows.append(
        ("p50 with httpx as the load client (ms)", f"{ms(with_httpx, 0.5):.3f}", "", "", "", "")
    )
    for concurrency in (16, 32):
        rates = [
            await throughput(port, request, concurrency, seconds)
            for port, request in zip(ports, requests, strict=True)
        ]
        rows.append(
            (
                f"req/s, {concurrency} connections",
                f"{rates[0]:,.0f}",
                f"{rates[1]:,.0f}",
                "",
                f"{rates[2]:,.0f}",
                ">= 1,000 req/s",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000, help="sequential requests per path")
    parser.add_argument("--seconds", type=float, default=4.0, help="per throughput run")
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream()
        return
    if args.serve_gateway:
        port, home, mode = args.serve_gateway
        serve_gateway(int(port), home, in_process=mode == "in-process")
        return

    processes: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="soma-bench-gw-") as home:
        try:
            upstream, line = start("--serve-upstream")
            processes.append(upstream)
            upstream_port = int(line[1])
            ports, keys = [], []
            for mode in ("proxy", "in-process"):
                gateway, line = start(
                    "--serve-gateway", str(upstream_port), str(Path(home) / mode), mode
                )
                processes.append(gateway)
                ports.append(int(line[1]))
                keys.append(line[3])
            gateways = ((ports[0], keys[0]), (ports[1], keys[1]))
            rows = uvloop.run(measure(upstream_port, gateways, args.requests, args.seconds))
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)
    print_table(
        "Gateway overhead: /v1/chat/completions to a zero-latency upstream (openai:bench)",
        ["workload", "direct", "via gateway", "added", "model in gateway", "target"],
        rows,
    )
    Console().print(
        f"[dim]Notes: {os.cpu_count()} cores shared by the load generator, the gateway and the "
        "upstream (separate processes), so the client's CPU time is taken from the servers and "
        "req/s is a floor. 'model in gateway' answers openai:bench inside the gateway process "
        "(no upstream hop): the gateway's own cost; the gap to 'via gateway' is the cost of its "
        "HTTP client (aiohttp) to the upstream. Load: raw asyncio sockets, keep-alive; httpx as "
        "the load client would add the latency shown.[/dim]"
    )


if __name__ == "__main__":
    main()
