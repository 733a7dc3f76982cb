"""Self-improvement, measured: a capsule's evals run round after round with a model that only
does what the lessons it is given tell it. The success rate rises because lessons from each
round's failed checks reach the next round's prompts."""

from __future__ import annotations

import re
from pathlib import Path

from soma.memory.gateway import Memory
from soma.memory.improve import eval_and_learn
from soma.models.function import FunctionModel
from soma.models.scripted import final
from soma.models.types import ModelRequest
from soma.specs.library import Library
from soma.tools import default_registry
from soma.tools.sandbox import make_sandbox

CAPSULE_YAML = """\
kind: capsule
name: release-notes-lite
version: 1.0.0
description: Summarise a release for users.
persona: technical-writer
inputs:
  type: object
  properties:
    version: {type: string}
  required: [version]
outputs:
  type: object
  properties:
    notes: {type: string}
  required: [notes]
instructions: "Write release notes for version {{ version }}."
budget: {max_steps: 2}
evals:
  - name: mentions-upgrade
    input: {version: "2.0"}
    checks: [{kind: contains, field: notes, value: upgrade}]
  - name: mentions-breaking
    input: {version: "3.0"}
    checks: [{kind: contains, field: notes, value: breaking}]
  - name: mentions-thanks
    input: {version: "3.1"}
    checks: [{kind: contains, field: notes, value: contributors}]
  - name: plain
    input: {version: "3.2"}
    checks: [{kind: min_length, field: notes, value: 10}]
"""


def learner(request: ModelRequest) -> object:
    """Writes notes that include exactly the words earlier lessons said were missing."""
    prompt = request.messages[-1].content or ""
    learned = re.findall(r"notes lacks '([^']+)'", prompt)
    return final({"notes": " ".join(["Release notes.", *learned])})


async def test_success_rate_rises_across_rounds(memory: Memory, tmp_path: Path) -> None:
    capsule_dir = tmp_path / "lib" / "capsules" / "release-notes-lite"
    capsule_dir.mkdir(parents=True)
    (capsule_dir / "capsule.yaml").write_text(CAPSULE_YAML)
    library = Library.from_dirs(tmp_path / "lib", builtin=True)
    capsule = library.capsule("release-notes-lite")
    persona = library.persona(capsule.persona)
    model = FunctionModel(learner, name="learner")

    rates = []
    for _ in range(3):
        passed = 0
        for case in capsule.evals:
            result = await eval_and_learn(
                memory,
                "acme",
                capsule,
                persona,
                case,
                model=model,
                registry=default_registry(),
                sandbox=make_sandbox("subprocess"),
                workspaces_root=tmp_path / "ws",
            )
            passed += result.passed
        rates.append(passed / len(capsule.evals))
    assert rates[0] == 0.25, "only the plain eval passes before anything is learned"
    assert rates[1] > rates[0]
    assert rates[2] == 1.0
    prompts = [r.messages[-1].content or "" for r in model.requests]
    assert "lessons from earlier runs" not in prompts[0]
    assert "lessons from earlier runs" in prompts[-1]
