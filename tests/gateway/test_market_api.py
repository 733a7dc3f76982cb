"""The marketplace registry over HTTP, against a live gateway: the default catalogue, the
publish flow and its refusals, yanks, ratings, downloads, and the installer's HTTP client."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from soma.marketplace.archive import unpack
from soma.marketplace.manifest import Signature
from soma.marketplace.signing import KeyRing, PublisherKey, sign, verify_package
from soma.marketplace.sources import HttpSource
from tests.gateway.conftest import LiveGateway
from tests.marketplace._build import capsule_dir, signed

API = "/api/v1/market"


def client(gateway: LiveGateway, tenant: str = "acme", role: Any = "developer") -> httpx.Client:
    headers = {"Authorization": f"Bearer {gateway.key(tenant, role)}"}
    return httpx.Client(base_url=gateway.url + API, headers=headers, timeout=30)


def upload(data: bytes, signature: Signature) -> dict[str, Any]:
    return {
        "archive": base64.b64encode(data).decode("ascii"),
        "signature": signature.model_dump(mode="json"),
    }


def test_the_builtin_catalogue_is_there_after_startup(gateway: LiveGateway) -> None:
    with client(gateway, role="viewer") as http:
        found = http.get("/packages", params={"q": "product specification"}).json()
        assert "write-spec" in [p["name"] for p in found[:3]]
        summary = next(p for p in found if p["name"] == "write-spec")
        assert (summary["publisher"], summary["kind"], summary["latest"]) == (
            "soma",
            "capsule",
            "1.0.0",
        )
        personas = http.get("/packages", params={"kind": "persona", "limit": 100}).json()
        assert "developer" in {p["name"] for p in personas}
        assert {p["kind"] for p in personas} == {"persona"}

        versions = http.get("/packages/write-spec").json()
        assert [v["manifest"]["version"] for v in versions] == ["1.0.0"]
        response = http.get("/packages/write-spec/1.0.0/archive")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/gzip"
        data = response.content
        assert response.headers["x-soma-digest"] == hashlib.sha256(data).hexdigest()

        keys = http.get("/publishers/soma/keys").json()
        ring = KeyRing()
        for key in keys:
            ring.add("soma", key)
        signature = Signature.model_validate(versions[0]["signature"])
        assert verify_package(data, signature, ring).manifest.name == "write-spec"
        assert http.get("/packages/write-spec/1.0.0").json()["downloads"] == 1


def test_publish_flow_and_its_refusals(gateway: LiveGateway, tmp_path: Path) -> None:
    key = PublisherKey.generate("acme-tools")
    data, signature = signed(capsule_dir(tmp_path / "a", "lint-sql"), key)
    with client(gateway) as http:
        refused = http.post("/packages", json=upload(data, signature))
        assert refused.status_code == 422, refused.text
        assert "register" in refused.json()["error"]["message"]

        registered = http.post("/publishers/acme-tools/keys", json={"public_key": key.public_text})
        assert registered.status_code == 201, registered.text
        assert registered.json()["key_id"] == key.key_id
        assert http.get("/publishers/acme-tools/keys").json() == [key.public_text]

        published = http.post("/packages", json=upload(data, signature))
        assert published.status_code == 201, published.text
        assert published.json()["manifest"]["publisher"] == "acme-tools"
        assert published.json()["digest"] == signature.digest

        again = http.post("/packages", json=upload(data, signature))
        assert again.status_code == 409
        assert "immutable" in again.json()["error"]["message"]

        tampered = data[:-9] + bytes([data[-9] ^ 1]) + data[-8:]
        bad = http.post("/packages", json=upload(tampered, signature))
        assert bad.status_code == 422
        stranger = PublisherKey.generate("acme-tools")
        other, other_signature = signed(capsule_dir(tmp_path / "b", "lint-sql", "1.1.0"), stranger)
        unregistered = http.post("/packages", json=upload(other, other_signature))
        assert unregistered.status_code == 422
        assert "not registered" in unregistered.json()["error"]["message"]
        not_base64 = http.post("/packages", json={**upload(data, signature), "archive": "%%"})
        assert not_base64.status_code == 422
        assert not_base64.json()["error"]["field"] == "archive"

        assert [v["manifest"]["version"] for v in http.get("/packages/lint-sql").json()] == [
            "1.0.0"
        ]


def test_another_tenant_may_read_but_not_publish_yank_or_add_keys(
    gateway: LiveGateway, tmp_path: Path
) -> None:
    key = PublisherKey.generate("acme-tools")
    data, signature = signed(capsule_dir(tmp_path / "a", "lint-sql"), key)
    with client(gateway) as acme:
        acme.post("/publishers/acme-tools/keys", json={"public_key": key.public_text})
        assert acme.post("/packages", json=upload(data, signature)).status_code == 201

    intruder_key = PublisherKey.generate("acme-tools")
    newer, newer_signature = signed(capsule_dir(tmp_path / "b", "lint-sql", "2.0.0"), key)
    with client(gateway, tenant="beta") as beta:
        assert beta.get("/packages/lint-sql").status_code == 200
        assert beta.get("/packages/lint-sql/1.0.0/archive").content == data
        claim = beta.post(
            "/publishers/acme-tools/keys", json={"public_key": intruder_key.public_text}
        )
        assert claim.status_code == 403
        assert beta.post("/packages", json=upload(newer, newer_signature)).status_code == 403
        yank = beta.post("/packages/lint-sql/1.0.0/yank", json={"reason": "mine"})
        assert yank.status_code == 403
        rating = beta.post("/packages/lint-sql/rating", json={"stars": 4})
        assert rating.status_code == 200
        assert rating.json() == {"name": "lint-sql", "stars": 4, "rating": 4.0, "ratings": 1}
        assert beta.post("/packages/lint-sql/rating", json={"stars": 6}).status_code == 422

    with client(gateway) as acme:
        yanked = acme.post("/packages/lint-sql/1.0.0/yank", json={"reason": "use 2.0.0"})
        assert yanked.status_code == 200
        assert (yanked.json()["yanked"], yanked.json()["yank_reason"]) == (True, "use 2.0.0")
        found = acme.get("/packages", params={"q": "lint-sql"}).json()
        assert "lint-sql" not in [p["name"] for p in found]


def test_a_viewer_may_browse_but_not_publish(gateway: LiveGateway, tmp_path: Path) -> None:
    key = PublisherKey.generate("viewers")
    data, signature = signed(capsule_dir(tmp_path, "lint-sql"), key)
    with client(gateway, role="viewer") as http:
        assert http.get("/packages").status_code == 200
        keys = http.post("/publishers/viewers/keys", json={"public_key": key.public_text})
        assert keys.status_code == 403
        assert http.post("/packages", json=upload(data, signature)).status_code == 403


def test_unknown_packages_and_versions_are_404(gateway: LiveGateway) -> None:
    with client(gateway, role="viewer") as http:
        assert http.get("/packages/nope").status_code == 404
        assert http.get("/packages/write-spec/9.9.9").status_code == 404
        assert http.get("/packages/write-spec/9.9.9/archive").status_code == 404
        assert http.get("/publishers/nobody/keys").json() == []
        assert http.get("/packages", params={"limit": 0}).status_code == 422


async def test_the_installers_http_source_speaks_this_api(
    gateway: LiveGateway, tmp_path: Path
) -> None:
    key = PublisherKey.generate("acme-tools")
    data, signature = signed(capsule_dir(tmp_path, "lint-sql"), key)
    token = gateway.key("acme", "developer")
    with client(gateway) as http:
        http.post("/publishers/acme-tools/keys", json={"public_key": key.public_text})
    async with HttpSource(gateway.url, token) as source:
        published = await source.publish(data, signature)
        assert published.manifest.name == "lint-sql"
        assert [v.digest for v in await source.versions("lint-sql")] == [signature.digest]
        assert unpack(await source.archive("lint-sql", "1.0.0")).manifest.name == "lint-sql"
        assert await source.publisher_keys("acme-tools") == [key.public_text]
        assert "lint-sql" in [s.name for s in await source.search("lint")]
        yanked = await source.yank("lint-sql", "1.0.0", "superseded")
        assert yanked.yanked


@pytest.mark.parametrize("stars", [0, 6])
def test_ratings_out_of_range_are_refused(gateway: LiveGateway, stars: int) -> None:
    with client(gateway) as http:
        response = http.post("/packages/write-spec/rating", json={"stars": stars})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "stars"


def test_a_signature_over_other_bytes_is_refused(gateway: LiveGateway, tmp_path: Path) -> None:
    key = PublisherKey.generate("acme-tools")
    data, _ = signed(capsule_dir(tmp_path / "a", "lint-sql"), key)
    other, _ = signed(capsule_dir(tmp_path / "b", "lint-sql", "1.0.1"), key)
    with client(gateway) as http:
        http.post("/publishers/acme-tools/keys", json={"public_key": key.public_text})
        response = http.post("/packages", json=upload(data, sign(other, key)))
    assert response.status_code == 422
    assert "changed after signing" in response.json()["error"]["message"]


def test_an_install_reaches_the_tenants_library_and_models_only(
    gateway: LiveGateway, tmp_path: Path
) -> None:
    """Installed over the API, a capsule is usable by its tenant at once (library routes,
    /v1/models), without a restart — and other tenants do not see it."""
    key = PublisherKey.generate("acme-tools")
    data, signature = signed(capsule_dir(tmp_path / "a", "lint-sql"), key)
    admin = {"Authorization": f"Bearer {gateway.key('acme', 'admin')}"}
    other = {"Authorization": f"Bearer {gateway.key('globex', 'admin')}"}
    with httpx.Client(base_url=gateway.url, headers=admin, timeout=30) as http:
        assert http.get("/api/v1/capsules/lint-sql").status_code == 404
        http.post(
            "/api/v1/market/publishers/acme-tools/keys", json={"public_key": key.public_text}
        ).raise_for_status()
        http.post("/api/v1/market/packages", json=upload(data, signature)).raise_for_status()
        http.post(
            "/api/v1/market/trust", json={"publisher": "acme-tools", "public_key": key.public_text}
        ).raise_for_status()
        installed = http.post("/api/v1/market/installed", json={"name": "lint-sql"})
        assert installed.status_code == 201, installed.text

        assert http.get("/api/v1/capsules/lint-sql").json()["version"] == "1.0.0"
        models = {m["id"] for m in http.get("/v1/models").json()["data"]}
        assert "capsule:lint-sql" in models
        others = httpx.get(f"{gateway.url}/api/v1/capsules/lint-sql", headers=other)
        assert others.status_code == 404

        assert http.delete("/api/v1/market/installed/lint-sql").status_code == 204
        assert http.get("/api/v1/capsules/lint-sql").status_code == 404
