"""Rate limiter ``take`` latency, in process and through Redis.

The gateway calls ``take`` before every request, so the in-process limiter must cost a few
microseconds and the Redis one a single round trip. Workloads:

1. In process, 10,000 clients in rotation: the steady state of a busy single replica.
2. In process, a new client on every call: past the default ``max_buckets`` (100,000) every
   call also evicts, the worst case.
3. Redis, one call at a time: the latency one request adds.
4. Redis, 64 calls in flight from one process: the throughput of one gateway replica.

Redis is the server at ``redis://127.0.0.1:6379/0``; without one, its rows say so. Targets:
in process p99 < 10 µs; Redis one EVALSHA round trip, so p50 near the "PING" row, which is
redis-py's own floor for one command.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from redis import Redis as SyncRedis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from _table import print_table
from soma.gateway.ratelimit import InProcessLimiter, Limit, RateLimiter, RedisLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"
CLIENTS = 10_000
LOCAL_CALLS = 200_000
CHURN_CALLS = 300_000
REDIS_CALLS = 20_000
REDIS_CONCURRENCY = 64
LIMIT = Limit("requests per minute for this API key", per_min=600, burst=100)

COLUMNS = ["limiter", "workload", "calls", "ops/s", "p50 µs", "p99 µs", "target"]


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def measure(
    limiter: RateLimiter, keys: list[str], calls: int, concurrency: int = 1
) -> tuple[float, list[float]]:
    """Wall time for ``calls`` takes spread over ``concurrency`` tasks, and each take's latency."""
    latencies: list[float] = []
    clock = time.perf_counter

    async def worker(offset: int) -> None:
        for index in range(offset, calls, concurrency):
            key = keys[index % len(keys)]
            before = clock()
            await limiter.take(key, LIMIT)
            latencies.append(clock() - before)

    start = clock()
    await asyncio.gather(*(worker(offset) for offset in range(concurrency)))
    return clock() - start, latencies


async def ping(calls: int) -> tuple[float, list[float]]:
    """Plain PINGs through redis-py: what one round trip costs before any script runs."""
    client = AsyncRedis.from_url(REDIS_URL)
    await client.ping()
    latencies: list[float] = []
    clock = time.perf_counter
    start = clock()
    for _ in range(calls):
        before = clock()
        await client.ping()
        latencies.append(clock() - before)
    elapsed = clock() - start
    await client.aclose()
    return elapsed, latencies


def row(
    label: str, workload: str, elapsed: float, latencies: list[float], target: str
) -> tuple[object, ...]:
    latencies.sort()
    return (
        label,
        workload,
        len(latencies),
        len(latencies) / elapsed,
        1e6 * percentile(latencies, 0.50),
        1e6 * percentile(latencies, 0.99),
        target,
    )


def redis_reachable() -> bool:
    client = SyncRedis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except RedisConnectionError:
        return False
    finally:
        client.close()
    return True


async def run() -> list[tuple[object, ...]]:
    rows = []
    clients = [f"key-{index}" for index in range(CLIENTS)]

    local = InProcessLimiter()
    await measure(local, clients, CLIENTS)  # create the buckets first
    elapsed, latencies = await measure(local, clients, LOCAL_CALLS)
    rows.append(row("in-process", f"{CLIENTS:,} clients", elapsed, latencies, "p99 < 10 µs"))

    churn = InProcessLimiter()
    fresh = [f"new-{index}" for index in range(CHURN_CALLS)]
    elapsed, latencies = await measure(churn, fresh, CHURN_CALLS)
    rows.append(row("in-process", "new client each call", elapsed, latencies, "p99 < 10 µs"))

    if not redis_reachable():
        rows.append(("redis", f"no server at {REDIS_URL}", 0, 0.0, 0.0, 0.0, "-"))
        return rows
    prefix = f"bench:soma:rl:{uuid.uuid4().hex}:"
    shared = RedisLimiter(REDIS_URL, prefix=prefix, fail_open=False)
    try:
        await measure(shared, clients[:100], 100)  # open the connection, load the script
        elapsed, latencies = await ping(REDIS_CALLS)
        rows.append(row("redis", "PING (floor)", elapsed, latencies, "-"))
        elapsed, latencies = await measure(shared, clients, REDIS_CALLS)
        rows.append(row("redis", "sequential", elapsed, latencies, "1 round trip"))
        elapsed, latencies = await measure(shared, clients, REDIS_CALLS, REDIS_CONCURRENCY)
        rows.append(
            row("redis", f"{REDIS_CONCURRENCY} in flight", elapsed, latencies, "1 round trip")
        )
    finally:
        await shared.close()
        cleanup = SyncRedis.from_url(REDIS_URL)
        keys = list(cleanup.scan_iter(match=prefix + "*", count=1_000))
        for start in range(0, len(keys), 1_000):
            cleanup.delete(*keys[start : start + 1_000])
        cleanup.close()
    return rows


def main() -> None:
    rows = asyncio.run(run())
    print_table("RateLimiter.take (one token, limit allows)", COLUMNS, rows)


if __name__ == "__main__":
    main()
