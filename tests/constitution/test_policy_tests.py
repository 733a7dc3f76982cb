"""The policy-test runner behind ``soma policy test``."""

from __future__ import annotations

from pathlib import Path

import pytest

from soma.constitution import ConstitutionError, builtin_cases, load_cases, run_policy_tests
from soma.specs.library import Library

BASE = """\
kind: constitution
name: shop
version: 1.0.0
rules:
  - id: big-payments
    effect: require_approval
    reason: large sums need a human
    action: {tool: pay}
    when: {amount_over: 100}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_default_cases_pass() -> None:
    results = run_policy_tests("default", builtin_cases("default"))
    assert len(results) >= 20
    failures = [f"{r.location}: {r.name}: {r.message}" for r in results if not r.passed]
    assert failures == []
    covered = {r.rule_id for r in results}
    assert {rule.id for rule in Library.builtin().constitution().rules} <= covered


def test_failures_are_reported_per_case_with_their_line(tmp_path: Path) -> None:
    constitution = write(tmp_path, "shop.yaml", BASE)
    cases = write(
        tmp_path,
        "shop.tests.yaml",
        """\
cases:
  - name: small payment
    action: {kind: tool_call, tool: pay, arguments: {amount: 5}}
    expect: allow
  - name: wrong expectation
    action: {kind: tool_call, tool: pay, arguments: {amount: 500}}
    expect: deny
  - name: wrong rule
    action: {kind: tool_call, tool: pay, arguments: {amount: 500}}
    expect: require_approval
    expect_rule: other
""",
    )
    results = run_policy_tests(constitution, cases)
    assert [r.passed for r in results] == [True, False, False]
    assert results[1].message == "expected deny, got require_approval"
    assert results[1].location == f"{cases}:5"
    assert "expected rule 'other', got 'big-payments'" in results[2].message


def test_layers_can_be_tested_together(tmp_path: Path) -> None:
    base = write(tmp_path, "shop.yaml", BASE)
    tenant = write(
        tmp_path,
        "tenant.yaml",
        """\
kind: constitution
name: tenant
version: 1.0.0
rules:
  - id: no-crypto
    effect: deny
    reason: not allowed here
    action: {tool: pay}
    when: {arguments_match: {currency: "^BTC$"}}
""",
    )
    cases = write(
        tmp_path,
        "cases.yaml",
        """\
- name: crypto refused
  subject: {tenant: acme}
  action: {kind: tool_call, tool: pay, arguments: {amount: 5, currency: BTC}}
  expect: deny
  expect_rule: no-crypto
""",
    )
    [result] = run_policy_tests([base, tenant], cases)
    assert result.passed, result.message


def test_malformed_cases_point_at_the_line(tmp_path: Path) -> None:
    cases = write(
        tmp_path,
        "bad.yaml",
        """\
cases:
  - name: ok
    action: {kind: tool_call, tool: x}
    expect: allow
  - name: typo
    action: {kind: tool_call, tool: x}
    expect: permit
""",
    )
    with pytest.raises(ConstitutionError) as raised:
        load_cases(cases)
    assert raised.value.line == 7
    assert raised.value.field == "cases[1].expect"
    with pytest.raises(ConstitutionError, match="non-empty list"):
        load_cases(write(tmp_path, "empty.yaml", "cases: []\n"))
    with pytest.raises(ConstitutionError, match="cannot read"):
        load_cases(tmp_path / "missing.yaml")
