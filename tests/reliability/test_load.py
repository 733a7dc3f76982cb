"""Load smoke: ~50 concurrent API clients against an engine-backed gateway subprocess for ~7 s.

The full run is ``bench/bench_load.py`` (200 clients); this bounded version checks that nothing
fails under concurrency -- every create, stream, review approval and read answers 2xx -- and
that a tight per-key limit refuses cleanly (429 with Retry-After and a JSON body, nothing else).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_load

pytestmark = pytest.mark.slow

CLIENTS = 50
SECONDS = 7.0
GRACE_S = 3.0


def test_concurrent_clients_see_no_errors(tmp_path: Path) -> None:
    with bench_load.environment(tmp_path) as (url, key, process):
        load = asyncio.run(
            bench_load.run_load(url, key, process.pid, CLIENTS, SECONDS, GRACE_S, warmup=False)
        )
    limited = bench_load.limited_phase(tmp_path, key, clients=10, seconds=2.0)
    print(
        f"\nload smoke: {load.projects} projects created, {load.finished} finished, "
        f"{load.requests} requests, errors {dict(load.errors)}; RSS "
        f"{load.rss_before_mib:.0f} -> {load.rss_after_mib:.0f} MiB; "
        f"limited: {limited.requests} requests, {limited.limited} x 429"
    )
    assert not load.errors, load.errors
    assert load.projects >= CLIENTS
    assert not load.failures, load.failures
    assert set(load.statuses) <= {"succeeded"}, load.statuses
    assert not limited.errors, limited.errors
    assert limited.limited > 0
    assert limited.retry_after_missing == 0
