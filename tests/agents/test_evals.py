"""Capsule evals: checks pass on a good answer and explain each failure on a bad one."""

from __future__ import annotations

from pathlib import Path

import pytest

from soma.agents.evals import EvalResult, run_eval
from soma.models.scripted import ScriptedModel, final
from soma.specs.library import Library
from soma.tools import default_registry
from soma.tools.sandbox import make_sandbox

GOOD_SPEC = (
    "# Word count\n\n## Requirements\n\nR1. `wc FILE` prints lines, words and characters.\n\n"
    "## Acceptance criteria\n\n" + "Given a file with two lines, it prints 2. " * 12
)


@pytest.fixture(scope="module")
def library() -> Library:
    return Library.builtin()


async def evaluate(library: Library, tmp_path: Path, answer: dict[str, str]) -> EvalResult:
    capsule = library.capsule("write-spec")
    return await run_eval(
        capsule,
        library.persona(capsule.persona),
        capsule.evals[0],
        model=ScriptedModel([final(answer)]),
        registry=default_registry(),
        sandbox=make_sandbox("auto"),
        workspaces_root=tmp_path,
    )


async def test_good_answer_passes_every_check(library: Library, tmp_path: Path) -> None:
    outcome = await evaluate(library, tmp_path, {"title": "Word count", "spec": GOOD_SPEC})
    assert outcome.passed, [c for c in outcome.checks if not c.passed]
    assert outcome.score == 1.0


async def test_weak_answer_fails_the_content_checks_with_reasons(
    library: Library, tmp_path: Path
) -> None:
    weak = "# Word count\n\n" + "It counts words in files, quickly and well. " * 6
    outcome = await evaluate(library, tmp_path, {"title": "Word count", "spec": weak})

    failed = {(c.kind, c.detail) for c in outcome.checks if not c.passed}
    assert ("contains", "lacks '## Requirements'") in failed
    assert ("regex", "does not match /R1/") in failed
    passed = {c.kind for c in outcome.checks if c.passed}
    assert {"schema", "file_exists"} <= passed
    assert not outcome.passed
    assert 0 < outcome.score < 1
