"""Doubles for persona synthesis: a capsule whose evals reward particular persona skills, an
agent model that behaves according to the persona in its system prompt, and generator models
that propose candidates (and improve them from feedback) as JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from soma.models.function import FunctionModel
from soma.models.scripted import final, tool_call
from soma.models.types import Message, ModelRequest
from soma.specs.library import Library
from soma.specs.models import Capsule

CAPSULE_YAML = """\
kind: capsule
name: tidy-tests
version: 1.0.0
description: Write a pytest file for a small function and summarise what it covers.
persona: qa-engineer
inputs:
  type: object
  properties:
    topic: {type: string}
  required: [topic]
outputs:
  type: object
  properties:
    summary: {type: string}
  required: [summary]
tools: [fs.write]
instructions: "Write tests for {{ topic }}."
budget: {max_steps: 4}
evals:
  - name: writes-file
    input: {topic: slugify}
    checks:
      - kind: file_exists
        value: tests/test_slugify.py
  - name: covers-edges
    input: {topic: parse}
    checks:
      - kind: contains
        field: summary
        value: edge cases
  - name: answers
    input: {topic: add}
    checks:
      - kind: schema
"""

WRITES = "writes tests"
EDGES = "edge cases"


def write_library(root: Path) -> Path:
    """A library directory holding the tidy-tests capsule; returns the directory."""
    capsule_dir = root / "capsules" / "tidy-tests"
    capsule_dir.mkdir(parents=True)
    (capsule_dir / "capsule.yaml").write_text(CAPSULE_YAML, encoding="utf-8")
    return root


@pytest.fixture
def capsule(tmp_path: Path) -> Capsule:
    library = Library.from_dirs(write_library(tmp_path / "lib"), builtin=True)
    return library.capsule("tidy-tests")


def agent_reply(request: ModelRequest) -> Message | str:
    """Writes the test file only when the persona 'writes tests', and mentions edge cases only
    when its skills say so: the persona text decides which evals pass."""
    system = request.messages[0].content or ""
    user = request.messages[1].content or ""
    topic = re.search(r"Write tests for (\w+)\.", user)
    started = any(m.role == "tool" for m in request.messages)
    if WRITES in system and not started and topic:
        return tool_call("fs.write", path=f"tests/test_{topic.group(1)}.py", content="pass\n")
    summary = "covers the edge cases" if EDGES in system else "a test"
    return final({"summary": summary})


def agent_model() -> FunctionModel:
    return FunctionModel(agent_reply, name="agent-double")


def candidate(role: str, *skills: str, backstory: str = "") -> dict[str, object]:
    return {"role": role, "goal": "ship good tests", "backstory": backstory, "skills": list(skills)}


def fixed_generator(*rounds: list[dict[str, object]]) -> FunctionModel:
    """Proposes ``rounds[i]`` in round i+1 (the last list again after that)."""

    def reply(request: ModelRequest) -> str:
        done = re.search(r"Feedback after round (\d+)", request.messages[1].content or "")
        number = int(done.group(1)) if done else 0
        return json.dumps({"candidates": rounds[min(number, len(rounds) - 1)]})

    return FunctionModel(reply, name="generator-double")


def learning_generator() -> FunctionModel:
    """Round 1: a plain candidate and a test writer. Later rounds read the feedback: the best
    candidate so far, plus a skill for each kind of failure it reports."""

    def reply(request: ModelRequest) -> str:
        prompt = request.messages[-1].content or ""
        if "Feedback after round" not in prompt:
            return json.dumps({"candidates": [candidate("tester"), candidate("writer", WRITES)]})
        best_line = prompt.split("evals:\n", 1)[1].splitlines()[0]
        best = json.loads(best_line)
        skills = list(best["skills"])
        if "lacks 'edge cases'" in prompt:
            skills.append(f"covers {EDGES}")
        if "is missing" in prompt and WRITES not in skills:
            skills.append(WRITES)
        improved = {**best, "skills": skills}
        return json.dumps({"candidates": [improved, candidate("tester")]})

    return FunctionModel(reply, name="learning-generator")
