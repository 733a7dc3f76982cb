"""Federation: instance B installs from instance A's registry over HTTP.

Two real `soma serve` processes on loopback with their own SOMA_HOME (so their own stores,
registries and libraries). A publisher publishes to A over HTTP with the CLI; B installs a
package with two dependencies from A's URL, through B's installs API and through the CLI.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from soma.cli.main import app
from soma.identity.secret import load_secret_key
from soma.identity.service import Identity
from soma.marketplace.installer import load_tenant_library
from soma.marketplace.signing import PublisherKey
from soma.settings import Settings
from soma.store import Store
from tests.marketplace._build import capsule_dir, persona_file
from tests.serve_process import start_gateway

pytestmark = pytest.mark.slow

runner = CliRunner()


@dataclass
class Instance:
    home: Path
    url: str
    tenant: str
    key: str
    admin_key: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def admin_headers(self) -> dict[str, str]:
        """Trusting a publisher key is for tenant admins only."""
        return {"Authorization": f"Bearer {self.admin_key}"}


def _prepare(home: Path, tenant: str) -> tuple[str, str]:
    """A tenant with a developer and an admin, and a key of each, written before the gateway
    starts."""
    settings = Settings(home=home)
    with Store.open(settings.store_url) as store:
        identity = Identity(store, load_secret_key(settings))
        identity.create_tenant(tenant)
        user = identity.create_user(tenant, f"dev@{tenant}.test", "developer")
        _, key = identity.create_key(tenant, user.id, "federation")
        admin = identity.create_user(tenant, f"admin@{tenant}.test", "admin")
        _, admin_key = identity.create_key(tenant, admin.id, "federation-admin")
    return key, admin_key


def _start(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_gateway(home)


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[tuple[Instance, Instance]]:
    started: list[subprocess.Popen[bytes]] = []
    pair = []
    try:
        for name, tenant in (("a", "alpha"), ("b", "beta")):
            home = tmp_path / name
            key, admin_key = _prepare(home, tenant)
            process, url = _start(home)
            started.append(process)
            pair.append(Instance(home, url, tenant, key, admin_key))
        yield pair[0], pair[1]
    finally:
        for process in started:
            process.terminate()
            process.wait(15)


def _cli(home: Path, *args: str) -> str:
    result = runner.invoke(app, ["market", *args], env={"SOMA_HOME": str(home), "COLUMNS": "200"})
    assert result.exit_code == 0, f"soma market {args}: {result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def _publish_to(registry: Instance, workdir: Path) -> PublisherKey:
    """The publisher's own machine (its own SOMA_HOME) publishes three packages to A: report
    depends on the capsule summarize and the persona analyst."""
    home = workdir / "publisher"
    key_out = runner.invoke(app, ["market", "keygen", "acme"], env={"SOMA_HOME": str(home)})
    assert key_out.exit_code == 0, key_out.stderr
    remote = ("--registry", registry.url, "--token", registry.key)
    _cli(home, "register-key", "acme", *remote)
    src = workdir / "src"
    sources = [
        persona_file(src, "analyst"),
        capsule_dir(src, "summarize", "1.0.0"),
        capsule_dir(src, "summarize", "1.3.0"),
        capsule_dir(src, "report", persona="analyst@^1", depends={"summarize": "^1.0"}),
    ]
    for index, source in enumerate(sources):
        archive = workdir / f"pkg{index}.soma"
        _cli(home, "pack", str(source), "--publisher", "acme", "-o", str(archive))
        _cli(home, "sign", str(archive))
        _cli(home, "publish", str(archive), *remote)
    return PublisherKey.load(home / "market" / "keys" / "acme.key")


def test_install_from_another_instance(
    instances: tuple[Instance, Instance], tmp_path: Path
) -> None:
    a, b = instances
    key = _publish_to(a, tmp_path)
    listed = httpx.get(f"{a.url}/api/v1/market/packages/report", headers=a.headers()).json()
    assert [v["manifest"]["version"] for v in listed] == ["1.0.0"]

    # B's tenant does not trust acme yet: refused before anything is downloaded or written.
    body = {"name": "report", "range": "^1", "registry": a.url, "token": a.key}
    refused = httpx.post(
        f"{b.url}/api/v1/market/installed", json=body, headers=b.headers(), timeout=60
    )
    assert refused.status_code == 422, refused.text
    assert "not trusted for publisher acme" in refused.json()["error"]["message"]

    trusted = httpx.post(
        f"{b.url}/api/v1/market/trust",
        json={"publisher": "acme", "public_key": key.public_text},
        headers=b.headers(),
    )
    assert trusted.status_code == 403, "a developer may not widen the tenant's trust"
    trusted = httpx.post(
        f"{b.url}/api/v1/market/trust",
        json={"publisher": "acme", "public_key": key.public_text},
        headers=b.admin_headers(),
    )
    assert trusted.status_code == 201, trusted.text
    assert trusted.json()["key_id"] == key.key_id

    response = httpx.post(
        f"{b.url}/api/v1/market/installed", json=body, headers=b.headers(), timeout=60
    )
    assert response.status_code == 201, response.text
    assert [f"{p['name']}@{p['version']}" for p in response.json()] == [
        "summarize@1.3.0",
        "analyst@1.0.0",
        "report@1.0.0",
    ]

    library = b.home / "tenants" / b.tenant / "library"
    assert (library / "capsules/report/capsule.yaml").is_file()
    assert (library / "capsules/summarize/capsule.yaml").is_file()
    assert (library / "personas/analyst.yaml").is_file()
    assert load_tenant_library(Settings(home=b.home), b.tenant).capsule("report").name == "report"
    assert not (a.home / "tenants").exists()  # nothing was installed on A

    installed = httpx.get(f"{b.url}/api/v1/market/installed", headers=b.headers()).json()
    assert {(p["name"], p["source"]) for p in installed} == {
        ("analyst", a.url),
        ("summarize", a.url),
        ("report", a.url),
    }
    with Store.open(Settings(home=b.home).store_url) as store:
        assert {p.name for p in store.list_installs(b.tenant)} == {"analyst", "summarize", "report"}

    # B's installs API removes it again; its dependencies stay until nothing needs them.
    gone = httpx.delete(f"{b.url}/api/v1/market/installed/report", headers=b.headers())
    assert gone.status_code == 204, gone.text
    freed = httpx.delete(f"{b.url}/api/v1/market/installed/summarize", headers=b.headers())
    assert freed.status_code == 204, freed.text
    assert not (library / "capsules/report").exists()


def test_install_from_another_instance_with_the_cli(
    instances: tuple[Instance, Instance], tmp_path: Path
) -> None:
    a, b = instances
    key = _publish_to(a, tmp_path)
    _cli(b.home, "trust", "acme", key.public_text)

    bad = runner.invoke(
        app,
        ["market", "install", "report", "--registry", a.url, "--token", "soma_wrong"],
        env={"SOMA_HOME": str(b.home)},
    )
    assert bad.exit_code == 2
    assert f"the registry at {a.url} refused the token given" in bad.stderr

    out = _cli(b.home, "install", "report", "--registry", a.url, "--token", a.key)
    assert f"installing report from {a.url} into tenant default" in out
    assert "installed summarize@1.3.0, analyst@1.0.0, report@1.0.0" in out
    assert (b.home / "library/capsules/report/capsule.yaml").is_file()
    assert "report" in _cli(b.home, "info", "report", "--registry", a.url, "--token", a.key)
