"""`soma notify`: add, list, test, deliveries, disable, remove; mistakes exit 2 with a hint."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from soma.cli.notify_cmds import notify_app
from soma.identity import load_secret_key
from soma.notify.signing import verify
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import Store
from tests.notify.conftest import Receiver

runner = CliRunner()
SECRET = "whsec-cli-0123456789"


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    settings = Settings(home=tmp_path)
    with Store.open(settings.store_url) as store:
        store.create_tenant("acme", "Acme")
        Vault(store, load_secret_key(settings)).set("acme", "hooks.signing", SECRET)
    return {"SOMA_HOME": str(tmp_path), "COLUMNS": "250"}


def notify(home: dict[str, str], *args: str) -> tuple[int, str, str]:
    # Invoked on the sub-app directly, so the test does not depend on main.py's registration.
    result = runner.invoke(notify_app, list(args), env=home)
    return result.exit_code, result.stdout, result.stderr


def rule_ids(home: dict[str, str]) -> list[str]:
    with Store.open(Settings(home=Path(home["SOMA_HOME"])).store_url) as store:
        return [r.id for r in store.list_notification_rules("acme")]


def test_add_list_test_deliveries_remove(home: dict[str, str], receiver: Receiver) -> None:
    code, out, err = notify(
        home,
        "add",
        "--tenant",
        "acme",
        "--event",
        "review.needed",
        "--webhook",
        receiver.url,
        "--secret",
        "hooks.signing",
    )
    assert code == 0, err
    [rule_id] = rule_ids(home)
    assert f"added rule {rule_id}: review.needed → webhook" in out

    code, out, err = notify(home, "list", "--tenant", "acme")
    assert code == 0, err
    assert rule_id in out
    assert "hooks.signing" in out

    code, out, err = notify(home, "test", rule_id, "--tenant", "acme")
    assert code == 0, err
    assert "delivered a test notification" in out
    [got] = receiver.requests
    verify(SECRET, got.body, got.headers["X-Soma-Signature"])

    code, out, err = notify(home, "deliveries", "--tenant", "acme")
    assert code == 0, err

    code, out, err = notify(home, "disable", rule_id, "--tenant", "acme")
    assert code == 0, err
    assert "disabled" in out

    code, out, err = notify(home, "remove", rule_id, "--tenant", "acme")
    assert code == 0, err
    assert rule_ids(home) == []


def test_test_reports_a_failed_delivery(home: dict[str, str], receiver: Receiver) -> None:
    receiver.status = 410
    notify(home, "add", "-t", "acme", "-e", "project.finished", "--webhook", receiver.url)
    [rule_id] = rule_ids(home)
    code, _, err = notify(home, "test", rule_id, "-t", "acme")
    assert code == 1
    assert "not delivered (permanent)" in err
    assert "HTTP 410" in err


def test_slack_and_email_rules(home: dict[str, str]) -> None:
    code, out, err = notify(
        home, "add", "-t", "acme", "-e", "budget.warning", "--slack", "--secret", "hooks.signing"
    )
    assert code == 0, err
    assert "(URL in secret hooks.signing)" in out
    code, out, err = notify(
        home, "add", "-t", "acme", "-e", "project.finished", "--email", "ops@acme.test"
    )
    assert code == 0, err
    assert len(rule_ids(home)) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook", "https://a.test/h", "--email", "x@a.test"], "exactly one destination"),
        ([], "exactly one destination"),
        (["--slack"], "needs the incoming-webhook URL"),
        (["--email", "x@a.test", "--secret", "hooks.signing"], "does not apply to email"),
        (["--webhook", "not a url"], "invalid webhook URL"),
    ],
)
def test_mistakes_exit_2_with_a_hint(home: dict[str, str], args: list[str], message: str) -> None:
    code, _, err = notify(home, "add", "-t", "acme", "-e", "review.needed", *args)
    assert code == 2
    assert message in " ".join(err.split())
    assert rule_ids(home) == []


def test_unknown_event_and_other_tenant(home: dict[str, str]) -> None:
    code, _, err = notify(
        home, "add", "-t", "acme", "-e", "review.wanted", "--webhook", "https://a.test/h"
    )
    assert code == 2
    assert "review.needed" in err
    code, _, err = notify(home, "remove", "nope", "-t", "acme")
    assert code == 2
    assert "no notification rule" in err
