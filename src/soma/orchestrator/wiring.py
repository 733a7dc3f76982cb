"""Feeding finished nodes' outputs into later nodes' inputs (pure, so workflows can use it)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from soma.specs.plans import REFERENCE_RE


def resolve_inputs(value: Any, outputs: Mapping[str, Any]) -> Any:
    """Replace ``${node.outputs.field}`` references with the produced values.

    A string that is exactly one reference takes the value as-is (objects stay objects); a
    reference inside a longer string is interpolated as text.
    """
    if isinstance(value, dict):
        return {key: resolve_inputs(item, outputs) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_inputs(item, outputs) for item in value]
    if not isinstance(value, str):
        return value
    whole = REFERENCE_RE.fullmatch(value.strip())
    if whole:
        return _lookup(outputs, whole.group(1), whole.group(2))
    return REFERENCE_RE.sub(lambda m: _as_text(_lookup(outputs, m.group(1), m.group(2))), value)


def _lookup(outputs: Mapping[str, Any], node: str, field: str) -> Any:
    produced = outputs.get(node)
    if isinstance(produced, dict):
        return produced.get(field, "")
    return ""


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
