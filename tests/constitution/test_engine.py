"""The engine: precedence, subject scoping, tool patterns, layers and explanations."""

from __future__ import annotations

from typing import Any

import pytest

from soma.constitution import Action, Constitution, ConstitutionError, Decision, Subject
from soma.specs.loader import parse_spec
from soma.specs.models import Constitution as Spec

DEV = Subject(persona="developer", role="engineer", tenant="acme", capsule="implement")


def spec(*rules: dict[str, Any], name: str = "base") -> Spec:
    filled = [{"reason": f"because {r['id']}", **r} for r in rules]
    return Spec.model_validate({"name": name, "version": "1.0.0", "rules": filled})


def call(tool: str, subject: Subject = DEV, **arguments: Any) -> tuple[Subject, Action]:
    return subject, Action(kind="tool_call", tool=tool, arguments=arguments)


def decide(engine: Constitution, tool: str, subject: Subject = DEV, **arguments: Any) -> Decision:
    return engine.check(*call(tool, subject, **arguments))


# --- precedence -----------------------------------------------------------------------------


def test_deny_beats_approval_redact_and_allow() -> None:
    engine = Constitution.compile(
        spec(
            {"id": "a", "effect": "allow", "action": {"tool": "x.run"}},
            {"id": "r", "effect": "redact", "action": {"tool": "x.run"}},
            {"id": "q", "effect": "require_approval", "action": {"tool": "x.run"}},
            {"id": "d", "effect": "deny", "action": {"tool": "x.*"}},
        )
    )
    decision = decide(engine, "x.run")
    assert decision.effect == "deny"
    assert decision.rule_id == "d"
    assert decision.matched == ["d", "q", "r", "a"]
    assert not decision.proceeds


def test_approval_beats_redact_and_redact_beats_allow() -> None:
    engine = Constitution.compile(
        spec(
            {"id": "a", "effect": "allow", "action": {"tool": "x.*"}},
            {"id": "r", "effect": "redact", "action": {"tool": "x.*"}},
            {"id": "q", "effect": "require_approval", "action": {"tool": "x.push"}},
        )
    )
    assert decide(engine, "x.push").effect == "require_approval"
    redacted = decide(engine, "x.other", note="hello")
    assert redacted.effect == "redact"
    assert redacted.proceeds


def test_no_matching_rule_allows_by_default() -> None:
    engine = Constitution.compile(spec({"id": "d", "effect": "deny", "action": {"tool": "a"}}))
    decision = decide(engine, "b")
    assert decision.effect == "allow"
    assert decision.rule_id is None
    assert "default" in decision.explanation
    assert "tool grants" in decision.explanation


def test_each_effect_can_win_alone() -> None:
    engine = Constitution.compile(
        spec(
            {"id": "allow-a", "effect": "allow", "action": {"tool": "a"}},
            {"id": "deny-b", "effect": "deny", "action": {"tool": "b"}},
            {"id": "ask-c", "effect": "require_approval", "action": {"tool": "c"}},
            {"id": "hide-d", "effect": "redact", "action": {"tool": "d"}},
        )
    )
    for tool, effect in {
        "a": "allow",
        "b": "deny",
        "c": "require_approval",
        "d": "redact",
    }.items():
        assert decide(engine, tool, v="x").effect == effect


# --- scoping ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "other"),
    [
        ("persona", "developer", "tester"),
        ("role", "engineer", "manager"),
        ("tenant", "acme", "globex"),
        ("capsule", "implement", "review"),
    ],
)
def test_subject_fields_scope_rules(field: str, value: str, other: str) -> None:
    engine = Constitution.compile(
        spec({"id": "d", "effect": "deny", "subject": {field: value}, "action": {"tool": "t"}})
    )
    assert decide(engine, "t").effect == "deny"
    assert decide(engine, "t", DEV.model_copy(update={field: other})).effect == "allow"


def test_subject_without_the_field_does_not_match_a_scoped_rule() -> None:
    engine = Constitution.compile(
        spec({"id": "d", "effect": "deny", "subject": {"capsule": "x"}, "action": {"tool": "t"}})
    )
    assert decide(engine, "t", Subject(persona="p")).effect == "allow"


def test_versioned_refs_and_globs_in_subjects() -> None:
    engine = Constitution.compile(
        spec(
            {"id": "d", "effect": "deny", "subject": {"persona": "*-reviewer"}, "action": {}},
        )
    )
    assert decide(engine, "fs.write", Subject(persona="code-reviewer@1.2.0")).effect == "deny"
    assert decide(engine, "fs.write", Subject(persona="developer")).effect == "allow"


def test_exact_tool_names_and_patterns() -> None:
    engine = Constitution.compile(
        spec(
            {"id": "exact", "effect": "deny", "action": {"tool": "fs.write"}},
            {"id": "pattern", "effect": "require_approval", "action": {"tool": "git.*"}},
            {"id": "any-tool", "effect": "redact", "action": {"kind": "tool_call"}},
        )
    )
    assert decide(engine, "fs.write").rule_id == "exact"
    assert decide(engine, "fs.writer").rule_id == "any-tool"
    assert decide(engine, "git.push").rule_id == "pattern"
    assert decide(engine, "github.merge").rule_id == "any-tool"
    output = engine.check(DEV, Action(kind="model_output", text="hello"))
    assert output.effect == "allow"  # tool rules never apply to model output


def test_rules_apply_only_to_their_action_kind() -> None:
    engine = Constitution.compile(
        spec(
            {"id": "out", "effect": "deny", "action": {"kind": "model_output"}},
            {"id": "msg", "effect": "require_approval", "action": {"kind": "message"}},
        )
    )
    assert engine.check(DEV, Action(kind="model_output", text="x")).rule_id == "out"
    assert engine.check(DEV, Action(kind="message", text="x")).rule_id == "msg"
    assert decide(engine, "t").effect == "allow"


# --- explanations -----------------------------------------------------------------------------


def test_explanation_names_the_most_specific_rule_and_the_others() -> None:
    engine = Constitution.compile(
        spec(
            {"id": "broad", "effect": "deny", "action": {"tool": "shell.*"}},
            {
                "id": "narrow",
                "effect": "deny",
                "subject": {"persona": "developer"},
                "action": {"tool": "shell.exec"},
                "when": {"command_matches": "*sudo *"},
            },
            {"id": "tool-only", "effect": "deny", "action": {"tool": "shell.exec"}},
            {"id": "ok", "effect": "allow", "action": {"tool": "shell.exec"}},
        )
    )
    decision = decide(engine, "shell.exec", command="sudo rm x")
    assert decision.rule_id == "narrow"
    assert decision.matched == ["narrow", "tool-only", "broad", "ok"]
    assert "rule 'narrow'" in decision.explanation
    assert "persona 'developer'" in decision.explanation
    assert "command_matches" in decision.explanation
    assert "'broad' (deny)" in decision.explanation
    assert "'ok' (allow)" in decision.explanation
    assert "most specific deny rule" in decision.explanation
    # Without the command, the exact tool name beats the pattern.
    assert decide(engine, "shell.exec", command="ls").rule_id == "tool-only"


def test_more_conditions_are_more_specific() -> None:
    engine = Constitution.compile(
        spec(
            {"id": "one", "effect": "deny", "action": {"tool": "t"}, "when": {"amount_over": 1}},
            {
                "id": "two",
                "effect": "deny",
                "action": {"tool": "t"},
                "when": {"amount_over": 1, "arguments_match": {"to": "^x"}},
            },
        )
    )
    assert decide(engine, "t", amount=5, to="xy").rule_id == "two"
    assert decide(engine, "t", amount=5, to="y").rule_id == "one"


# --- layers -----------------------------------------------------------------------------------


def test_stricter_layers_add_restrictions() -> None:
    base = spec({"id": "files", "effect": "allow", "action": {"tool": "fs.*"}})
    tenant = spec(
        {"id": "no-secrets-dir", "effect": "deny", "action": {"tool": "fs.*"},
         "when": {"path_matches": "secrets/*"}},
        name="tenant-acme",
    )  # fmt: skip
    capsule = spec(
        {"id": "ask-before-write", "effect": "require_approval", "action": {"tool": "fs.write"}},
        name="capsule-release",
    )
    engine = Constitution.compile(base, tenant, capsule)
    assert decide(engine, "fs.read", path="secrets/key").rule_id == "no-secrets-dir"
    assert decide(engine, "fs.write", path="src/a.py").effect == "require_approval"
    assert decide(engine, "fs.read", path="src/a.py").effect == "allow"
    assert "layer tenant-acme@1.0.0" in decide(engine, "fs.read", path="secrets/x").explanation
    assert engine.name == "base@1.0.0 + tenant-acme@1.0.0 + capsule-release@1.0.0"


def test_a_loosening_layer_is_refused() -> None:
    base = spec({"id": "no-push", "effect": "deny", "action": {"tool": "git.push"}})
    loose = spec(
        {"id": "let-me-push", "effect": "allow", "action": {"tool": "git.push"}}, name="tenant-x"
    )
    with pytest.raises(ConstitutionError) as raised:
        Constitution.compile(base, loose)
    message = str(raised.value)
    assert "tenant-x@1.0.0" in message
    assert "let-me-push" in message
    assert "loosen" in message


def test_a_layer_cannot_redefine_a_rule() -> None:
    base = spec({"id": "no-push", "effect": "deny", "action": {"tool": "git.push"}})
    again = spec(
        {"id": "no-push", "effect": "deny", "action": {"tool": "git.*"}},
        name="tenant-x",
    )
    with pytest.raises(ConstitutionError, match=r"already defined in layer 'base@1\.0\.0'"):
        Constitution.compile(base, again)


def test_principles_of_all_layers_are_kept() -> None:
    base = Spec.model_validate(
        {"name": "b", "version": "1.0.0", "principles": [{"id": "p1", "text": "one"}]}
    )
    extra = Spec.model_validate(
        {"name": "t", "version": "1.0.0", "principles": [{"id": "p2", "text": "two"}]}
    )
    assert [p.id for p in Constitution.compile(base, extra).principles] == ["p1", "p2"]


# --- compile errors ---------------------------------------------------------------------------


def test_unknown_condition_is_refused_with_a_hint() -> None:
    bad = spec({"id": "oops", "effect": "deny", "when": {"comand_matches": "*x*"}})
    with pytest.raises(ConstitutionError) as raised:
        Constitution.compile(bad)
    assert "oops" in str(raised.value)
    assert "did you mean 'command_matches'" in str(raised.value)


def test_compile_errors_point_at_the_file_and_line() -> None:
    text = """\
kind: constitution
name: tenant
version: 1.0.0
rules:
  - id: good
    effect: deny
    reason: fine
  - id: broken
    effect: deny
    reason: bad regex
    when: {text_matches: "(unclosed"}
"""
    layer = parse_spec(text, source="tenant.yaml")
    assert isinstance(layer, Spec)
    with pytest.raises(ConstitutionError) as raised:
        Constitution.compile(layer)
    assert raised.value.file == "tenant.yaml"
    assert raised.value.line == 11
    assert "broken" in str(raised.value)


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"action": {"kind": "model_output", "tool": "x"}}, "names a tool"),
        ({"action": {"kind": "message"}, "when": {"command_matches": "*"}}, "reads tool arguments"),
        ({"when": {"amount_over": "lots"}}, "must be a number"),
        ({"when": {"path_outside_workspace": "yes"}}, "true or false"),
        ({"when": {"arguments_match": ["x"]}}, "mapping"),
        ({"when": {"url_host_in": []}}, "non-empty list"),
    ],
)
def test_malformed_rules_are_refused(rule: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConstitutionError, match=fragment):
        Constitution.compile(spec({"id": "r", "effect": "deny", **rule}))


# --- the default constitution -----------------------------------------------------------------


def test_default_constitution_guards_dangerous_actions() -> None:
    engine = Constitution.default()
    dev = Subject(persona="developer")
    assert decide(engine, "shell.exec", dev, command="rm -rf /").rule_id == "deny-delete-root"
    assert decide(engine, "git.push", dev).effect == "require_approval"
    assert decide(engine, "fs.write", dev, path="src/a.py", content="x").effect == "allow"
    reviewer = Subject(persona="code-reviewer")
    assert decide(engine, "fs.write", reviewer, path="a", content="x").effect == "deny"


def test_decisions_serialise_round_trip() -> None:
    engine = Constitution.default()
    decision = decide(engine, "shell.exec", Subject(persona="developer"), command="sudo ls")
    assert Decision.model_validate_json(decision.model_dump_json()) == decision


def test_candidate_cache_stays_bounded() -> None:
    engine = Constitution.compile(spec({"id": "d", "effect": "deny", "action": {"tool": "t*"}}))
    for index in range(5000):
        decide(engine, f"t{index}")
    assert len(engine._candidates) <= 4096
    assert decide(engine, "t1").effect == "deny"
