"""Hostile names in every user-supplied name: each is refused with a clear 4xx / SomaError that
names the field, or stored and used safely (no path outside the workspace or home, no 5xx, no
file created outside ``tmp_path``). Also: oversized bodies on every POST/PUT route are 413."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from pydantic import ValidationError

from soma.errors import SomaError, SpecError
from soma.gateway.app import build_services, create_app
from soma.identity.service import Identity
from soma.marketplace.archive import _path_problem
from soma.memory.types import capsule_scope, persona_scope, project_scope
from soma.orchestrator.launch import new_project_id
from soma.secrets.vault import check_name
from soma.settings import Settings
from soma.specs.loader import parse_spec
from soma.workspace.resources import ResourceRequest
from soma.workspace.workspace import Workspace
from tests.gateway.conftest import (  # noqa: F401  (fixtures used by name)
    LiveGateway,
    gateway,
    gateway_settings,
    model_table,
    serve_in_thread,
)

HOSTILE: dict[str, str] = {
    "rtl-override": "invoice\u202egpj.exe",
    "zero-width": "ad\u200bmin",
    "emoji": "rocket-\U0001f680",
    "nfd": "cafe\u0301",
    "nfc": "caf\u00e9",
    "dotdot": "../../etc/passwd",
    "backslash": "..\\..\\windows\\system32",
    "absolute": "/etc/passwd",
    "home": "~/.ssh/id_rsa",
    "dot": "..",
    "nul": "ok\x00.txt",
    "control": "a\x1b[31mred\r\nX-Injected: 1",
    "shell": "$(touch pwned); `id` | rm -rf * &&",
    "long": "a" * 5000,
    "empty": "",
}
NAMES = pytest.mark.parametrize("name", list(HOSTILE.values()), ids=list(HOSTILE))
SAFE_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]*")


def inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


@pytest.fixture
def no_stray_files(tmp_path: Path) -> Iterator[None]:
    """Nothing may appear next to tmp_path or in the working directory."""
    watched = [tmp_path.parent, Path.cwd()]
    before = [set(os.listdir(d)) for d in watched]
    yield
    for directory, names in zip(watched, before, strict=True):
        assert set(os.listdir(directory)) - names <= {tmp_path.name}, directory


# --- Python entry points ------------------------------------------------------------------------


@NAMES
def test_python_entry_points(name: str, tmp_path: Path, no_stray_files: None) -> None:
    root = tmp_path / "projects"
    root.mkdir()

    # project id from a goal: always a safe slug, and its workspace stays under the root
    project = new_project_id(name)
    assert SAFE_SLUG.fullmatch(project), project
    assert len(project) <= 47
    assert inside(Workspace.open(root, project).path, root)

    # project id given directly
    ws, error = attempt(Workspace.open, root, name)
    assert refused(error, "project id") or (inside(ws.path, root) and ws.path != root.resolve())

    # tool file paths go through Workspace.resolve
    resolved, error = attempt(Workspace.open(root, "p").resolve, name)
    assert refused(error, "path") or inside(resolved, root / "p")

    # secret names
    value, error = attempt(check_name, name)
    assert refused(error, "secret name") or SAFE_SLUG.fullmatch(value)

    # capsule / persona names in specs
    for kind, extra in (
        ("persona", "role: r\ngoal: g\n"),
        ("capsule", "description: d\npersona: p\ninstructions: i\n"),
    ):
        text = f"kind: {kind}\nname: {_yaml_quote(name)}\nversion: 1.0.0\n{extra}"
        spec, error = attempt(parse_spec, text)
        if error is not None:
            assert isinstance(error, SpecError)
            assert error.field == "name", str(error)
            assert error.line == 2
        else:
            assert SAFE_SLUG.fullmatch(spec.name)

    # package archive member paths: either refused or a relative path that stays inside
    if _path_problem(name) is None:
        assert not PurePosixPath(name).is_absolute()
        assert inside(tmp_path / "pkg" / name, tmp_path / "pkg")

    # resource names, for every kind
    for kind in ("git.local", "github.repo", "aws.s3_bucket"):
        request, error = attempt(ResourceRequest, kind=kind, name=name)
        assert refused(error, "name") or (".." not in request.key and "\x00" not in request.key)

    # memory scopes are plain labels: the name is kept as given, after a fixed prefix
    assert project_scope(name) == f"project:{name}"
    assert capsule_scope(name).startswith("capsule:")
    assert persona_scope(name).startswith("persona:")


def attempt(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, Exception | None]:
    """``fn``'s result, or the refusal it raised (a SomaError, or pydantic's ValidationError)."""
    try:
        return fn(*args, **kwargs), None
    except (SomaError, ValidationError) as error:
        return None, error


def refused(error: Exception | None, field: str) -> bool:
    """True when ``error`` is a refusal that names ``field``; False when nothing was raised."""
    if error is None:
        return False
    assert field in str(error), str(error)
    return True


def _yaml_quote(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\x00", "\\0")
    escaped = escaped.replace("\x1b", "\\e").replace("\r", "\\r").replace("\n", "\\n")
    return f'"{escaped}"'


@NAMES
def test_tenant_ids_and_emails(name: str, tmp_path: Path, no_stray_files: None) -> None:
    services = build_services(
        Settings(home=tmp_path, secret_key="k" * 40, model="scripted", temporal_address=None),
        models={}.__getitem__,
    )
    identity: Identity = services.identity
    tenant, error = attempt(identity.create_tenant, name)
    assert refused(error, "tenant id") or re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", tenant.id)
    identity.create_tenant("acme")
    for email in (f"{name}@acme.test", f"ann@{name}", name):
        user, error = attempt(identity.create_user, "acme", email, "viewer", name=name[:255])
        assert refused(error, "email") or not re.search(r"[\x00-\x1f\x7f\s]", user.email)


# --- HTTP entry points --------------------------------------------------------------------------


def _no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.request.url}: {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert body["error"]["message"]
        assert "Traceback" not in response.text


@NAMES
def test_http_entry_points(
    name: str,
    gateway: LiveGateway,  # noqa: F811
    tmp_path: Path,
    no_stray_files: None,
) -> None:
    segment = quote(name, safe="") or "%20"
    headers = {"Authorization": f"Bearer {gateway.key('acme', 'admin')}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        put = client.put(f"/api/v1/secrets/{segment}", json={"value": "s3cret-value"})
        _no_server_error(put)
        if put.status_code < 300:
            assert name in [s["name"] for s in client.get("/api/v1/secrets").json()]
        elif put.status_code == 404:  # an encoded "/" or ".." changes the route itself
            assert "/" in name or name == ".."
        else:
            assert "secret name" in put.json()["error"]["message"]
        for path in (
            f"/api/v1/secrets/{segment}",
            f"/api/v1/capsules/{segment}",
            f"/api/v1/personas/{segment}",
            f"/api/v1/projects/{segment}",
            f"/api/v1/projects/{segment}/runs/{segment}",
            f"/api/v1/market/packages/{segment}",
            f"/api/v1/market/packages/{segment}/1.0.0",
            f"/api/v1/market/publishers/{segment}/keys",
            f"/api/v1/market/installed/{segment}",
        ):
            method = (
                "DELETE" if path.endswith(("installed/" + segment, "secrets/" + segment)) else "GET"
            )
            _no_server_error(client.request(method, path))
        bodies: list[tuple[str, dict[str, Any]]] = [
            ("/api/v1/users", {"email": f"{name}@acme.test", "role": "viewer", "name": name[:200]}),
            ("/api/v1/keys", {"name": name[:100] or "k"}),
            ("/api/v1/projects", {"goal": name or "x"}),
            ("/api/v1/market/installed", {"name": name[:64] or "x"}),
            (
                "/api/v1/notifications/rules",
                {"event_type": "project.completed", "channel": "webhook", "target": name[:2048]},
            ),
            (
                "/api/v1/notifications/rules",
                {"event_type": "project.completed", "channel": "email", "target": name[:2048]},
            ),
            (
                "/api/v1/notifications/rules",
                {
                    "event_type": "project.completed",
                    "channel": "webhook",
                    "target": "https://example.test/h",
                    "secret_name": name[:128],
                },
            ),
        ]
        for path, body in bodies:
            response = client.post(path, json=body)
            _no_server_error(response) if path != "/api/v1/projects" else None
            if path == "/api/v1/projects":  # no engine here: 503 after validation, never 500
                assert response.status_code in {201, 202, 400, 404, 409, 422, 503}, response.text
        assert client.get("/healthz").json() == {"status": "ok"}
    home = tmp_path.resolve()
    for root, dirs, files in os.walk(home):
        for entry in [*dirs, *files]:
            assert inside(Path(root) / entry, home)


# --- oversized bodies ---------------------------------------------------------------------------

LIMIT = 2048


@pytest.fixture
def small_gateway(gateway_settings: Settings) -> Iterator[LiveGateway]:  # noqa: F811
    settings = gateway_settings.model_copy(update={"max_body_bytes": LIMIT})
    services = build_services(settings, models={}.__getitem__)
    url, stop = serve_in_thread(create_app(services))
    try:
        yield LiveGateway(url, services)
    finally:
        stop()


def _body_routes(app_doc: dict[str, Any]) -> list[tuple[str, str]]:
    routes = []
    for path, operations in app_doc["paths"].items():
        for method, operation in operations.items():
            if method in {"post", "put"} and "requestBody" in operation:
                routes.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return routes


def _declared_without_body(url: str, method: str, path: str, key: str) -> int:
    """Announce 10 MB, send only the headers: the answer must come without the body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{".encode()
        )
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    return int(status_line.split()[1])


def test_oversized_bodies_on_every_post_and_put_route(small_gateway: LiveGateway) -> None:
    routes = _body_routes(small_gateway_app_doc(small_gateway))
    assert len(routes) >= 15
    key = small_gateway.key("acme", "admin")
    auth = {"Authorization": f"Bearer {key}", "content-type": "application/json"}

    def chunks() -> Iterator[bytes]:
        yield b'{"x": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}'

    with httpx.Client(base_url=small_gateway.url, timeout=10) as client:
        for method, path in routes:
            assert _declared_without_body(small_gateway.url, method, path, key) == 413, path
            declared = client.request(method, path, content=b"{" + b" " * 5000 + b"}", headers=auth)
            streamed = client.request(method, path, content=chunks(), headers=auth)
            for response in (declared, streamed):
                assert response.status_code == 413, f"{method} {path}: {response.text}"
                assert response.json()["error"]["type"] == "payload_too_large"
        assert client.get("/healthz").json() == {"status": "ok"}
        small = client.post("/api/v1/keys", json={"name": "after"}, headers=auth)
        assert small.status_code == 201, small.text
    print(
        f"\noversized bodies: {len(routes)} POST/PUT routes x 3 ways (declared, headers, chunked)"
    )


def small_gateway_app_doc(live: LiveGateway) -> dict[str, Any]:
    return httpx.get(f"{live.url}/openapi.json", timeout=10).json()
