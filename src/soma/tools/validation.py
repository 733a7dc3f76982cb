"""Checking tool arguments against the advertised JSON Schema before any tool code runs.

Errors name the field path (``edits.0.path``) and what is wrong, because the reader is a model
that has to fix its own call.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from soma.errors import ToolError


class ArgsValidator:
    def __init__(self, tool_name: str, schema: dict[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        self.tool_name = tool_name
        self._validator = Draft202012Validator(schema)

    def validate(self, args: Any) -> None:
        error = best_match(self._validator.iter_errors(args))
        if error is None:
            return
        path = ".".join(str(p) for p in error.absolute_path) or "<arguments>"
        raise ToolError(
            f"invalid arguments for {self.tool_name}: at {path}: {error.message}",
            hint="fix the arguments to match the tool's parameter schema and call it again",
        )
