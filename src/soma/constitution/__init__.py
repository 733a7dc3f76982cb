"""The constitution: the policy every agent action passes before it happens.

Agents propose tool calls, produce model outputs and message each other; each of those is a
:class:`Action` by a :class:`Subject` (persona, role, tenant, capsule), and
:meth:`Constitution.check` turns it into a :class:`Decision` (allow, deny, require approval or
redact) with secrets masked and an explanation a human can audit. See docs/constitution.md.
"""

from soma.constitution.conditions import CONDITION_KEYS
from soma.constitution.engine import CompiledRule, Constitution
from soma.constitution.errors import ConstitutionError, PolicyDenied
from soma.constitution.redact import SECRET_KINDS, redact, redact_value
from soma.constitution.testing import (
    CaseResult,
    PolicyCase,
    builtin_cases,
    load_cases,
    run_policy_tests,
)
from soma.constitution.types import EFFECT_RANK, Action, ActionKind, Decision, Effect, Subject

__all__ = [
    "CONDITION_KEYS",
    "EFFECT_RANK",
    "SECRET_KINDS",
    "Action",
    "ActionKind",
    "CaseResult",
    "CompiledRule",
    "Constitution",
    "ConstitutionError",
    "Decision",
    "Effect",
    "PolicyCase",
    "PolicyDenied",
    "Subject",
    "builtin_cases",
    "load_cases",
    "redact",
    "redact_value",
    "run_policy_tests",
]
