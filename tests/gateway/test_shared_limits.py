"""Two gateway processes share one rate limit through the Redis on 127.0.0.1:6379."""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from soma.identity.secret import load_secret_key
from soma.identity.service import Identity
from soma.settings import Settings
from soma.store import Store
from tests.serve_process import start_gateway

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/0"
PER_MIN = 6


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def _start(home: Path, limiter: str | None) -> tuple[subprocess.Popen[bytes], str]:
    env = {"SOMA_KEY_REQUESTS_PER_MIN": str(PER_MIN)}
    if limiter:
        env["SOMA_RATE_LIMIT_URL"] = limiter
    return start_gateway(home, env)


@pytest.fixture
def shared_home(tmp_path: Path) -> tuple[Path, str]:
    """A home with a tenant, a user and a key, as both gateways will see them."""
    settings = Settings(home=tmp_path)
    identity = Identity(Store.open(settings.store_url), load_secret_key(settings))
    tenant = f"t{uuid.uuid4().hex[:8]}"
    identity.create_tenant(tenant)
    user = identity.create_user(tenant, "dev@example.test", "developer")
    _, key = identity.create_key(tenant, user.id, "shared")
    return tmp_path, key


def _pair(home: Path, limiter: str | None) -> Iterator[list[str]]:
    processes = [_start(home, limiter) for _ in range(2)]
    try:
        yield [url for _, url in processes]
    finally:
        for process, _ in processes:
            process.terminate()
            process.wait(15)


def _statuses(urls: list[str], key: str, each: int) -> list[int]:
    headers = {"Authorization": f"Bearer {key}"}
    statuses = []
    for _ in range(each):
        for url in urls:
            statuses.append(httpx.get(f"{url}/api/v1/me", headers=headers).status_code)
    return statuses


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_two_gateways_share_one_limit_through_redis(shared_home: tuple[Path, str]) -> None:
    home, key = shared_home
    for urls in _pair(home, REDIS_URL):
        statuses = _statuses(urls, key, PER_MIN)
        assert statuses.count(200) == PER_MIN, statuses
        assert statuses.count(429) == PER_MIN
        refused = httpx.get(f"{urls[1]}/api/v1/me", headers={"Authorization": f"Bearer {key}"})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["error"]["type"] == "rate_limited"


def test_in_process_limits_are_per_replica(shared_home: tuple[Path, str]) -> None:
    """The default needs no Redis, and each replica counts on its own: why Redis is needed."""
    home, key = shared_home
    for urls in _pair(home, None):
        statuses = _statuses(urls, key, PER_MIN)
        assert statuses == [200] * (2 * PER_MIN)
