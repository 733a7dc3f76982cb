"""`soma market` against this instance's own registry: publish, find, trust, install, remove."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from soma.cli.main import app
from soma.settings import Settings
from soma.store import Store
from tests.marketplace._build import capsule_dir, persona_file

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"SOMA_HOME": str(tmp_path / "home"), "COLUMNS": "250"}


def soma(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["market", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def ok(env: dict[str, str], *args: str) -> str:
    code, out, err = soma(env, *args)
    assert code == 0, f"soma market {' '.join(args)} exited {code}: {out}{err}"
    return out + err


@pytest.fixture
def published(env: dict[str, str], tmp_path: Path) -> str:
    """Publisher acme's key, registered; analyst, summarize 1.0.0 and 1.1.0 and report (which
    needs both) published. Returns the public key."""
    code, public, err = soma(env, "keygen", "acme")
    assert code == 0, err
    public = public.strip()
    ok(env, "register-key", "acme")
    src = tmp_path / "src"
    sources = [
        persona_file(src, "analyst"),
        capsule_dir(src, "summarize", "1.0.0"),
        capsule_dir(src, "summarize", "1.1.0"),
        capsule_dir(
            src, "report", persona="analyst@^1", depends={"summarize": "^1.0"}, tools=("fs.write",)
        ),
    ]
    for index, source in enumerate(sources):
        archive = tmp_path / f"pkg{index}.soma"
        ok(env, "pack", str(source), "--publisher", "acme", "-o", str(archive))
        ok(env, "sign", str(archive))
        out = ok(env, "publish", str(archive))
        assert "published" in out
    return public


def test_install_list_and_uninstall(env: dict[str, str], published: str) -> None:
    code, _, err = soma(env, "install", "report")
    assert code == 2
    assert "not trusted for publisher acme" in err
    assert "soma market trust acme" in err

    assert "now trusts acme's key" in ok(env, "trust", "acme", published)
    out = ok(env, "install", "report@^1")
    assert "installing report@^1 from local into tenant default" in out
    assert "resolved report@^1: summarize@1.1.0, analyst@1.0.0, report@1.0.0" in out
    assert "verified summarize@1.1.0" in out
    assert "installed summarize@1.1.0, analyst@1.0.0, report@1.0.0" in out
    home = Path(env["SOMA_HOME"])
    assert (home / "library/capsules/report/capsule.yaml").is_file()
    assert (home / "library/personas/analyst.yaml").is_file()

    assert "already installed" in ok(env, "install", "report")
    listing = ok(env, "list")
    assert "report" in listing
    assert "local" in listing

    code, _, err = soma(env, "uninstall", "summarize")
    assert code == 2
    assert "report@1.0.0 depends on it" in err
    assert "uninstalled report@1.0.0" in ok(env, "uninstall", "report")
    assert not (home / "library/capsules/report").exists()

    # The install and the trust are in the tenant's audit chain.
    with Store.open(Settings(home=home).store_url) as store:
        reasons = [r.reason for r in store.list_audit(tenant_id="default")]
    assert any(r.startswith("market.trust") for r in reasons)
    assert any("package=report@1.0.0" in r and r.startswith("market.install") for r in reasons)
    assert any(r.startswith("market.uninstall package=report@1.0.0") for r in reasons)


def test_other_tenants_have_their_own_library(env: dict[str, str], published: str) -> None:
    ok(env, "trust", "acme", published, "--tenant", "globex")
    ok(env, "install", "summarize", "--tenant", "globex")
    home = Path(env["SOMA_HOME"])
    assert (home / "tenants/globex/library/capsules/summarize/capsule.yaml").is_file()
    assert "no packages installed in tenant default" in ok(env, "list")
    assert "summarize" in ok(env, "list", "--tenant", "globex")


def test_search_finds_published_packages(env: dict[str, str], published: str) -> None:
    found = ok(env, "search", "summarize", "--kind", "capsule")
    assert "summarize" in found
    assert "analyst" not in found
    assert "analyst" in ok(env, "search", "--kind", "persona")


def test_info_shows_versions_and_yanks(env: dict[str, str], published: str) -> None:
    out = ok(env, "yank", "summarize@1.1.0", "--reason", "summarizes the wrong file")
    assert "yanked summarize@1.1.0" in out
    info = ok(env, "info", "summarize")
    assert "summarize (capsule) by acme" in info
    assert "1.0.0" in info
    assert "yanked: summarizes the wrong file" in info
    assert "persona:developer" in info

    ok(env, "trust", "acme", published)
    assert "installed summarize@1.0.0" in ok(env, "install", "summarize")
    ok(env, "uninstall", "summarize")
    pinned = ok(env, "install", "summarize@=1.1.0")
    assert "warning: summarize@1.1.0 is yanked: summarizes the wrong file" in pinned


def test_missing_packages_and_bad_arguments_are_clear(env: dict[str, str], published: str) -> None:
    code, _, err = soma(env, "install", "nothing")
    assert code == 2
    assert "no package named 'nothing' in local" in err

    code, _, err = soma(env, "install", "report", "--registry", "ftp://example")
    assert code == 2
    assert "invalid registry URL 'ftp://example'" in err

    code, _, err = soma(env, "yank", "summarize", "--reason", "x")
    assert code == 2
    assert "is not name@version" in err


def test_an_unreachable_registry_is_reported(env: dict[str, str]) -> None:
    code, _, err = soma(env, "install", "report", "--registry", "http://127.0.0.1:9")
    assert code == 2
    assert "cannot reach the registry at http://127.0.0.1:9" in err
