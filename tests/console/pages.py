"""Driving console pages over plain HTTP: sign in with a key, read a page's CSRF token."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from soma.marketplace.registry import Registry
from soma.marketplace.signing import PublisherKey
from tests.gateway.conftest import LiveGateway
from tests.marketplace._build import capsule_dir, signed

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_LOGIN_CSRF = re.compile(r'<input type="hidden" name="csrf" value="([^"]+)">')


def sign_in(client: httpx.Client, api_key: str, next_path: str = "/projects") -> httpx.Response:
    """Log in through the form, as a browser would; returns the login POST's response."""
    form = client.get("/login", params={"next": next_path})
    match = _LOGIN_CSRF.search(form.text)
    assert match, form.text
    return client.post(
        "/login", data={"api_key": api_key, "csrf": match.group(1), "next": next_path}
    )


def csrf_of(client: httpx.Client, path: str = "/projects") -> str:
    page = client.get(path)
    match = _CSRF_META.search(page.text)
    assert match, page.text
    return match.group(1)


def publish_capsule(gateway: LiveGateway, root: Path, name: str, *, trust: bool) -> None:
    """Publish a third-party capsule (publisher ``acme-tools``, owned by tenant acme) into the
    gateway's registry; with ``trust``, tenant acme also trusts its key."""
    store = gateway.services.store
    gateway.key("acme", "admin")
    key = PublisherKey.generate("acme-tools")
    data, signature = signed(capsule_dir(root, name), key)
    registry = Registry(store)
    registry.register_key("acme", "acme-tools", key.public_text)
    registry.publish(data, signature, tenant_id="acme", user_id="publisher")
    if trust:
        store.trust_publisher_key("acme", "acme-tools", key.key_id, key.public_text)
