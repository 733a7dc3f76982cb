"""Where packages are installed from: this instance's own registry or another Soma's, by URL.

A source only has to list versions, hand over archive bytes and say which keys a publisher
registered. It is never trusted: the installer checks every archive's digest and signature
against the keys the installing tenant trusts, so a federated registry (or anyone between it and
us) can at worst refuse service, never slip in a package.
"""

from __future__ import annotations

import base64
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import TypeAdapter, ValidationError

from soma.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PackageRefused,
    PayloadTooLarge,
    RateLimited,
    SomaError,
    Unauthorized,
)
from soma.marketplace.archive import MAX_PACKAGE_BYTES
from soma.marketplace.manifest import PackageSummary, PublishedVersion, Signature

API_PREFIX = "/api/v1/market"
MAX_DOWNLOAD_BYTES = MAX_PACKAGE_BYTES + 2**20
"""A registry that streams more than this for one archive is refused before it fills memory: an
archive is gzip of at most MAX_PACKAGE_BYTES, plus gzip's small overhead on incompressible data."""

T = TypeVar("T")
_VERSION: TypeAdapter[PublishedVersion] = TypeAdapter(PublishedVersion)
_VERSIONS: TypeAdapter[list[PublishedVersion]] = TypeAdapter(list[PublishedVersion])
_KEYS: TypeAdapter[list[str]] = TypeAdapter(list[str])
_SUMMARIES: TypeAdapter[list[PackageSummary]] = TypeAdapter(list[PackageSummary])


class PackageSource(Protocol):
    """A registry to resolve and download from; ``url`` names it in messages and records."""

    url: str

    async def versions(self, name: str) -> list[PublishedVersion]:
        """Every published version of ``name``, yanked ones included (the resolver decides)."""
        ...

    async def archive(self, name: str, version: str) -> bytes:
        """The archive's bytes, unverified."""
        ...

    async def publisher_keys(self, publisher: str) -> list[str]:
        """Public keys (text form) the publisher registered there: shown to a user deciding
        whether to trust them, never trusted automatically."""
        ...


class HttpSource(PackageSource):
    """Another Soma gateway's registry, over its ``/api/v1/market`` HTTP API.

    ``url`` is the gateway's base URL (``http://host:8765``); the API prefix is added. Besides
    the source protocol it publishes, searches and yanks, so the CLI's ``--registry`` works the
    same for every command. Use it as an async context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        max_download_bytes: int = MAX_DOWNLOAD_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = _base_url(url)
        self._has_token = bool(token)
        self._max_download = max_download_bytes
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=self.url + API_PREFIX,
            headers=headers,
            timeout=timeout_s,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- PackageSource -------------------------------------------------------------------------

    async def versions(self, name: str) -> list[PublishedVersion]:
        data = await self._json("GET", f"/packages/{_seg(name)}", what=f"package '{name}'")
        return self._parse(_VERSIONS, data, f"the versions of '{name}'")

    async def archive(self, name: str, version: str) -> bytes:
        what = f"the archive of {name}@{version}"
        path = f"/packages/{_seg(name)}/{_seg(version)}/archive"
        try:
            async with self._client.stream("GET", path) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._raise_for(response, what)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_download:
                        raise PackageRefused(
                            f"{what} from {self.url} is larger than "
                            f"{self._max_download:,} bytes; refused",
                            hint="a package this large is not a capsule or persona; check the "
                            "registry",
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    async def publisher_keys(self, publisher: str) -> list[str]:
        data = await self._json(
            "GET", f"/publishers/{_seg(publisher)}/keys", what=f"the keys of '{publisher}'"
        )
        return self._parse(_KEYS, data, f"the keys of '{publisher}'")

    # --- the rest of the registry API ----------------------------------------------------------

    async def version(self, name: str, version: str) -> PublishedVersion:
        what = f"{name}@{version}"
        data = await self._json("GET", f"/packages/{_seg(name)}/{_seg(version)}", what=what)
        return self._parse(_VERSION, data, what)

    async def search(
        self, query: str = "", *, kind: str | None = None, limit: int = 20
    ) -> list[PackageSummary]:
        params: dict[str, str | int] = {"q": query, "limit": limit}
        if kind:
            params["kind"] = kind
        data = await self._json("GET", "/packages", what="the search", params=params)
        return self._parse(_SUMMARIES, data, "the search results")

    async def publish(self, archive: bytes, signature: Signature) -> PublishedVersion:
        body = {
            "archive": base64.b64encode(archive).decode("ascii"),
            "signature": signature.model_dump(mode="json"),
        }
        data = await self._json("POST", "/packages", what="the upload", json=body)
        return self._parse(_VERSION, data, "the published version")

    async def yank(self, name: str, version: str, reason: str) -> PublishedVersion:
        what = f"{name}@{version}"
        path = f"/packages/{_seg(name)}/{_seg(version)}/yank"
        data = await self._json("POST", path, what=what, json={"reason": reason})
        return self._parse(_VERSION, data, what)

    async def register_key(self, publisher: str, public_key: str) -> None:
        path = f"/publishers/{_seg(publisher)}/keys"
        await self._json(
            "POST", path, what=f"the key for '{publisher}'", json={"public_key": public_key}
        )

    # --- plumbing ------------------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, str | int] | None = None,
        json: dict[str, Any] | None = None,
    ) -> Any:
        try:
            response = await self._client.request(method, path, params=params, json=json)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            self._raise_for(response, what)
        try:
            return response.json()
        except ValueError:
            raise self._not_a_registry(what) from None

    def _parse(self, adapter: TypeAdapter[T], data: Any, what: str) -> T:
        try:
            return adapter.validate_python(data)
        except ValidationError:
            raise self._not_a_registry(what) from None

    def _raise_for(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        said = _server_message(response)
        where = f"the registry at {self.url}"
        if status == 401:
            sent = "the token given" if self._has_token else "no token (none was given)"
            raise Unauthorized(
                f"{where} refused {sent}: {said}",
                hint="pass an API key of that instance with --token (it needs the "
                "library:read permission to install, market:publish to publish)",
            )
        if status == 403:
            raise Forbidden(f"{where} does not allow this: {said}")
        if status == 404:
            raise NotFound(f"{what} is not in {where}: {said}")
        if status == 409:
            raise Conflict(f"{where} refused {what}: {said}")
        if status == 413:
            raise PayloadTooLarge(f"{where} refused {what} as too large: {said}")
        if status == 422:
            raise PackageRefused(f"{where} refused {what}: {said}")
        if status == 429:
            retry = _retry_after(response)
            raise RateLimited(
                f"{where} is rate limiting us: {said}",
                retry_after_s=retry,
                hint=f"retry after {retry:.0f} s",
            )
        raise SomaError(f"{where} answered HTTP {status} for {what}: {said}")

    def _unreachable(self, exc: httpx.HTTPError) -> SomaError:
        reason = str(exc) or type(exc).__name__
        return SomaError(
            f"cannot reach the registry at {self.url}: {reason}",
            hint="check the URL and that `soma serve` is running there and reachable from here",
        )

    def _not_a_registry(self, what: str) -> SomaError:
        return SomaError(
            f"{self.url} did not answer like a Soma registry for {what}",
            hint="the URL must be a Soma gateway's base URL, e.g. http://host:8765",
        )


def _base_url(url: str) -> str:
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise SomaError(
            f"invalid registry URL {url!r}",
            hint="give the other Soma gateway's base URL, e.g. http://registry.example:8765",
        )
    if parts.username or parts.password:
        # The URL is recorded with every install and shown in listings.
        raise SomaError(
            "the registry URL must not hold credentials",
            hint="pass the other instance's API key as the token (--token) instead",
        )
    return text.removesuffix(API_PREFIX)


def _seg(value: str) -> str:
    """A path segment: a name with a slash or dot-dot must not reach another endpoint."""
    return quote(value, safe="")


def _server_message(response: httpx.Response) -> str:
    """The registry's own error message; anything else is summed up by its status alone, since a
    gateway installing from a user-given URL must not echo what some other server said."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
    return response.reason_phrase or f"HTTP {response.status_code}"


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0
