"""HttpSource against a live gateway in this process: what it reads, and what it says when the
other side is missing, refuses us, or is not a Soma registry at all."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from soma.errors import NotFound, SomaError, Unauthorized
from soma.gateway.app import build_services, create_app
from soma.marketplace.archive import archive_digest
from soma.marketplace.resolver import resolve
from soma.marketplace.signing import PublisherKey
from soma.marketplace.sources import HttpSource
from soma.settings import Settings
from tests.gateway.conftest import LiveGateway, serve_in_thread
from tests.marketplace._build import capsule_dir, signed


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveGateway]:
    settings = Settings(
        home=tmp_path / "home",
        secret_key=SecretStr("test-secret-key-of-enough-length-0123456789"),
        model="scripted",
    )
    services = build_services(settings, models={}.__getitem__)
    url, stop = serve_in_thread(create_app(services))
    try:
        yield LiveGateway(url, services)
    finally:
        stop()


@pytest.fixture
def key() -> PublisherKey:
    return PublisherKey.generate("acme")


@pytest.fixture
async def token(live: LiveGateway, key: PublisherKey, tmp_path: Path) -> str:
    token = live.key("acme", "developer")
    async with HttpSource(live.url, token) as source:
        await source.register_key("acme", key.public_text)
        for version in ("1.0.0", "1.1.0"):
            await source.publish(*signed(capsule_dir(tmp_path, "notes", version), key))
        app_dir = capsule_dir(tmp_path, "app", depends={"notes": "~1.0"})
        await source.publish(*signed(app_dir, key))
    return token


async def test_versions_archives_and_keys(live: LiveGateway, token: str, key: PublisherKey) -> None:
    async with HttpSource(live.url + "/", token) as source:
        assert source.url == live.url
        versions = await source.versions("notes")
        assert sorted(v.manifest.version for v in versions) == ["1.0.0", "1.1.0"]
        data = await source.archive("notes", "1.1.0")
        listed = next(v for v in versions if v.manifest.version == "1.1.0")
        assert archive_digest(data) == listed.digest
        assert await source.publisher_keys("acme") == [key.public_text]
        yanked = await source.yank("notes", "1.1.0", "typo in the prompt")
        assert yanked.yanked
        plan = await resolve(source, "app", tools=["fs.read"], installed={"developer": "1.0.0"})
        assert [v.manifest.ref for v in plan] == ["notes@1.0.0", "app@1.0.0"]
        found = await source.search("notes")
        assert [s.name for s in found][:1] == ["notes"]


async def test_a_missing_package_is_not_found(live: LiveGateway, token: str) -> None:
    async with HttpSource(live.url, token) as source:
        with pytest.raises(
            NotFound, match=re.escape(f"package 'ghost' is not in the registry at {live.url}")
        ):
            await source.versions("ghost")
        with pytest.raises(NotFound, match=re.escape(f"no package named 'ghost' in {live.url}")):
            await resolve(source, "ghost")


async def test_a_refused_token_says_so(live: LiveGateway, token: str) -> None:
    async with HttpSource(live.url, "soma_not-a-key") as source:
        with pytest.raises(Unauthorized, match="refused the token given"):
            await source.versions("notes")
    async with HttpSource(live.url) as source:
        with pytest.raises(Unauthorized, match=r"refused no token \(none was given\)"):
            await source.versions("notes")


async def test_something_that_is_not_a_registry(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/archive"):
            return httpx.Response(200, content=b"x" * 2048)
        if request.url.path.endswith("/teapot"):
            return httpx.Response(418, text="<html>internal secret</html>")
        return httpx.Response(200, json={"hello": "world"})

    transport = httpx.MockTransport(handler)
    async with HttpSource("http://example.test", transport=transport) as source:
        with pytest.raises(SomaError, match="did not answer like a Soma registry"):
            await source.versions("notes")
        with pytest.raises(SomaError, match="larger than 1,024 bytes"):
            await HttpSource(
                "http://example.test", transport=transport, max_download_bytes=1024
            ).archive("notes", "1.0.0")
        with pytest.raises(SomaError) as caught:
            await source.versions("teapot")
        assert "answered HTTP 418" in str(caught.value)
        assert "secret" not in str(caught.value)


async def test_an_unreachable_registry() -> None:
    async with HttpSource("http://127.0.0.1:9") as source:
        with pytest.raises(
            SomaError, match=re.escape("cannot reach the registry at http://127.0.0.1:9")
        ):
            await source.versions("notes")


def test_registry_urls_are_checked() -> None:
    with pytest.raises(SomaError, match="invalid registry URL"):
        HttpSource("file:///etc/passwd")
    with pytest.raises(SomaError, match="must not hold credentials"):
        HttpSource("http://me:secret@host:8765")
    assert HttpSource("http://host:8765/api/v1/market").url == "http://host:8765"
