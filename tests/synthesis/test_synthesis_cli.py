"""`soma persona synthesize` end to end in-process, with model doubles in place of real ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from soma.cli import synthesis_cmds
from soma.cli.main import app
from soma.marketplace.registry import Registry
from soma.marketplace.signing import PublisherKey, publisher_key_path
from soma.models.protocol import Model
from soma.settings import Settings
from soma.specs.loader import load_spec
from soma.specs.models import Persona
from soma.store import Store
from soma.synthesis.publish import read_scores
from tests.synthesis.conftest import agent_model, learning_generator, write_library

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    write_library(home / "library")
    monkeypatch.setenv("SOMA_HOME", str(home))
    monkeypatch.setenv("SOMA_MODEL", "openai:unused")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("SOMA_DATABASE_URL", raising=False)

    def resolve(spec: str, settings: Settings) -> Model:
        return learning_generator() if spec == "generator" else agent_model()

    monkeypatch.setattr(synthesis_cmds, "resolve_model", resolve)
    return home


def synth(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["persona", "synthesize", *args])
    return result.exit_code, result.output


def test_synthesize_writes_the_best_persona_into_the_library(home: Path) -> None:
    code, output = synth(
        "A QA engineer who writes tests",
        "--evals",
        "tidy-tests",
        "-n",
        "2",
        "-r",
        "3",
        "--model",
        "generator",
    )

    assert code == 0, output
    assert "round 1/3" in output
    assert "round 2/3" in output
    assert "round 3/3" not in output
    assert "r1c1 eval 1/3 writes-file: fail" in output
    assert "r1c2 eval 1/3 writes-file: pass" in output
    assert "candidates x evals" in output
    assert "passed every eval in round 2" in output
    path = home / "library" / "personas" / "qa-engineer-writes-tests.yaml"
    assert f"wrote {path}" in output.replace("\n", "")
    persona = load_spec(path, "persona")
    assert isinstance(persona, Persona)
    assert persona.name == "qa-engineer-writes-tests"
    assert "covers edge cases" in persona.skills
    shown = runner.invoke(app, ["persona", "show", "qa-engineer-writes-tests"])
    assert shown.exit_code == 0
    assert "covers edge cases" in shown.output

    code, output = synth("A QA engineer who writes tests", "--evals", "tidy-tests")
    assert code == 2
    assert "already exists" in output


def test_synthesize_publishes_a_signed_package_with_its_scores(home: Path) -> None:
    PublisherKey.generate("acme").save(publisher_key_path(home, "acme"))
    code, output = synth(
        "test writer",
        "--evals",
        "tidy-tests",
        "--model",
        "generator",
        "-n",
        "2",
        "--name",
        "acme-tester",
        "--out",
        str(home / "out.yaml"),
        "--publish",
        "--publisher",
        "acme",
    )

    assert code == 0, output
    assert "published acme-tester@1.0.0 as acme" in output
    assert (home / "out.yaml").is_file()
    with Store.open(Settings(home=home).store_url) as store:
        (version,) = Registry(store).versions("acme-tester")
    scores = read_scores(version.manifest)
    assert scores is not None
    assert scores.passed == scores.total == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--evals", "no-such-capsule"], "no capsule named 'no-such-capsule'"),
        (["--evals", "write-spec", "-n", "0"], "--candidates must be between 1 and 10"),
        (["--evals", "tidy-tests", "--name", "qa-engineer"], "is a built-in persona"),
        (["--evals", "tidy-tests", "--name", "Bad Name"], "is not a valid persona name"),
        (["--evals", "tidy-tests", "--publish"], "--publish needs --publisher"),
        (
            ["--evals", "tidy-tests", "--publish", "--publisher", "soma"],
            "reserved for the built-in",
        ),
    ],
)
def test_bad_input_is_a_clear_error(home: Path, args: list[str], message: str) -> None:
    code, output = synth("a tester", *args)
    assert code == 2
    assert message in " ".join(output.split())
