"""The policy engine: compiles constitution layers once, then decides each action in microseconds.

Every tool call, model output and agent message passes :meth:`Constitution.check`, so the hot
path does no parsing and no scanning of unrelated rules: rules are indexed by action kind and
exact tool name (tool patterns are resolved once per tool name), the candidate list for a given
subject and tool is cached, candidates are pre-sorted so the first one that matches is the
winner, and conditions share the facts they derive from the action.

Decisions combine by effect, not by order: ``deny`` > ``require_approval`` > ``redact`` >
``allow``, and an action no rule matches is allowed (tool access is already limited by the
capsule's grants and the persona's tool patterns; the constitution adds restrictions on top).
Because effects combine this way, a rule can never weaken another, whatever layer it is in;
stricter layers are still refused ``allow`` rules at compile time, because an ``allow`` there
can only come from someone who believes it loosens the base, and that belief should fail
loudly rather than be silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from soma.constitution.conditions import (
    ARGUMENT_CONDITIONS,
    CompiledCondition,
    ConditionSyntaxError,
    Facts,
    compile_condition,
    glob_regex,
)
from soma.constitution.errors import ConstitutionError
from soma.constitution.redact import map_strings, mask, redact, redact_value
from soma.constitution.types import EFFECT_RANK, Action, Decision, Subject
from soma.specs import models as specs
from soma.specs.sources import format_path, origin_of

__all__ = ["CompiledRule", "Constitution"]

_GLOB_CHARS = frozenset("*?[")
_SUBJECT_FIELDS = ("persona", "role", "tenant", "capsule")
_CACHE_LIMIT = 4096


def _is_glob(text: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(text)


def _bare(ref: str | None) -> str | None:
    """``name@version`` -> ``name``: rules name personas and capsules without versions."""
    return ref.split("@", 1)[0] if ref and "@" in ref else ref


@dataclass(frozen=True, slots=True)
class _FieldMatcher:
    field: str
    exact: str | None
    pattern: re.Pattern[str] | None

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.exact is not None:
            return value == self.exact or _bare(value) == self.exact
        assert self.pattern is not None
        return self.pattern.match(value) is not None or (
            "@" in value and self.pattern.match(value.split("@", 1)[0]) is not None
        )


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to evaluate, with where it came from and how specific it is."""

    rule: specs.Rule
    layer: str
    layer_index: int
    order: int
    subject: tuple[_FieldMatcher, ...]
    tool_exact: str | None
    tool_pattern: re.Pattern[str] | None
    conditions: tuple[CompiledCondition, ...]
    specificity: tuple[int, int, int]
    summary: str
    test: Callable[[Facts], bool] | None  # all conditions at once; None when there are none

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def effect(self) -> str:
        return self.rule.effect

    @property
    def rank(self) -> tuple[int, tuple[int, int, int], int]:
        """Sort key, highest first: effect precedence, then specificity, then earliest rule."""
        return (EFFECT_RANK[self.rule.effect], self.specificity, -self.order)

    def subject_matches(self, subject: Subject) -> bool:
        return all(m.matches(getattr(subject, m.field)) for m in self.subject)

    def tool_matches(self, tool: str | None) -> bool:
        if self.tool_exact is not None:
            return tool == self.tool_exact
        if self.tool_pattern is not None:
            return tool is not None and self.tool_pattern.match(tool) is not None
        return True


_Key = tuple[str, str | None, str | None, str | None, str, str | None]


class Constitution:
    """A compiled, layered constitution. Build it with :meth:`compile`; it is immutable and
    safe to share between concurrent runs (the candidate cache only ever adds entries)."""

    def __init__(
        self,
        layers: Sequence[specs.Constitution],
        rules: Sequence[CompiledRule],
    ) -> None:
        self.layers: tuple[specs.Constitution, ...] = tuple(layers)
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self._by_kind: dict[str, tuple[CompiledRule, ...]] = {
            kind: tuple(r for r in self.rules if r.rule.action.kind == kind)
            for kind in ("tool_call", "model_output", "message", "memory_write")
        }
        self._exact: dict[str, tuple[CompiledRule, ...]] = {}
        for rule in self._by_kind["tool_call"]:
            if rule.tool_exact is not None:
                self._exact[rule.tool_exact] = (*self._exact.get(rule.tool_exact, ()), rule)
        self._inexact: tuple[CompiledRule, ...] = tuple(
            r for r in self._by_kind["tool_call"] if r.tool_exact is None
        )
        self._candidates: dict[_Key, tuple[CompiledRule, ...]] = {}

    # --- building --------------------------------------------------------------------------

    @classmethod
    def compile(cls, base: specs.Constitution, *stricter: specs.Constitution) -> Constitution:
        """Compile ``base`` (the platform default) and layers that may only add restrictions
        (tenant, then capsule policies), in that order.

        Raises :class:`ConstitutionError` naming the rule and layer for an unknown or malformed
        condition, a tool pattern on a non-tool rule, a rule id used twice, or an ``allow``
        rule in a stricter layer.
        """
        layers = (base, *stricter)
        compiled: list[CompiledRule] = []
        seen: dict[str, str] = {}
        for layer_index, layer in enumerate(layers):
            layer_name = f"{layer.name}@{layer.version}"
            for position, rule in enumerate(layer.rules):
                where = ("rules", position)
                if layer_index > 0 and rule.effect == "allow":
                    raise _error(
                        layer,
                        (*where, "effect"),
                        f"layer '{layer_name}' tries to loosen the constitution: rule "
                        f"'{rule.id}' is an allow rule",
                        "layers after the base may only add deny, require_approval or redact "
                        "rules; effects combine by precedence, so an allow rule there could "
                        "never override the base anyway",
                    )
                if rule.id in seen:
                    raise _error(
                        layer,
                        (*where, "id"),
                        f"rule '{rule.id}' in layer '{layer_name}' is already defined in "
                        f"layer '{seen[rule.id]}'",
                        "rules cannot be replaced by a later layer; give this one its own id",
                    )
                seen[rule.id] = layer_name
                compiled.append(
                    _compile_rule(rule, layer, position, layer_name, layer_index, len(compiled))
                )
        return cls(layers, compiled)

    @classmethod
    def default(cls, *stricter: specs.Constitution) -> Constitution:
        """The built-in ``default`` constitution, with optional stricter layers."""
        from soma.specs.library import Library

        return cls.compile(Library.builtin().constitution("default"), *stricter)

    @property
    def name(self) -> str:
        return " + ".join(f"{layer.name}@{layer.version}" for layer in self.layers)

    @property
    def principles(self) -> list[specs.Principle]:
        """Every layer's principles, base first, each id once (for agents' instructions)."""
        seen: dict[str, specs.Principle] = {}
        for layer in self.layers:
            for principle in layer.principles:
                seen.setdefault(principle.id, principle)
        return list(seen.values())

    # --- deciding --------------------------------------------------------------------------

    def candidates(self, subject: Subject, action: Action) -> tuple[CompiledRule, ...]:
        """Rules whose kind, tool and subject fit, best-ranked first (conditions not yet
        tested). Cached per (kind, tool, subject), a small set in practice."""
        key: _Key = (
            action.kind,
            action.tool,
            subject.persona,
            subject.role,
            subject.tenant,
            subject.capsule,
        )
        found = self._candidates.get(key)
        if found is None:
            if action.kind == "tool_call":
                pool: Sequence[CompiledRule] = (
                    *self._exact.get(action.tool or "", ()),
                    *(r for r in self._inexact if r.tool_matches(action.tool)),
                )
            else:
                pool = self._by_kind[action.kind]
            found = tuple(
                sorted(
                    (r for r in pool if r.subject_matches(subject)),
                    key=lambda r: r.rank,
                    reverse=True,
                )
            )
            if len(self._candidates) >= _CACHE_LIMIT:
                self._candidates.clear()  # bounded; a rebuild costs one scan of the rules
            self._candidates[key] = found
        return found

    def check(self, subject: Subject, action: Action) -> Decision:
        """Decide one action: the effect, the deciding rule, the masked arguments or text, and
        an explanation naming the rule, why it matched, and which other rules matched."""
        facts = Facts(action)
        matched: list[CompiledRule] = []
        for rule in self.candidates(subject, action):
            test = rule.test
            if test is None or test(facts):
                matched.append(rule)
        arguments, text, findings = _masked(action, matched)
        if not matched:
            return Decision(
                effect="allow",
                rule_id=None,
                reason="no rule matched; allowed by default",
                arguments=arguments,
                text=text,
                findings=findings,
                explanation=_default_explanation(subject, action),
            )
        winner = matched[0]
        return Decision(
            effect=winner.rule.effect,
            rule_id=winner.id,
            reason=winner.rule.reason,
            arguments=arguments,
            text=text,
            findings=findings,
            matched=[r.id for r in matched],
            explanation=_explanation(winner, matched),
        )

    def __repr__(self) -> str:
        return f"Constitution({self.name!r}, {len(self.rules)} rules)"


# --- compilation helpers ------------------------------------------------------------------------


def _error(
    layer: specs.Constitution, path: tuple[Any, ...], message: str, hint: str | None
) -> ConstitutionError:
    """An error pointing at the rule's file and line when the layer was loaded from a file."""
    where = origin_of(layer)
    if where is None:
        return ConstitutionError(message, field=format_path(path), hint=hint)
    return ConstitutionError(
        message, file=where.file, line=where.line_of(path), field=format_path(path), hint=hint
    )


def _compile_rule(
    rule: specs.Rule,
    layer: specs.Constitution,
    position: int,
    layer_name: str,
    layer_index: int,
    order: int,
) -> CompiledRule:
    where = ("rules", position)
    kind = rule.action.kind
    tool = rule.action.tool
    if tool is not None and kind != "tool_call":
        raise _error(
            layer,
            (*where, "action", "tool"),
            f"rule '{rule.id}' in layer '{layer_name}' names a tool but is about {kind}",
            "drop `tool`, or set `kind: tool_call`",
        )
    conditions: list[CompiledCondition] = []
    for key, value in rule.when.items():
        try:
            condition = compile_condition(key, value)
        except ConditionSyntaxError as exc:
            raise _error(
                layer,
                (*where, "when", key),
                f"rule '{rule.id}' in layer '{layer_name}': {exc}",
                exc.hint,
            ) from None
        if kind != "tool_call" and key in ARGUMENT_CONDITIONS:
            raise _error(
                layer,
                (*where, "when", key),
                f"rule '{rule.id}' in layer '{layer_name}': '{key}' reads tool arguments, "
                f"so it can never hold for a {kind}",
                "use text_matches for model outputs and messages",
            )
        conditions.append(condition)

    matchers: list[_FieldMatcher] = []
    subject_score = 0
    shown: list[str] = []
    for field in _SUBJECT_FIELDS:
        value = getattr(rule.subject, field)
        if value is None:
            continue
        if _is_glob(value):
            matchers.append(_FieldMatcher(field, None, glob_regex(value)))
            subject_score += 1
        else:
            matchers.append(_FieldMatcher(field, value, None))
            subject_score += 2
        shown.append(f"{field} {value!r}")

    tool_exact: str | None = None
    tool_pattern: re.Pattern[str] | None = None
    tool_score = 0
    if tool is not None:
        if _is_glob(tool):
            tool_pattern = glob_regex(tool)
            tool_score = 1
            shown.append(f"tool pattern {tool!r}")
        else:
            tool_exact = tool
            tool_score = 2
            shown.append(f"tool {tool!r}")
    elif kind == "tool_call":
        shown.append("any tool")
    else:
        shown.append(kind.replace("_", " "))
    shown.extend(c.description for c in conditions)

    return CompiledRule(
        rule=rule,
        layer=layer_name,
        layer_index=layer_index,
        order=order,
        subject=tuple(matchers),
        tool_exact=tool_exact,
        tool_pattern=tool_pattern,
        conditions=tuple(conditions),
        specificity=(subject_score, tool_score, len(conditions)),
        summary=", ".join(shown),
        test=_all_of(conditions),
    )


def _all_of(conditions: Sequence[CompiledCondition]) -> Callable[[Facts], bool] | None:
    """One predicate for a rule's conditions, without a generator per check for the usual
    zero or one condition."""
    if not conditions:
        return None
    if len(conditions) == 1:
        return conditions[0].test
    tests = tuple(c.test for c in conditions)
    return lambda facts: all(test(facts) for test in tests)


# --- decision helpers ---------------------------------------------------------------------------


def _masked(
    action: Action, matched: Sequence[CompiledRule]
) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """The action's arguments and text as they may be stored: built-in secret masking always,
    then every matched ``redact`` rule's own masking (whatever effect won)."""
    findings: list[str] = []
    arguments: dict[str, Any] | None = None
    text: str | None = None
    if action.arguments:
        arguments, findings = redact_value(action.arguments)
        if arguments is action.arguments:
            arguments = dict(arguments)  # never hand out the caller's mapping
    if action.text is not None:
        text, kinds = redact(action.text)
        findings.extend(k for k in kinds if k not in findings)
    for rule in matched:
        if rule.rule.effect == "redact":
            arguments, text = _apply_rule(rule, arguments, text, findings)
    return arguments, text, findings


def _apply_rule(
    rule: CompiledRule, arguments: dict[str, Any] | None, text: str | None, findings: list[str]
) -> tuple[dict[str, Any] | None, str | None]:
    """Mask what a redact rule is about: its text_matches spans, its arguments_match arguments,
    or (with neither) the whole text and every string argument."""
    token = mask(rule.id)
    regexes = [regex for c in rule.conditions for regex in c.regexes]
    names = [n for c in rule.conditions for n in c.argument_names]
    new_text, new_arguments = text, arguments
    if regexes:

        def scrub(value: str) -> str:
            for regex in regexes:
                value = regex.sub(token, value)
            return value

        if new_text is not None:
            new_text = scrub(new_text)
        if new_arguments:
            new_arguments = map_strings(new_arguments, scrub)
    if names and new_arguments:
        new_arguments = {k: (token if k in names else v) for k, v in new_arguments.items()}
    if not regexes and not names:
        if new_text is not None:
            new_text = token
        if new_arguments:
            new_arguments = map_strings(new_arguments, lambda _: token)
    if new_text != text or new_arguments != arguments:
        findings.append(f"rule:{rule.id}")
    return new_arguments, new_text


def _default_explanation(subject: Subject, action: Action) -> str:
    what = f"tool '{action.tool}'" if action.kind == "tool_call" else action.kind.replace("_", " ")
    who = subject.persona or "an unnamed subject"
    return (
        f"allow: no rule of the constitution matched {what} by {who}; actions are allowed by "
        "default (the capsule's tool grants and the persona's tool patterns still apply)"
    )


def _explanation(winner: CompiledRule, matched: Sequence[CompiledRule]) -> str:
    text = (
        f"{winner.rule.effect}: rule '{winner.id}' (layer {winner.layer}) matched "
        f"[{winner.summary}]: {winner.rule.reason.strip()}"
    )
    others = matched[1:]
    if others:
        listed = ", ".join(f"'{r.id}' ({r.rule.effect})" for r in others)
        text += f" Also matched: {listed}."
        same = [r for r in others if r.rule.effect == winner.rule.effect]
        if same:
            text += f" '{winner.id}' is reported as the most specific {winner.rule.effect} rule."
    return text
