"""Token-bucket limiters: exact arithmetic in process, the same behaviour through real Redis.

Shared behaviour runs against both implementations. The in-process limiter gets a fake clock, so
its tests are exact; Redis uses its own server clock, so its tests use slow refill rates (the
few milliseconds a test takes refill a negligible fraction of a token) or short real sleeps,
and compare with a tolerance.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
import redis.asyncio as redis
from redis import Redis as SyncRedis

from soma.gateway.ratelimit import (
    InProcessLimiter,
    Limit,
    RateDecision,
    RateLimiter,
    RedisLimiter,
    build_limiter,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the real Redis; its keys are deleted afterwards.

    Sync on purpose: the parametrized ``harness`` fixture asks for it by name, which an async
    fixture cannot do for another async fixture.
    """
    client = SyncRedis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as error:
        client.close()
        pytest.skip(f"no Redis server at {REDIS_URL} ({error}); the Redis limiter is untested")
    prefix = f"test:soma:rl:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
async def raw_redis() -> AsyncIterator[redis.Redis]:
    """A plain client for looking at what the limiter stored."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@dataclass
class Harness:
    """A limiter plus how to let time pass for it, and how exact its numbers are."""

    limiter: RateLimiter
    advance: Callable[[float], Awaitable[None]]
    tolerance: float


@pytest.fixture(params=["in-process", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "in-process":
        clock = FakeClock()

        async def advance_fake(seconds: float) -> None:
            clock.advance(seconds)

        limiter: RateLimiter = InProcessLimiter(clock=clock)
        yield Harness(limiter, advance_fake, tolerance=1e-9)
    else:
        prefix = request.getfixturevalue("redis_prefix")
        limiter = RedisLimiter(REDIS_URL, prefix=prefix, fail_open=False)
        yield Harness(limiter, asyncio.sleep, tolerance=0.05)
    await limiter.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def local(clock: FakeClock) -> AsyncIterator[InProcessLimiter]:
    limiter = InProcessLimiter(clock=clock)
    yield limiter
    await limiter.close()


# Slow enough that real time passing during a Redis test refills well under the tolerance.
SLOW = Limit("requests per minute for this API key", per_min=6, burst=5)


# --- shared behaviour ---------------------------------------------------------------------------


async def test_burst_then_refusal_without_deducting(harness: Harness) -> None:
    remaining = []
    for _ in range(5):
        decision = await harness.limiter.take("k", SLOW)
        assert decision.allowed
        assert decision.retry_after_s == 0
        remaining.append(decision.remaining)
    assert remaining == pytest.approx([4, 3, 2, 1, 0], abs=harness.tolerance)
    for _ in range(3):  # refusals cost nothing: the wait does not grow
        refused = await harness.limiter.take("k", SLOW)
        assert not refused.allowed
        assert refused.remaining == pytest.approx(0, abs=harness.tolerance)
        assert refused.retry_after_s == pytest.approx(10, abs=harness.tolerance * 10)


async def test_burst_defaults_to_per_min(harness: Harness) -> None:
    limit = Limit("requests", per_min=3)
    assert [(await harness.limiter.take("k", limit)).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


async def test_retry_after_covers_the_cost(harness: Harness) -> None:
    for _ in range(5):
        await harness.limiter.take("k", SLOW)
    refused = await harness.limiter.take("k", SLOW, cost=3)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(30, abs=harness.tolerance * 10)


async def test_cost_above_capacity_never_passes(harness: Harness) -> None:
    refused = await harness.limiter.take("k", SLOW, cost=6)
    assert not refused.allowed
    assert refused.retry_after_s == math.inf
    assert (await harness.limiter.take("k", SLOW, cost=5)).allowed  # the refusal took nothing


async def test_keys_are_independent(harness: Harness) -> None:
    for _ in range(5):
        await harness.limiter.take("a", SLOW)
    assert not (await harness.limiter.take("a", SLOW)).allowed
    fresh = await harness.limiter.take("b", SLOW)
    assert fresh.allowed
    assert fresh.remaining == pytest.approx(4, abs=harness.tolerance)


async def test_refill_is_capped_at_burst(harness: Harness) -> None:
    fast = Limit("requests", per_min=1_200, burst=2)  # 20 tokens a second
    assert (await harness.limiter.take("k", fast, cost=2)).allowed
    assert not (await harness.limiter.take("k", fast)).allowed
    await harness.advance(0.3)  # 6 tokens' worth of refill, but the bucket holds 2
    assert (await harness.limiter.take("k", fast, cost=2)).allowed
    assert not (await harness.limiter.take("k", fast)).allowed


async def test_charge_goes_into_debt_and_refill_repays_it(harness: Harness) -> None:
    limit = Limit("model tokens per minute", per_min=1_200, burst=2)  # 20 tokens a second
    await harness.limiter.charge("k", limit, 5)  # 2 - 5 = -3
    peeked = await harness.limiter.peek("k", limit)
    assert not peeked.allowed
    assert peeked.remaining == pytest.approx(-3, abs=harness.tolerance * 5)
    assert peeked.retry_after_s == pytest.approx(0.2, abs=harness.tolerance)  # until 1 token
    assert not (await harness.limiter.take("k", limit)).allowed
    await harness.advance(0.25)  # +5 tokens: debt repaid, 2 in the bucket
    peeked = await harness.limiter.peek("k", limit)
    assert peeked.allowed
    assert peeked.remaining == pytest.approx(2, abs=harness.tolerance)


async def test_peek_deducts_nothing(harness: Harness) -> None:
    unknown = await harness.limiter.peek("k", SLOW)
    assert unknown.allowed
    assert unknown.remaining == pytest.approx(5, abs=harness.tolerance)
    await harness.limiter.take("k", SLOW, cost=4)
    for _ in range(3):
        peeked = await harness.limiter.peek("k", SLOW)
        assert peeked.allowed
        assert peeked.remaining == pytest.approx(1, abs=harness.tolerance)


# --- in-process: exact arithmetic with a fake clock ---------------------------------------------


async def test_refill_is_exact(local: InProcessLimiter, clock: FakeClock) -> None:
    limit = Limit("requests", per_min=60, burst=10)  # one token a second
    assert (await local.take("k", limit, cost=10)).allowed
    clock.advance(2.5)
    decision = await local.take("k", limit, cost=2)
    assert decision.allowed
    assert decision.remaining == 0.5
    refused = await local.take("k", limit)
    assert not refused.allowed
    assert refused.retry_after_s == 0.5
    clock.advance(0.25)
    assert not (await local.take("k", limit)).allowed
    clock.advance(0.25)
    assert (await local.take("k", limit)).allowed


async def test_charge_debt_exact(local: InProcessLimiter, clock: FakeClock) -> None:
    limit = Limit("model tokens per minute", per_min=60, burst=10)
    await local.take("k", limit, cost=4)
    await local.charge("k", limit, 26)  # 6 - 26 = -20
    peeked = await local.peek("k", limit)
    assert peeked == RateDecision(allowed=False, retry_after_s=21.0, remaining=-20.0)
    clock.advance(20)
    assert not (await local.peek("k", limit)).allowed  # exactly 0 tokens is still not "> 0"
    clock.advance(0.5)
    assert (await local.peek("k", limit)).allowed
    assert not (await local.take("k", limit)).allowed  # half a token
    clock.advance(0.5)
    assert (await local.take("k", limit)).allowed


async def test_negative_charge_refunds_up_to_capacity(local: InProcessLimiter) -> None:
    limit = Limit("model tokens per minute", per_min=60, burst=10)
    await local.charge("k", limit, 8)
    await local.charge("k", limit, -5)
    assert (await local.peek("k", limit)).remaining == 7
    await local.charge("k", limit, -50)
    assert (await local.peek("k", limit)).remaining == 10


async def test_unknown_keys_take_no_memory_until_they_spend(local: InProcessLimiter) -> None:
    await local.peek("looked-at", SLOW)
    await local.take("too-big", SLOW, cost=100)
    assert len(local) == 0
    await local.take("spent", SLOW)
    assert len(local) == 1


async def test_memory_is_bounded(clock: FakeClock) -> None:
    limiter = InProcessLimiter(max_buckets=8, clock=clock)
    for index in range(1_000):
        await limiter.charge(f"client-{index}", SLOW, index % 7 + 1)
        assert len(limiter) <= 8


async def test_eviction_drops_full_buckets_first(clock: FakeClock) -> None:
    limiter = InProcessLimiter(max_buckets=8, clock=clock)
    limit = Limit("requests", per_min=60, burst=10)
    await limiter.charge("debtor", limit, 110)  # -100: full again in 110 s
    for index in range(50):
        await limiter.take(f"passer-by-{index}", limit)
        clock.advance(1)  # each passer-by's bucket is full again a second later
    debtor = await limiter.peek("debtor", limit)
    assert not debtor.allowed
    assert debtor.remaining == -50


async def test_eviction_under_pressure_keeps_the_deepest_debts(clock: FakeClock) -> None:
    limiter = InProcessLimiter(max_buckets=8, clock=clock)
    limit = Limit("requests", per_min=60, burst=10)
    for index in reversed(range(20)):  # the deepest debt first, so it is the oldest bucket
        await limiter.charge(f"client-{index}", limit, index + 1)
    assert len(limiter) <= 8
    deepest = await limiter.peek("client-19", limit)
    assert deepest.remaining == -10


@pytest.mark.parametrize(
    ("per_min", "burst"), [(0, None), (-1, None), (math.inf, None), (60, 0), (60, math.nan)]
)
def test_limit_rejects_nonsense(per_min: float, burst: float | None) -> None:
    with pytest.raises(ValueError, match="positive finite"):
        Limit("requests", per_min=per_min, burst=burst)


# --- Redis: shared between replicas, atomic, self-cleaning, and what happens when it is down ----


async def test_two_replicas_share_one_bucket(redis_prefix: str) -> None:
    first = RedisLimiter(REDIS_URL, prefix=redis_prefix)
    second = RedisLimiter(REDIS_URL, prefix=redis_prefix)
    try:
        assert (await first.take("k", SLOW, cost=3)).allowed
        decision = await second.take("k", SLOW, cost=2)
        assert decision.allowed
        assert decision.remaining == pytest.approx(0, abs=0.05)
        assert not (await first.take("k", SLOW)).allowed
        await second.charge("k", SLOW, 2)
        assert (await first.peek("k", SLOW)).remaining == pytest.approx(-2, abs=0.05)
    finally:
        await first.close()
        await second.close()


async def test_concurrent_takes_never_overspend(redis_prefix: str) -> None:
    replicas = [RedisLimiter(REDIS_URL, prefix=redis_prefix) for _ in range(2)]
    limit = Limit("requests", per_min=0.6, burst=10)  # 0.01 tokens a second: no refill to speak of
    try:
        decisions = await asyncio.gather(
            *(replicas[index % 2].take("k", limit) for index in range(50))
        )
        assert sum(decision.allowed for decision in decisions) == 10
    finally:
        for replica in replicas:
            await replica.close()


async def test_waiting_retry_after_is_enough(redis_prefix: str) -> None:
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix)
    limit = Limit("requests", per_min=600, burst=2)  # 10 tokens a second
    try:
        await limiter.take("k", limit, cost=2)
        refused = await limiter.take("k", limit)
        assert not refused.allowed
        assert 0.05 < refused.retry_after_s <= 0.1
        await asyncio.sleep(refused.retry_after_s)
        assert (await limiter.take("k", limit)).allowed
    finally:
        await limiter.close()


async def test_keys_expire_when_full_again(redis_prefix: str, raw_redis: redis.Redis) -> None:
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix)
    try:
        await limiter.charge("debtor", Limit("tokens", per_min=60, burst=10), 20)  # 20 s to full
        assert 19_000 < await raw_redis.pttl(redis_prefix + "debtor") <= 20_000
        await limiter.take("quick", Limit("requests", per_min=60_000, burst=100), cost=50)  # 50 ms
        assert 0 < await raw_redis.pttl(redis_prefix + "quick") <= 50
        await asyncio.sleep(0.1)
        assert not await raw_redis.exists(redis_prefix + "quick")
        await limiter.peek("peeked", SLOW)
        await limiter.take("refused", SLOW, cost=100)
        assert not await raw_redis.exists(redis_prefix + "peeked", redis_prefix + "refused")
    finally:
        await limiter.close()


async def test_fail_open_allows_when_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisLimiter(CLOSED_PORT_URL, fail_open=True)
    try:
        with caplog.at_level(logging.WARNING, logger="soma.gateway.ratelimit"):
            for _ in range(3):
                decision = await limiter.take("k", SLOW, cost=5)
                assert decision.allowed
                assert decision.retry_after_s == 0
            assert (await limiter.peek("k", SLOW)).allowed
            await limiter.charge("k", SLOW, 100)  # dropped, not raised
        warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
        assert len(warnings) == 1  # once per outage, not once per request
        assert "allowing" in warnings[0].getMessage()
    finally:
        await limiter.close()


async def test_fail_closed_refuses_when_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisLimiter(CLOSED_PORT_URL, fail_open=False, recheck_s=2.0)
    try:
        with caplog.at_level(logging.WARNING, logger="soma.gateway.ratelimit"):
            decision = await limiter.take("k", SLOW)
            assert not decision.allowed
            assert decision.retry_after_s == 2.0
            assert not (await limiter.peek("k", SLOW)).allowed
            await limiter.charge("k", SLOW, 1)
        assert "refusing" in caplog.text
    finally:
        await limiter.close()


async def test_redis_comes_back_after_recheck(redis_prefix: str) -> None:
    limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix, fail_open=False, recheck_s=0.05)
    try:
        limiter._down = True  # as if the previous call had failed
        limiter._down_until = time.monotonic() + 3600
        assert not (await limiter.take("k", SLOW)).allowed
        limiter._down_until = 0.0
        assert (await limiter.take("k", SLOW)).allowed
        assert not limiter._down
    finally:
        await limiter.close()


# --- build_limiter ------------------------------------------------------------------------------


async def test_build_limiter() -> None:
    assert isinstance(build_limiter(None), InProcessLimiter)
    limiter = build_limiter(REDIS_URL)
    assert isinstance(limiter, RedisLimiter)
    await limiter.close()
    for url in ("memcached://localhost:11211", "", "localhost:6379"):
        with pytest.raises(ValueError, match="not supported"):
            build_limiter(url)
