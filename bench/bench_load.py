"""Load: many concurrent API clients creating projects and streaming their events.

    .venv/bin/python bench/bench_load.py [--clients 200] [--seconds 30]

A ``soma serve`` subprocess (the app ``soma serve`` runs, engine and worker in one process,
started by this script so every model spec resolves to the synthetic model; the template
planner; rate limits raised through ``SOMA_KEY_REQUESTS_PER_MIN`` and
``SOMA_TENANT_REQUESTS_PER_MIN``) on an embedded Temporal dev server started here. Each client
(``httpx.AsyncClient``) loops until the deadline: ``POST /api/v1/projects``, then
``GET /events/stream`` (SSE) until the project's ``end`` event or a bounded wait, then
``GET /api/v1/projects/{id}``. Reported: p50/p99 latency per operation (for the stream: time to
the first event and to the end), errors (anything but a 2xx), throughput, and the RSS of the
gateway/worker process (VmRSS from /proc) before and after.

A second phase points 20 clients at a ``soma serve --no-engine`` on the same home with a tight
per-key limit (``SOMA_KEY_REQUESTS_PER_MIN=60``): every refusal must be a clean 429 with a
``Retry-After`` header and a JSON error body, and nothing else may fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from _table import print_table
from soma.identity import load_secret_key
from soma.identity.service import Identity
from soma.orchestrator.server import managed_temporal
from soma.settings import Settings
from soma.store import Store

STREAM_WAIT_S = 60.0
GENEROUS = str(10**9)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (VmRSS), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def make_key(home: Path) -> str:
    settings = Settings(home=home)
    store = Store.open(settings.store_url)
    try:
        identity = Identity(store, load_secret_key(settings))
        identity.create_tenant("load")
        user = identity.create_user("load", "load@example.test", "admin")
        _, key = identity.create_key("load", user.id, "load")
        return key
    finally:
        store.close()


def start_serve(
    home: Path, env: dict[str, str], *, engine: bool
) -> tuple[subprocess.Popen[bytes], str]:
    """``soma serve`` on a free port, once /healthz answers."""
    port = free_port()
    full = {**os.environ, "SOMA_HOME": str(home), "SOMA_MODEL": "synthetic", **env}
    full.pop("SOMA_RATE_LIMIT_URL", None)
    if engine:  # `soma serve`'s app, with the synthetic model (no CLI spec names it)
        command = [sys.executable, __file__, "--serve", str(port)]
    else:
        command = [sys.executable, "-m", "soma", "serve", "--no-engine", "--port", str(port)]
    log = (home / f"serve-{port}.log").open("wb")
    process = subprocess.Popen(command, env=full, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (home / f"serve-{port}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"soma serve exited: {tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("soma serve did not come up")


@contextlib.contextmanager
def serving(
    home: Path, env: dict[str, str] | None = None, *, engine: bool = True
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    process, url = start_serve(home, env or {}, engine=engine)
    try:
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    projects: int = 0
    finished: int = 0
    events: int = 0
    limited: int = 0
    retry_after_missing: int = 0
    unfinished: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    rss_before_mib: float = 0.0
    rss_after_mib: float = 0.0
    rss_peak_mib: float = 0.0

    def add(self, op: str, seconds: float) -> None:
        self.latencies.setdefault(op, []).append(seconds)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def _stream(
    client: httpx.AsyncClient, project_id: str, results: Results, began: float
) -> str | None:
    """Read the project's SSE stream to its ``end`` event; return the final status."""
    first = True
    event = None
    async with client.stream(
        "GET", f"/api/v1/projects/{project_id}/events/stream", timeout=STREAM_WAIT_S
    ) as reply:
        if reply.status_code != 200:
            results.errors[f"stream {reply.status_code}"] += 1
            return None
        async for line in reply.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                if first:
                    results.add("stream first event", time.perf_counter() - began)
                    first = False
                results.events += 1
                if event == "review_requested":
                    node = json.loads(line.split(":", 1)[1]).get("node_id")
                    await _approve(client, project_id, str(node), results)
                if event == "end":
                    results.add("stream to end", time.perf_counter() - began)
                    status: str = json.loads(line.split(":", 1)[1])["status"]
                    return status
    results.errors["stream ended without end event"] += 1
    return None


async def _approve(client: httpx.AsyncClient, project_id: str, node: str, results: Results) -> None:
    """Approve a human review gate (the template plan has them), as a reviewer would."""
    url = f"/api/v1/projects/{project_id}/reviews/{node}/approve"
    for _ in range(20):  # the event can precede the gate's store record by a moment
        began = time.perf_counter()
        reply = await client.post(url, json={"comment": "ok"})
        results.requests += 1
        if reply.status_code == 202:
            results.add("approve review", time.perf_counter() - began)
            return
        if reply.status_code not in (404, 409):
            break
        await asyncio.sleep(0.1)
    results.errors[f"approve {reply.status_code}"] += 1


async def client_loop(
    client: httpx.AsyncClient, results: Results, deadline: float, index: int, grace_s: float = 60.0
) -> None:
    """Create, stream, get until ``deadline``; streams still open ``grace_s`` later are cut."""
    cutoff = deadline + grace_s
    round_no = 0
    while time.perf_counter() < deadline:
        round_no += 1
        goal = f"Write a haiku about load client {index}, round {round_no}"
        began = time.perf_counter()
        try:
            reply = await client.post(
                "/api/v1/projects", json={"goal": goal, "planner": "template"}
            )
            results.requests += 1
            if reply.status_code != 201:
                results.errors[f"create {reply.status_code}"] += 1
                await asyncio.sleep(0.5)
                continue
            results.add("create project", time.perf_counter() - began)
            results.projects += 1
            project_id = reply.json()["id"]
            began = time.perf_counter()
            try:
                async with asyncio.timeout(max(0.1, cutoff - began)):
                    status = await _stream(client, project_id, results, began)
            except TimeoutError:  # the run is over: stop watching (not an error)
                results.unfinished += 1
                return
            results.requests += 1
            if status is not None:
                results.finished += 1
                results.statuses[status] += 1
            began = time.perf_counter()
            reply = await client.get(f"/api/v1/projects/{project_id}")
            results.requests += 1
            if reply.status_code != 200:
                results.errors[f"get {reply.status_code}"] += 1
            else:
                results.add("get project", time.perf_counter() - began)
                body = reply.json()
                if body.get("status") == "failed":
                    results.failures[str(body.get("error"))[:200]] += 1
        except httpx.HTTPError as exc:
            results.errors[type(exc).__name__] += 1


async def sample_rss(pid: int, results: Results, stop: asyncio.Event) -> None:
    while not stop.is_set():
        results.rss_peak_mib = max(results.rss_peak_mib, rss_mib(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def run_load(
    url: str,
    key: str,
    pid: int,
    clients: int,
    seconds: float,
    grace_s: float = 60.0,
    *,
    warmup: bool = True,
) -> Results:
    results = Results()
    limits = httpx.Limits(max_connections=clients * 2 + 10, max_keepalive_connections=clients * 2)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60.0
    ) as client:
        # Warm up: one project end to end, so RSS "before" includes loaded code and caches.
        if warmup:
            await client_loop(client, Results(), time.perf_counter() + 0.001, -1)
        results.rss_before_mib = rss_mib(pid)
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(pid, results, stop))
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(
            *(client_loop(client, results, deadline, i, grace_s) for i in range(clients))
        )
        results.elapsed_s = time.perf_counter() - started
        stop.set()
        await sampler
        results.rss_after_mib = rss_mib(pid)
    return results


async def run_limited(url: str, key: str, clients: int, seconds: float) -> Results:
    """Hammer a tight per-key limit: everything must be a 200 or a clean 429."""
    results = Results()
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30.0) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def loop() -> None:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    reply = await client.get("/api/v1/projects", params={"limit": 5})
                except httpx.HTTPError as exc:
                    results.errors[type(exc).__name__] += 1
                    continue
                results.requests += 1
                if reply.status_code == 200:
                    results.add("list projects (limited)", time.perf_counter() - began)
                elif reply.status_code == 429:
                    results.limited += 1
                    results.add("429 answer", time.perf_counter() - began)
                    retry_after = reply.headers.get("retry-after")
                    body_ok = "error" in reply.json() or "detail" in reply.json()
                    if retry_after is None or not retry_after.isdigit() or not body_ok:
                        results.retry_after_missing += 1
                    await asyncio.sleep(0.05)
                else:
                    results.errors[f"list {reply.status_code}"] += 1

        await asyncio.gather(*(loop() for _ in range(clients)))
        results.elapsed_s = time.perf_counter() - started
    return results


@contextlib.contextmanager
def environment(home: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """An engine-backed ``soma serve`` with generous limits: (url, key, process)."""
    settings = Settings(home=home, temporal_address=None)
    key = make_key(home)
    with managed_temporal(settings) as address:
        env = {
            "SOMA_TEMPORAL_ADDRESS": address,
            "SOMA_KEY_REQUESTS_PER_MIN": GENEROUS,
            "SOMA_TENANT_REQUESTS_PER_MIN": GENEROUS,
            "SOMA_TENANT_TOKENS_PER_MIN": GENEROUS,
        }
        with serving(home, env) as (process, url):
            yield url, key, process


def limited_phase(home: Path, key: str, clients: int, seconds: float) -> Results:
    env = {"SOMA_KEY_REQUESTS_PER_MIN": "60", "SOMA_TENANT_REQUESTS_PER_MIN": GENEROUS}
    with serving(home, env, engine=False) as (_, url):
        return asyncio.run(run_limited(url, key, clients, seconds))


def rows(load: Results, limited: Results, clients: int) -> list[tuple[object, ...]]:
    table: list[tuple[object, ...]] = []
    for op, values in [*load.latencies.items(), *limited.latencies.items()]:
        table.append(
            (
                op,
                len(values),
                f"{1000 * percentile(values, 0.5):.1f}",
                f"{1000 * percentile(values, 0.99):.1f}",
            )
        )
    return table


def serve(port: int) -> None:
    """What ``soma serve`` runs (engine and worker in process), answering every model spec
    with the synthetic model: SOMA_* from the environment."""
    import uvicorn

    from soma.cli.common import load_library
    from soma.gateway.app import build_services, create_app
    from soma.models.synthetic import SyntheticModel

    settings = Settings()
    model = SyntheticModel()
    services = build_services(settings, library=load_library(settings), models=lambda _: model)
    uvicorn.run(
        create_app(services, engine=True, worker=True),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        log_level="warning",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--grace", type=float, default=60.0, help="cut streams after this")
    parser.add_argument("--limited-clients", type=int, default=20)
    parser.add_argument("--limited-seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    with tempfile.TemporaryDirectory(prefix="soma-load-") as tmp:
        home = Path(tmp)
        with environment(home) as (url, key, process):
            load = asyncio.run(
                run_load(url, key, process.pid, args.clients, args.seconds, args.grace)
            )
        limited = limited_phase(home, key, args.limited_clients, args.limited_seconds)
    print_table(
        f"Load: {args.clients} clients x {args.seconds:.0f} s against soma serve "
        "(engine + worker, synthetic model, template planner)",
        ["operation", "count", "p50 ms", "p99 ms"],
        rows(load, limited, args.clients),
    )
    print(
        f"projects created {load.projects}, finished {load.finished} "
        f"(+{load.unfinished} still running at the cut-off) "
        f"({dict(load.statuses)}), SSE events {load.events}; "
        f"requests {load.requests} in {load.elapsed_s:.1f} s = "
        f"{load.requests / load.elapsed_s:.1f} req/s, "
        f"{load.finished / load.elapsed_s:.2f} projects/s; errors {dict(load.errors) or 0}"
    )
    for why, count in load.failures.most_common(3):
        print(f"  failed x{count}: {why}")
    print(
        f"gateway+worker RSS: {load.rss_before_mib:.0f} MiB before, "
        f"{load.rss_after_mib:.0f} MiB after, peak {load.rss_peak_mib:.0f} MiB "
        f"(+{load.rss_after_mib - load.rss_before_mib:.0f} MiB)"
    )
    print(
        f"tight limit (60/min/key, {args.limited_clients} clients x "
        f"{args.limited_seconds:.0f} s): {limited.requests} requests, {limited.limited} x 429, "
        f"{limited.retry_after_missing} without Retry-After/JSON body, "
        f"errors {dict(limited.errors) or 0}"
    )


if __name__ == "__main__":
    main()
