"""The API key lifecycle over HTTP: create (shown once), use, list (never the secret), narrow,
expire and revoke."""

from __future__ import annotations

import time

import httpx

from tests.gateway.conftest import LiveGateway


def test_key_lifecycle(gateway: LiveGateway) -> None:
    owner = {"Authorization": f"Bearer {gateway.key('acme', 'developer')}"}
    with httpx.Client(base_url=gateway.url) as client:
        created = client.post(
            "/api/v1/keys", json={"name": "ci", "scopes": ["projects:read"]}, headers=owner
        )
        assert created.status_code == 201, created.text
        body = created.json()
        secret, key_id = body["key"], body["id"]
        assert secret.startswith(f"soma_{key_id}_")
        new = {"Authorization": f"Bearer {secret}"}

        me = client.get("/api/v1/me", headers=new).json()
        assert me["key_id"] == key_id
        assert me["permissions"] == ["projects:read"]
        assert client.get("/api/v1/projects", headers=new).status_code == 200
        assert client.get("/api/v1/capsules", headers=new).status_code == 403

        listed = client.get("/api/v1/keys", headers=owner).json()
        assert key_id in {k["id"] for k in listed}
        assert secret not in client.get("/api/v1/keys", headers=owner).text
        stored = gateway.services.store.get_api_key(key_id)
        assert secret not in repr(stored)

        assert client.delete(f"/api/v1/keys/{key_id}", headers=owner).status_code == 204
        refused = client.get("/api/v1/me", headers=new)
        assert refused.status_code == 401
        assert "revoked" in refused.json()["error"]["message"]
        assert secret not in refused.text


def test_scopes_cannot_exceed_the_role(gateway: LiveGateway) -> None:
    viewer = {"Authorization": f"Bearer {gateway.key('acme', 'viewer')}"}
    with httpx.Client(base_url=gateway.url) as client:
        response = client.post(
            "/api/v1/keys", json={"name": "sneaky", "scopes": ["projects:write"]}, headers=viewer
        )
    assert response.status_code == 403


def test_users_cannot_revoke_each_others_keys(gateway: LiveGateway) -> None:
    alice = {"Authorization": f"Bearer {gateway.key('acme', 'developer')}"}
    bob = {"Authorization": f"Bearer {gateway.key('acme', 'developer')}"}
    admin = {"Authorization": f"Bearer {gateway.key('acme', 'admin')}"}
    with httpx.Client(base_url=gateway.url) as client:
        key_id = client.post("/api/v1/keys", json={"name": "a"}, headers=alice).json()["id"]
        assert client.delete(f"/api/v1/keys/{key_id}", headers=bob).status_code == 403
        assert key_id not in {k["id"] for k in client.get("/api/v1/keys", headers=bob).json()}
        assert key_id in {k["id"] for k in client.get("/api/v1/keys", headers=admin).json()}
        assert client.delete(f"/api/v1/keys/{key_id}", headers=admin).status_code == 204


def test_expired_key_is_refused(gateway: LiveGateway) -> None:
    identity = gateway.services.identity
    gateway.key("acme", "viewer")
    user = gateway.services.store.list_users("acme")[0]
    _, secret = identity.create_key("acme", user.id, "short", expires_in_s=1)
    time.sleep(1.1)
    response = httpx.get(f"{gateway.url}/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_admin_adds_users(gateway: LiveGateway) -> None:
    admin = {"Authorization": f"Bearer {gateway.key('acme', 'admin')}"}
    with httpx.Client(base_url=gateway.url) as client:
        made = client.post(
            "/api/v1/users", json={"email": "new@acme.test", "role": "reviewer"}, headers=admin
        )
        assert made.status_code == 201, made.text
        again = client.post(
            "/api/v1/users", json={"email": "new@acme.test", "role": "reviewer"}, headers=admin
        )
        assert again.status_code == 409
        bad = client.post(
            "/api/v1/users", json={"email": "nope", "role": "reviewer"}, headers=admin
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "email"


def test_identity_changes_are_audited_with_their_actor(gateway: LiveGateway) -> None:
    admin_key = gateway.key("acme", "admin")
    admin = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=gateway.url, headers=admin) as client:
        me = client.get("/api/v1/me").json()
        user = client.post("/api/v1/users", json={"email": "x@acme.test", "role": "viewer"})
        key = client.post("/api/v1/keys", json={"name": "ci"}).json()
        client.delete(f"/api/v1/keys/{key['id']}")
        records = [r for r in client.get("/api/v1/audit").json() if r["actor"] != "system"]
    actor = f"user:{me['user_id']} via key {me['key_id']}"
    assert [(r["actor"], r["tool"]) for r in records] == [
        (actor, "user.create"),
        (actor, "key.create"),
        (actor, "key.revoke"),
    ]
    assert user.json()["id"] in records[0]["reason"]
    assert key["key"] not in str(records)
    assert gateway.services.store.verify_audit("acme").ok
