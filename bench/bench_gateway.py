"""Gateway overhead: ``/v1/chat/completions`` proxied to a zero-latency upstream.

    .venv/bin/python bench/bench_gateway.py [--requests 3000] [--seconds 4]

Three processes on loopback: a minimal OpenAI-compatible upstream (a raw asyncio protocol on
uvloop that answers every request with the same ``chat.completion``), the gateway as
``soma serve`` runs it (``create_app(build_services(settings))``, uvicorn with uvloop and
httptools, no access log) with ``SOMA_MODEL=openai:bench`` pointing at the upstream, and this
process generating load. The same request goes straight to the upstream and through the
gateway, so the difference is what the gateway adds: authentication, rate limits and the token
quota, validation, conversion to and from our model types, and its own HTTP client hop.

(a) sequential requests (concurrency 1) give the added p50/p99 latency; (b) keep-alive
connections at concurrency 16 and 32 give requests/s. The load is generated with raw asyncio
sockets: an httpx client costs more CPU per request than the gateway itself (its figures are
printed for comparison), and on a 2-core machine every cycle the client spends is taken from
the servers. Target: added p50 < 2 ms, p99 < 10 ms, >= 1,000 req/s.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

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


def serve_gateway(upstream_port: int, home: str) -> None:
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
    services = build_services(settings)
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
        assert self.reader is not None and self.writer is not None
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


async def measure(
    upstream: int, gateway: int, key: str, count: int, seconds: float
) -> list[tuple[object, ...]]:
    direct_request = raw_request(upstream, "bench", None)
    gateway_request = raw_request(gateway, "openai:bench", key)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway}") as client:
        reply = await client.post(
            PATH, content=chat_body("openai:bench"), headers={"authorization": f"Bearer {key}", "content-type": "application/json"}
        )
        reply.raise_for_status()
        assert reply.json()["choices"][0]["message"]["content"] == "Hi! How can I help you today?"

    direct, via = Connection(upstream, direct_request), Connection(gateway, gateway_request)
    await direct.open()
    await via.open()
    direct_lat = await sequential(direct.call, count)
    via_lat = await sequential(via.call, count)
    await direct.close()
    await via.close()

    async with httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{upstream}{PATH}"
        body = chat_body("bench")

        async def httpx_call() -> None:
            (await client.post(url, content=body, headers=JSON)).raise_for_status()

        httpx_lat = await sequential(httpx_call, count // 2)

    ms = 1000.0
    rows: list[tuple[object, ...]] = []
    for label, fraction, target in (("p50", 0.5, "added < 2 ms"), ("p99", 0.99, "added < 10 ms")):
        d, g = percentile(direct_lat, fraction) * ms, percentile(via_lat, fraction) * ms
        rows.append((f"sequential {label} latency (ms)", d, g, g - d, target))
    httpx_p50 = percentile(httpx_lat, 0.5) * ms
    rows.append(("sequential p50 with an httpx client (ms)", httpx_p50, "", "", "(client cost)"))
    for concurrency in (16, 32):
        d = await throughput(upstream, direct_request, concurrency, seconds)
        g = await throughput(gateway, gateway_request, concurrency, seconds)
        rows.append((f"req/s at concurrency {concurrency}", d, g, "", ">= 1,000 req/s"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000, help="sequential requests per path")
    parser.add_argument("--seconds", type=float, default=4.0, help="per throughput run")
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", nargs=2, metavar=("PORT", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream()
        return
    if args.serve_gateway:
        serve_gateway(int(args.serve_gateway[0]), args.serve_gateway[1])
        return

    with tempfile.TemporaryDirectory(prefix="soma-bench-gw-") as home:
        upstream, upstream_line = start("--serve-upstream")
        gateway = None
        try:
            upstream_port = int(upstream_line[1])
            gateway, gateway_line = start("--serve-gateway", str(upstream_port), home)
            gateway_port, key = int(gateway_line[1]), gateway_line[3]
            rows = uvloop.run(measure(upstream_port, gateway_port, key, args.requests, args.seconds))
        finally:
            for process in (gateway, upstream):
                if process is not None:
                    process.terminate()
                    process.wait(10)
    print_table(
        "Gateway overhead: /v1/chat/completions to a zero-latency upstream (openai:bench)",
        ["workload", "direct", "via gateway", "added", "target"],
        rows,
    )
    Console().print(
        f"[dim]{os.cpu_count()} cores shared by the load generator, the gateway and the upstream "
        "(three processes): the client's own CPU time is taken from the servers, so req/s is a "
        "floor. Sequential figures: 1 keep-alive connection; throughput: keep-alive connections "
        "each sending back-to-back for the run.[/dim]"
    )


if __name__ == "__main__":
    main()
