"""Token-bucket rate limits for the gateway, kept in process or shared through Redis.

A bucket holds up to ``capacity`` tokens and refills continuously at ``per_min / 60`` tokens a
second. Three operations cover what the gateway needs:

* ``take`` guards a request before it runs: it passes only if the tokens are there, and a
  refusal costs nothing, so a client hammering a full limit does not dig itself deeper.
* ``charge`` bills what is only known afterwards (model tokens of a response). It cannot refuse
  work that is already done, so it may drive the bucket negative; that debt is repaid by refill
  and blocks the key until then.
* ``peek`` asks whether a key is in debt without spending anything, which is how a
  tokens-per-minute limit is checked before a request whose size is not known yet.

A key names one bucket. The limit is passed on every call instead of being stored, so a changed
configuration applies at once; use a distinct key for each limit on the same client
(``rpm:<key id>``, ``tpm:<key id>``).

A cost larger than the bucket's capacity can never pass ``take``; such a refusal says so with
``retry_after_s == math.inf`` (callers should answer "too large", not "retry later").
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

_EVICTION_SAMPLE = 8

__all__ = [
    "InProcessLimiter",
    "Limit",
    "RateDecision",
    "RateLimiter",
    "RedisLimiter",
    "build_limiter",
]


@dataclass(frozen=True, slots=True)
class Limit:
    """One token bucket's shape; ``name`` says what it limits, for messages shown to clients.

    Both numbers must be positive and finite: a zero rate or capacity would make every refusal
    permanent, and switching a limit off is better done by not applying it at all.
    """

    name: str
    per_min: float
    burst: float | None = None

    def __post_init__(self) -> None:
        if not (0 < self.per_min < math.inf):
            raise ValueError(
                f"rate limit {self.name!r}: per_min must be a positive finite number, "
                f"got {self.per_min!r}"
            )
        if self.burst is not None and not (0 < self.burst < math.inf):
            raise ValueError(
                f"rate limit {self.name!r}: burst must be a positive finite number or None "
                f"(= per_min), got {self.burst!r}"
            )

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds: ``burst``, or one minute's refill without it."""
        return self.per_min if self.burst is None else self.burst


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one limiter call.

    ``retry_after_s`` is 0 when allowed; otherwise the seconds until the refused request would
    pass (``math.inf`` if its cost exceeds the capacity). ``remaining`` is the bucket's tokens
    after the call; it is negative while the key is in debt.
    """

    allowed: bool
    retry_after_s: float
    remaining: float


class RateLimiter(Protocol):
    """What the gateway codes against; see the module docstring for the meaning of each call."""

    async def take(self, key: str, limit: Limit, cost: float = 1.0) -> RateDecision:
        """Atomically refill, then deduct ``cost`` and allow if the tokens are there."""
        ...

    async def charge(self, key: str, limit: Limit, cost: float) -> None:
        """Deduct ``cost`` unconditionally; the bucket may go negative (debt)."""
        ...

    async def peek(self, key: str, limit: Limit) -> RateDecision:
        """Allowed iff the bucket holds more than zero tokens; deducts nothing."""
        ...

    async def close(self) -> None:
        """Release connections; the limiter is unusable afterwards."""
        ...


def _refused(tokens: float, need: float, limit: Limit) -> RateDecision:
    """A refusal that tells the client when ``need`` tokens will be there."""
    wait = math.inf if need > limit.capacity else (need - tokens) * 60.0 / limit.per_min
    return RateDecision(False, wait, tokens)


class _Bucket:
    __slots__ = ("limit", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float, limit: Limit) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.limit = limit  # kept so eviction can tell when the bucket is full again


class InProcessLimiter:
    """Buckets in a dict: exact and fast, but each gateway process counts on its own.

    Meant for a single replica or for tests. There is no lock: every method runs to completion
    without awaiting, so calls from one event loop cannot interleave; do not share an instance
    across threads or event loops.

    Memory is bounded by ``max_buckets``. Buckets wait in a queue, new ones at the back; a new
    key beyond the bound takes the eight at the front and drops those that have refilled to
    capacity, which loses nothing since a missing bucket starts full. Buckets still in deficit
    rejoin at the back, and only if none of the eight is full is the one nearest to full dropped,
    forgiving its small remaining deficit. The work per new key is constant: a sweep over all
    buckets would stall the event loop for tens of milliseconds at 100,000 of them.
    """

    def __init__(
        self, *, max_buckets: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_buckets < 1:
            raise ValueError(f"max_buckets must be at least 1, got {max_buckets}")
        # Ordered so that the oldest bucket is an O(1) pop; a plain dict would have to skip the
        # growing run of deleted slots at its front on every eviction.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max_buckets = max_buckets
        self._clock = clock

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, key: str, limit: Limit, cost: float = 1.0) -> RateDecision:
        now = self._clock()
        per_min = limit.per_min
        capacity = per_min if limit.burst is None else limit.burst
        bucket = self._buckets.get(key)
        if bucket is None:
            tokens = capacity
            if tokens < cost:  # refusing leaves the bucket full, so there is nothing to store
                return _refused(tokens, cost, limit)
            bucket = self._insert(key, tokens, now, limit)
        else:
            tokens = bucket.tokens
            elapsed = now - bucket.stamp
            if elapsed > 0:
                tokens += elapsed * per_min / 60.0
                bucket.stamp = now
            if tokens > capacity:
                tokens = capacity
            bucket.limit = limit
            if tokens < cost:
                bucket.tokens = tokens
                return _refused(tokens, cost, limit)
        tokens -= cost
        bucket.tokens = tokens
        return RateDecision(True, 0.0, tokens)

    async def charge(self, key: str, limit: Limit, cost: float) -> None:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._insert(key, limit.capacity, now, limit)
        else:
            self._refill(bucket, now, limit)
        bucket.tokens = min(limit.capacity, bucket.tokens - cost)

    async def peek(self, key: str, limit: Limit) -> RateDecision:
        bucket = self._buckets.get(key)
        if bucket is None:  # not stored: peeking at unknown keys must not grow memory
            return RateDecision(True, 0.0, limit.capacity)
        tokens = self._refill(bucket, self._clock(), limit)
        if tokens > 0:
            return RateDecision(True, 0.0, tokens)
        return _refused(tokens, min(1.0, limit.capacity), limit)

    async def close(self) -> None:
        self._buckets.clear()

    @staticmethod
    def _refill(bucket: _Bucket, now: float, limit: Limit) -> float:
        elapsed = now - bucket.stamp
        if elapsed > 0:
            bucket.tokens += elapsed * limit.per_min / 60.0
            bucket.stamp = now
        bucket.tokens = min(bucket.tokens, limit.capacity)
        bucket.limit = limit
        return bucket.tokens

    def _insert(self, key: str, tokens: float, now: float, limit: Limit) -> _Bucket:
        if len(self._buckets) >= self._max_buckets:
            self._evict(now)
        bucket = self._buckets[key] = _Bucket(tokens, now, limit)
        return bucket

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        nearest: tuple[float, str] | None = None
        dropped = False
        for _ in range(min(_EVICTION_SAMPLE, len(buckets))):
            key, bucket = buckets.popitem(last=False)
            limit = bucket.limit
            full_at = bucket.stamp + (limit.capacity - bucket.tokens) * 60.0 / limit.per_min
            if full_at <= now:
                dropped = True
                continue
            buckets[key] = bucket
            if nearest is None or full_at < nearest[0]:
                nearest = (full_at, key)
        if not dropped and nearest is not None:
            del buckets[nearest[1]]


# KEYS[1]: the bucket, a hash {v = tokens, s = seconds, u = microseconds of the last refill}.
# ARGV: tokens per second, capacity, cost, mode ("take" | "charge" | "peek").
# Returns {allowed (0/1), tokens after the call}. Numbers leave as strings because Redis would
# truncate a Lua number to an integer; the stamp is kept as TIME's two integer strings because
# Lua's default number formatting (14 digits) would round epoch seconds to 0.1 ms.
_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local mode = ARGV[4]
local now = redis.call('TIME')
local sec, usec = now[1], now[2]
local tokens = capacity
local state = redis.call('HMGET', KEYS[1], 'v', 's', 'u')
if state[1] then
  tokens = tonumber(state[1])
  local elapsed = (tonumber(sec) - tonumber(state[2])) + (tonumber(usec) - tonumber(state[3])) / 1e6
  if elapsed > 0 then
    tokens = tokens + elapsed * rate
  else
    sec, usec = state[2], state[3]
  end
  if tokens > capacity then tokens = capacity end
end
if mode == 'peek' then
  return {tokens > 0 and 1 or 0, string.format('%.17g', tokens)}
end
if mode == 'take' and tokens < cost then
  return {0, string.format('%.17g', tokens)}
end
tokens = math.min(capacity, tokens - cost)
if tokens >= capacity then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'v', string.format('%.17g', tokens), 's', sec, 'u', usec)
  local ttl = math.ceil((capacity - tokens) / rate * 1000)
  redis.call('PEXPIRE', KEYS[1], string.format('%d', math.min(ttl, 2^50)))
end
return {1, string.format('%.17g', tokens)}
"""

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)


class RedisLimiter:
    """Buckets in Redis, shared by every gateway replica pointing at the same server.

    Each call is one EVALSHA round trip of a Lua script that refills and decides atomically,
    using the Redis server's clock so replicas with skewed clocks agree. A bucket's key expires
    when it would have refilled to capacity, which is exactly when dropping it changes nothing.

    When Redis cannot be reached (refused, timed out, a read-only replica after failover), the
    limiter does not raise: an exception here would turn a Redis outage into an API outage.
    ``fail_open=True`` (the default) allows the request, which suits request-rate limits whose
    job is smoothing load; ``fail_open=False`` refuses with ``retry_after_s = recheck_s``, which
    suits hard quotas where overspending costs money. Either way a warning is logged once per
    outage, ``charge`` drops the amount it could not record, and Redis is not retried for
    ``recheck_s`` seconds, so requests do not each wait ``timeout_s`` while it is down.

    The connection pool belongs to the event loop that first uses it.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "soma:rl:",
        fail_open: bool = True,
        timeout_s: float = 0.5,
        recheck_s: float = 1.0,
    ) -> None:
        # One immediate retry reconnects a pooled connection that went stale when Redis restarted.
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._script = self._redis.register_script(_SCRIPT)
        self._prefix = prefix
        self._fail_open = fail_open
        self._recheck_s = recheck_s
        self._down_until = 0.0
        self._down = False

    async def take(self, key: str, limit: Limit, cost: float = 1.0) -> RateDecision:
        result = await self._run(key, limit, cost, "take")
        if result is None:
            return self._unavailable(limit)
        allowed, tokens = result
        return RateDecision(True, 0.0, tokens) if allowed else _refused(tokens, cost, limit)

    async def charge(self, key: str, limit: Limit, cost: float) -> None:
        await self._run(key, limit, cost, "charge")

    async def peek(self, key: str, limit: Limit) -> RateDecision:
        result = await self._run(key, limit, 0.0, "peek")
        if result is None:
            return self._unavailable(limit)
        allowed, tokens = result
        if allowed:
            return RateDecision(True, 0.0, tokens)
        return _refused(tokens, min(1.0, limit.capacity), limit)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(
        self, key: str, limit: Limit, cost: float, mode: str
    ) -> tuple[bool, float] | None:
        """The script's answer, or None while Redis is unreachable."""
        if self._down and time.monotonic() < self._down_until:
            return None
        args = (limit.per_min / 60.0, limit.capacity, cost, mode)
        try:
            allowed, tokens = await self._script(keys=[self._prefix + key], args=args)
        except _UNAVAILABLE as error:
            if not self._down:
                log.warning(
                    "rate limiter: Redis unreachable (%s); %s requests until it is back",
                    error,
                    "allowing" if self._fail_open else "refusing",
                )
            self._down = True
            self._down_until = time.monotonic() + self._recheck_s
            return None
        if self._down:
            log.info("rate limiter: Redis reachable again")
            self._down = False
        return allowed == 1, float(tokens)

    def _unavailable(self, limit: Limit) -> RateDecision:
        if self._fail_open:
            return RateDecision(True, 0.0, limit.capacity)
        return RateDecision(False, self._recheck_s, 0.0)


def build_limiter(url: str | None) -> RateLimiter:
    """The limiter a gateway configuration asks for: in process without a URL, else Redis."""
    if url is None:
        return InProcessLimiter()
    if url.startswith(("redis://", "rediss://")):
        return RedisLimiter(url)
    raise ValueError(
        f"rate limit store {url!r} is not supported: leave it unset for in-process limits or "
        "give a Redis URL such as redis://localhost:6379/0"
    )
