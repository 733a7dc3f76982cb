"""`soma admin`: tenants, users and API keys from the command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soma.cli.main import app
from soma.identity import Identity, Permission, load_secret_key
from soma.settings import Settings
from soma.store import Store

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {"SOMA_HOME": str(tmp_path), "COLUMNS": "200"}


def admin(home: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["admin", *args], env=home)
    return result.exit_code, result.stdout, result.stderr


def authenticate(home: dict[str, str], key: str) -> set[Permission]:
    settings = Settings(home=Path(home["SOMA_HOME"]))
    with Store.open(settings.store_url) as store:
        return set(Identity(store, load_secret_key(settings)).authenticate(key).permissions)


def test_tenant_user_key_lifecycle(home: dict[str, str]) -> None:
    code, out, err = admin(
        home, "create-tenant", "acme", "--name", "Acme", "--requests-per-min", "100"
    )
    assert code == 0, err
    assert "created tenant acme (Acme)" in out

    code, out, err = admin(home, "create-user", "acme", "Ann@Acme.test", "--role", "developer")
    assert code == 0, err
    assert "created user ann@acme.test (developer)" in out

    code, out, err = admin(
        home, "create-key", "acme", "ann@acme.test", "--name", "ci",
        "--scope", "projects:read", "--scope", "chat:use", "--expires-in-days", "30",
    )  # fmt: skip
    assert code == 0, err
    key = out.strip()
    assert re.fullmatch(r"soma_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key), out
    assert "will not be shown again" in err
    assert key not in err
    assert authenticate(home, key) == {Permission.PROJECTS_READ, Permission.CHAT}
    key_id = key.split("_")[1]

    code, out, err = admin(home, "list-keys", "acme")
    assert code == 0, err
    assert key_id in out
    assert "ann@acme.test" in out
    assert "active" in out
    assert "projects:read" in out
    assert key.rsplit("_", 1)[-1] not in out

    code, out, err = admin(home, "list-users", "acme")
    assert code == 0, err
    assert "ann@acme.test" in out
    assert "developer" in out

    code, out, err = admin(home, "revoke-key", "acme", key_id)
    assert code == 0, err
    assert f"revoked API key {key_id}" in out
    code, out, _ = admin(home, "list-keys", "acme")
    assert "revoked" in out


def test_key_without_scopes_gets_the_whole_role(home: dict[str, str]) -> None:
    admin(home, "create-user", "default", "rev@x.test", "--role", "reviewer")
    code, out, err = admin(home, "create-key", "default", "rev@x.test", "--name", "laptop")
    assert code == 0, err
    assert "all of the role" in err
    assert "never expires" in err
    assert Permission.REVIEWS_DECIDE in authenticate(home, out.strip())


def test_errors_are_one_clear_line(home: dict[str, str]) -> None:
    code, _, err = admin(home, "create-tenant", "Bad_Id")
    assert code == 2
    assert "invalid tenant id" in err
    assert "Traceback" not in err

    code, _, err = admin(home, "create-user", "nope", "a@b.test", "--role", "viewer")
    assert code == 2
    assert "no tenant 'nope'" in err
    assert "create-tenant nope" in err

    code, _, err = admin(home, "create-user", "default", "a@b.test", "--role", "owner")
    assert code == 2
    assert "unknown role 'owner'" in err

    admin(home, "create-user", "default", "v@b.test", "--role", "viewer")
    code, _, err = admin(
        home, "create-key", "default", "v@b.test", "--name", "x", "--scope", "projects:write"
    )
    assert code == 2
    assert "does not have projects:write" in err

    code, _, err = admin(home, "create-key", "default", "ghost@b.test", "--name", "x")
    assert code == 2
    assert "no user with email 'ghost@b.test'" in err

    code, _, err = admin(home, "revoke-key", "default", "0123456789ab")
    assert code == 2
    assert "no API key '0123456789ab' in tenant 'default'" in err


def test_unknown_scope_is_rejected_by_the_parser(home: dict[str, str]) -> None:
    admin(home, "create-user", "default", "d@b.test", "--role", "developer")
    code, _, err = admin(home, "create-key", "default", "d@b.test", "--name", "x", "--scope", "all")
    assert code == 2
    assert "projects:read" in err  # the choices are listed
