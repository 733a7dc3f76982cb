"""Spec documents (capsules, personas, constitutions, plans), their loader and the library.

Re-exported here so callers write ``from soma.specs import Library, load_capsule``; the models
module stays importable on its own for code that only needs the types.
"""

from soma.specs.library import Library
from soma.specs.loader import (
    load_capsule,
    load_constitution,
    load_persona,
    load_plan,
    load_spec,
    parse_spec,
    spec_json_schema,
)
from soma.specs.models import Capsule, Constitution, Persona, Plan, Spec
from soma.specs.plans import validate_plan

__all__ = [
    "Capsule",
    "Constitution",
    "Library",
    "Persona",
    "Plan",
    "Spec",
    "load_capsule",
    "load_constitution",
    "load_persona",
    "load_plan",
    "load_spec",
    "parse_spec",
    "spec_json_schema",
    "validate_plan",
]
