"""Errors of the policy engine.

A constitution that cannot be compiled is a spec problem (it says which rule and layer, and
where in the file when known), so it derives from :class:`~soma.errors.SpecError`; a refused
action derives from :class:`~soma.errors.SomaError` and carries the whole decision, so whoever
catches it can show the reason and the explanation without calling the engine again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soma.errors import SomaError, SpecError

if TYPE_CHECKING:
    from soma.constitution.types import Decision

__all__ = ["ConstitutionError", "PolicyDenied"]


class ConstitutionError(SpecError):
    """A constitution, a layer of one, or a policy-test file is invalid."""


class PolicyDenied(SomaError):
    """The constitution refused an action (effect ``deny``)."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        rule = f" by rule '{decision.rule_id}'" if decision.rule_id else ""
        super().__init__(f"denied{rule}: {decision.reason}", hint=None)
