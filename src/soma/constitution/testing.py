"""Policy tests: example actions with the effect a constitution must give them.

A constitution is code that nobody runs until an agent misbehaves, so its authors need the same
safety net as any code: a cases file lists actions and the expected verdict, and
``soma policy test`` (built on :func:`run_policy_tests`) fails when an edit changes one. The
file format::

    constitution: default          # optional, for readers
    cases:
      - name: deleting the root is refused
        subject: {persona: developer}
        action: {kind: tool_call, tool: shell.exec, arguments: {command: "rm -rf /"}}
        expect: deny
        expect_rule: deny-delete-root     # optional: the deciding rule
        expect_findings: [aws_access_key] # optional: kinds that must be among the findings
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from soma.constitution.engine import Constitution
from soma.constitution.errors import ConstitutionError
from soma.constitution.types import Action, Effect, Subject
from soma.errors import SpecError
from soma.specs import models as specs
from soma.specs.loader import load_constitution, parse_yaml
from soma.specs.sources import SourceMap

__all__ = [
    "CaseResult",
    "ConstitutionSource",
    "PolicyCase",
    "builtin_cases",
    "load_cases",
    "run_policy_tests",
]

ConstitutionSource = str | Path | specs.Constitution
"""A constitution file, a library name (``default``) or an already loaded spec."""


class PolicyCase(BaseModel):
    """One example action and the verdict the constitution must give it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    subject: Subject = Field(default_factory=Subject)
    action: Action
    expect: Effect
    expect_rule: str | None = None
    expect_findings: list[str] = Field(default_factory=list)
    _line: int | None = PrivateAttr(default=None)

    @property
    def line(self) -> int | None:
        """Where the case starts in its file, for failure reports."""
        return self._line


class CaseResult(BaseModel):
    """The outcome of one case; ``message`` says what differed when it failed."""

    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool
    expected: Effect
    actual: Effect
    rule_id: str | None
    expected_rule: str | None = None
    findings: list[str] = Field(default_factory=list)
    explanation: str = ""
    message: str = ""
    location: str = ""


def builtin_cases(name: str = "default") -> Path:
    """The shipped cases file for a built-in constitution (``cases/<name>.tests.yaml``).

    It lives in this package rather than next to the constitution because the library loads
    every YAML file in ``library/constitutions/`` as a constitution.
    """
    return Path(__file__).parent / "cases" / f"{name}.tests.yaml"


def load_cases(path: str | Path) -> list[PolicyCase]:
    """Read and validate a cases file; errors point at the file, line and field."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConstitutionError(
            f"cannot read the policy tests: {exc.strerror}", file=str(file)
        ) from None
    try:
        data, where = parse_yaml(text, str(file))
    except SpecError as exc:
        raise ConstitutionError(
            exc.message, file=exc.file, line=exc.line, field=exc.field, hint=exc.hint
        ) from None
    prefix: tuple[Any, ...] = ()
    if isinstance(data, dict):
        unknown = set(data) - {"constitution", "cases"}
        if unknown:
            raise _at(where, (sorted(unknown)[0],), "unknown top-level key", "use `cases:`")
        data, prefix = data.get("cases"), ("cases",)
    if not isinstance(data, list) or not data:
        raise _at(where, prefix, "expected a non-empty list of cases", "see docs/constitution.md")
    cases: list[PolicyCase] = []
    for index, item in enumerate(data):
        path_to = (*prefix, index)
        try:
            case = PolicyCase.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise _at(where, (*path_to, *first["loc"]), first["msg"], None) from None
        case._line = where.line_of(path_to)
        cases.append(case)
    return cases


def _at(
    where: SourceMap, path: tuple[Any, ...], message: str, hint: str | None
) -> ConstitutionError:
    error = where.error(message, path, hint=hint)
    return ConstitutionError(
        error.message, file=error.file, line=error.line, field=error.field, hint=hint
    )


def _load(source: ConstitutionSource) -> specs.Constitution:
    if isinstance(source, specs.Constitution):
        return source
    path = Path(source)
    if isinstance(source, str) and not path.exists() and "/" not in source:
        from soma.specs.library import Library

        return Library.builtin().constitution(source)
    return load_constitution(path)


def run_policy_tests(
    constitution_path: ConstitutionSource | Sequence[ConstitutionSource],
    cases_path: str | Path,
) -> list[CaseResult]:
    """Check every case of ``cases_path`` against the constitution and report each outcome.

    ``constitution_path`` is a file, a library name such as ``default``, a loaded spec, or a
    list of those (base first, then stricter layers). Compile errors and malformed cases raise
    :class:`ConstitutionError`; a wrong verdict is a failed :class:`CaseResult`, not an error,
    so a run reports every failing case at once.
    """
    if isinstance(constitution_path, str | Path | specs.Constitution):
        sources: Sequence[ConstitutionSource] = [constitution_path]
    else:
        sources = list(constitution_path)
    if not sources:
        raise ConstitutionError("no constitution given to test")
    layers = [_load(s) for s in sources]
    engine = Constitution.compile(layers[0], *layers[1:])
    results: list[CaseResult] = []
    for case in load_cases(cases_path):
        decision = engine.check(case.subject, case.action)
        problems: list[str] = []
        if decision.effect != case.expect:
            problems.append(f"expected {case.expect}, got {decision.effect}")
        if case.expect_rule is not None and decision.rule_id != case.expect_rule:
            problems.append(f"expected rule '{case.expect_rule}', got '{decision.rule_id}'")
        missing = [k for k in case.expect_findings if k not in decision.findings]
        if missing:
            problems.append(f"expected findings {missing}, got {decision.findings}")
        results.append(
            CaseResult(
                name=case.name,
                passed=not problems,
                expected=case.expect,
                actual=decision.effect,
                rule_id=decision.rule_id,
                expected_rule=case.expect_rule,
                findings=decision.findings,
                explanation=decision.explanation,
                message="; ".join(problems),
                location=f"{cases_path}:{case.line}" if case.line else str(cases_path),
            )
        )
    return results
