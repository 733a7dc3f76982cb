"""`soma secrets`: set (hidden or piped), list names, delete; values never printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from soma.cli.secrets_cmds import secrets_app
from soma.identity import load_secret_key
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import Store

runner = CliRunner()
TOKEN = "ghp_cli-secret-VALUE-42"


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    env = {"SOMA_HOME": str(tmp_path), "COLUMNS": "200"}
    with Store.open(Settings(home=tmp_path).store_url) as store:
        store.create_tenant("acme", "Acme")
    return env


def secrets(home: dict[str, str], *args: str, input: str | None = None) -> tuple[int, str, str]:
    # Invoked on the sub-app directly, so the test does not depend on main.py's registration.
    result = runner.invoke(secrets_app, list(args), env=home, input=input)
    return result.exit_code, result.stdout, result.stderr


def stored(home: dict[str, str], name: str) -> str:
    settings = Settings(home=Path(home["SOMA_HOME"]))
    with Store.open(settings.store_url) as store:
        return Vault(store, load_secret_key(settings)).get("acme", name)


def test_set_from_stdin_list_delete(home: dict[str, str]) -> None:
    code, out, err = secrets(home, "set", "acme", "github.token", input=TOKEN + "\n")
    assert code == 0, err
    assert "set secret github.token of tenant acme" in out
    assert TOKEN not in out + err
    assert stored(home, "github.token") == TOKEN

    code, out, err = secrets(home, "set", "acme", "jira.token", "--value", "jira-value")
    assert code == 0, err
    assert stored(home, "jira.token") == "jira-value"

    code, out, err = secrets(home, "list", "acme")
    assert code == 0, err
    assert "github.token" in out
    assert "jira.token" in out
    assert TOKEN not in out
    assert "jira-value" not in out
    assert "cli:" in out

    code, out, err = secrets(home, "delete", "acme", "github.token")
    assert code == 0, err
    code, out, err = secrets(home, "list", "acme")
    assert "github.token" not in out


def test_errors_are_friendly(home: dict[str, str]) -> None:
    code, _out, err = secrets(home, "set", "acme", "Bad Name", "--value", "v")
    assert code != 0
    assert "invalid secret name" in err
    code, _out, err = secrets(home, "delete", "acme", "nope")
    assert code != 0
    assert "has no secret 'nope'" in err
    code, _out, err = secrets(home, "set", "ghost", "x", input="value")
    assert code != 0
    assert "no tenant 'ghost'" in err
    code, _out, err = secrets(home, "set", "acme", "x", input="")
    assert code != 0
    assert "would be empty" in err
