"""Marketplace install: a capsule with 5 dependencies, from the local registry and over HTTP.

    .venv/bin/python bench/bench_market_install.py [--runs 30]

The package ``pipeline`` depends on four capsules (``step-1`` … ``step-4``) and one persona
(``bench-analyst``), all signed by one publisher: six packages, each a few hundred bytes. Each
run installs the whole plan into a fresh tenant (so nothing is ever "already installed"):
resolve the plan, download the six archives, check each digest and ed25519 signature against the
tenant's trusted key, unpack and check every file, write them into the tenant's library through
a staging directory, and record the installs (and their audit entries) in the store.

Sources: ``local`` reads this instance's registry from the store (SQLite under a temporary
SOMA_HOME); ``http`` is another instance, a ``soma serve --no-engine`` process on loopback
holding the same packages, reached through HttpSource (one keep-alive client per run). The
"resolve only" rows time the resolver alone, which is the part that grows with the dependency
graph. Target: a full install under 250 ms p50 over HTTP on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import yaml

from _table import print_table
from soma.identity.secret import load_secret_key
from soma.identity.service import Identity
from soma.marketplace.archive import pack
from soma.marketplace.installer import Installer
from soma.marketplace.registry import LocalSource, Registry
from soma.marketplace.resolver import resolve
from soma.marketplace.signing import PublisherKey, sign
from soma.marketplace.sources import HttpSource, PackageSource
from soma.settings import Settings
from soma.store import Store

ROOT = "pipeline"
TOOLS = ("fs.read", "fs.write")
COLUMNS = ["source", "workload", "runs", "p50 ms", "p90 ms", "min ms", "target"]


def _write_sources(root: Path) -> list[Path]:
    """Spec sources for the persona, the four steps and the pipeline that needs them all."""
    persona = root / "bench-analyst.yaml"
    persona.write_text(
        yaml.safe_dump(
            {
                "kind": "persona",
                "name": "bench-analyst",
                "version": "1.0.0",
                "role": "analyst",
                "goal": "Turn raw notes into a report.",
                "tools": list(TOOLS),
            }
        )
    )
    sources: list[Path] = [persona]
    steps = [f"step-{i}" for i in range(1, 5)]
    for name in [*steps, ROOT]:
        directory = root / name
        directory.mkdir()
        spec = {
            "kind": "capsule",
            "name": name,
            "version": "1.0.0",
            "description": f"Benchmark capsule {name}.",
            "persona": "bench-analyst@^1",
            "tools": list(TOOLS),
            "instructions": "Work on {{ goal }}.\n" * 20,
            "inputs": {"type": "object", "properties": {"goal": {"type": "string"}}},
        }
        (directory / "capsule.yaml").write_text(yaml.safe_dump(spec))
        (directory / "README.md").write_text(f"# {name}\n\n" + "Notes.\n" * 50)
        if name == ROOT:
            deps = [{"kind": "capsule", "name": s, "range": "^1.0"} for s in steps]
            (directory / "package.yaml").write_text(yaml.safe_dump({"dependencies": deps}))
        sources.append(directory)
    return sources


def _setup(home: Path, work: Path) -> tuple[PublisherKey, str]:
    """Publish the six packages into ``home``'s registry; returns the key and an API key."""
    settings = Settings(home=home)
    key = PublisherKey.generate("bench")
    with Store.open(settings.store_url) as store:
        identity = Identity(store, load_secret_key(settings))
        identity.create_tenant("publisher")
        user = identity.create_user("publisher", "dev@bench.test", "developer")
        _, token = identity.create_key("publisher", user.id, "bench")
        registry = Registry(store)
        registry.register_key("publisher", "bench", key.public_text)
        for source in _write_sources(work):
            _, data = pack(source, publisher="bench")
            registry.publish(data, sign(data, key), tenant_id="publisher", user_id=user.id)
    return key, token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "SOMA_HOME": str(home), "SOMA_MODEL": "openai:unused"}
    process = subprocess.Popen(
        [sys.executable, "-m", "soma", "serve", "--no-engine", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the gateway did not start")


async def _timed(runs: int, once: Callable[[int], Awaitable[float]]) -> list[float]:
    """Milliseconds of each run after a warm-up (imports, connection pools, SQLite pages);
    ``once`` returns the seconds of the part it measures, leaving its setup out."""
    await once(-1)
    return [await once(run) * 1000 for run in range(runs)]


async def _close(source: PackageSource) -> None:
    if isinstance(source, HttpSource):
        await source.aclose()


def _row(source: str, workload: str, times: list[float], target: str) -> list[object]:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return [source, workload, len(times), statistics.median(times), p90, ordered[0], target]


async def _bench(
    name: str,
    make_source: Callable[[], PackageSource],
    store: Store,
    settings: Settings,
    key: PublisherKey,
    runs: int,
    target: str,
) -> list[list[object]]:
    async def resolve_once(_: int) -> float:
        source = make_source()
        start = time.perf_counter()
        plan = await resolve(source, ROOT, tools=TOOLS)
        elapsed = time.perf_counter() - start
        await _close(source)
        assert len(plan) == 6
        return elapsed

    async def install_once(run: int) -> float:
        installer = Installer(store, settings, f"{name}-{run + 2}", tools=TOOLS)
        await asyncio.to_thread(installer.trust, "bench", key.public_text)
        source = make_source()
        start = time.perf_counter()
        records = await installer.install(source, ROOT)
        elapsed = time.perf_counter() - start
        await _close(source)
        assert len(records) == 6
        return elapsed

    resolved = await _timed(runs, resolve_once)
    installs = await _timed(runs, install_once)
    return [
        _row(name, "resolve (6 packages)", resolved, ""),
        _row(name, "full install", installs, target),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        registry_home, client_home, work = Path(tmp, "a"), Path(tmp, "b"), Path(tmp, "src")
        work.mkdir()
        client_home.mkdir()
        key, token = _setup(registry_home, work)
        local = Settings(home=registry_home)
        with Store.open(local.store_url) as store:
            rows = asyncio.run(
                _bench("local", lambda: LocalSource(store), store, local, key, runs, "")
            )
        process, url = _serve(registry_home)
        try:
            client = Settings(home=client_home)
            with Store.open(client.store_url) as store:
                rows += asyncio.run(
                    _bench(
                        "http", lambda: HttpSource(url, token), store, client, key, runs, "< 250 ms"
                    )
                )
        finally:
            process.terminate()
            process.wait(15)
    print_table("soma market install: a capsule with 5 dependencies", COLUMNS, rows)


if __name__ == "__main__":
    main()
