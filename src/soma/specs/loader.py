"""Load spec documents from YAML with errors that point at the exact file, line and field.

Specs are written by hand, so every error must say where it is: we compose the YAML node tree
(which carries line marks), record the line of every mapping key and sequence item in a side table
keyed by its path, and keep the loaded data as plain dicts and lists for pydantic to validate.
Pydantic's error locations are then mapped back through that table.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar, get_args

import jsonschema
import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from referencing.exceptions import Unresolvable

from soma.errors import SpecError
from soma.specs.models import SPEC_TYPES, Capsule, Constitution, Persona, Plan, Spec
from soma.specs.plans import validate_plan
from soma.specs.sources import DocPath, SourceMap, format_path, origin_of, remember

__all__ = [
    "MAX_SPEC_BYTES",
    "SourceMap",
    "format_path",
    "load_capsule",
    "load_constitution",
    "load_persona",
    "load_plan",
    "load_spec",
    "origin_of",
    "parse_spec",
    "parse_yaml",
    "spec_json_schema",
    "validate_plan",
]

MAX_SPEC_BYTES = 1024 * 1024
"""Specs are small; anything bigger is a mistake (or an attack on the YAML parser)."""
MAX_SPEC_DEPTH = 64
"""No spec nests deeper; refusing more keeps every later walk off the stack limit."""
MAX_ALIAS_EXPANSION = 10_000
"""Values an alias (``*name``) may repeat in all; more is an alias bomb ("billion laughs")."""

S = TypeVar("S", bound=Spec)

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_KIND_HINT = "add a top-level `kind:` of capsule, persona, constitution or plan"


# --- YAML ---------------------------------------------------------------------------------------


def parse_yaml(text: str, source: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data plus the line of every key and item."""
    if len(text.encode("utf-8", errors="replace")) > MAX_SPEC_BYTES:
        raise _too_big(source)
    _check_characters(text, source)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError("the document is empty", file=source, line=1, hint=_KIND_HINT)
        lines: dict[DocPath, int] = {(): node.start_mark.line + 1}
        _index_node(loader, node, (), lines, source, _Walk())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, text, source) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=source) from None
    finally:
        loader.dispose()
    return data, SourceMap(source, lines)


class _Walk:
    """Bounds of one index walk: nodes seen once, and how many were repeated through aliases."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.active: set[int] = set()
        self.repeats = 0


_UNREADABLE = re.compile(
    r"[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
"""What YAML refuses to read: control characters, NUL, lone surrogates, U+FFFE and U+FFFF."""


def _check_characters(text: str, source: str) -> None:
    """Refuse unreadable characters with their line; PyYAML gives only an offset, or crashes."""
    found = _UNREADABLE.search(text.lstrip("\ufeff"))
    if found is not None:
        offset = found.start() + len(text) - len(text.lstrip("\ufeff"))
        raise SpecError(
            f"unacceptable character U+{ord(found.group()):04X} (control characters, NUL and"
            " lone surrogates are not allowed)",
            file=source,
            line=text.count("\n", 0, offset) + 1,
            hint='remove it, or write it as an escape inside a double-quoted string, e.g. "\\t"',
        )


def _index_node(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: DocPath,
    lines: dict[DocPath, int],
    source: str,
    walk: _Walk,
) -> None:
    if id(node) in walk.active:
        raise SpecError(
            "an alias (`*name`) refers to a value that contains it",
            file=source,
            line=node.start_mark.line + 1,
            field=format_path(path[:8]),
            hint="spec values are plain data and cannot contain themselves",
        )
    if len(path) > MAX_SPEC_DEPTH:
        raise SpecError(
            f"the document nests deeper than {MAX_SPEC_DEPTH} levels",
            file=source,
            line=node.start_mark.line + 1,
            field=format_path(path[:8]),
            hint="flatten the structure; specs never need this much nesting",
        )
    if id(node) in walk.seen:
        walk.repeats += 1
        if walk.repeats > MAX_ALIAS_EXPANSION:
            raise SpecError(
                f"aliases expand the document to more than {MAX_ALIAS_EXPANSION} repeated values",
                file=source,
                line=node.start_mark.line + 1,
                field=format_path(path[:8]),
                hint="an alias bomb? repeat the values instead of nesting aliases (`*name`)",
            )
    walk.seen.add(id(node))
    walk.active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        _index_mapping(loader, node, path, lines, source, walk)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index_node(loader, item, (*path, index), lines, source, walk)
    walk.active.discard(id(node))


def _index_mapping(
    loader: yaml.SafeLoader,
    node: yaml.MappingNode,
    path: DocPath,
    lines: dict[DocPath, int],
    source: str,
    walk: _Walk,
) -> None:
    """Record key lines and refuse duplicate keys, which PyYAML would silently let win."""
    first_seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in first_seen:
            raise SpecError(
                f"duplicate key {key!r}",
                file=source,
                line=line,
                field=format_path((*path, key)),
                hint=f"it is already set on line {first_seen[key]}; keep only one",
            )
        first_seen[key] = line
        lines[(*path, key)] = line
        _index_node(loader, value_node, (*path, key), lines, source, walk)


def _yaml_error(exc: yaml.MarkedYAMLError, text: str, source: str) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = exc.problem or "malformed YAML"
    return SpecError(
        f"invalid YAML: {problem}", file=source, line=line, hint=_yaml_hint(exc, text, line)
    )


def _yaml_hint(exc: yaml.MarkedYAMLError, text: str, line: int | None) -> str | None:
    """Point at the usual culprit: tabs, an unclosed bracket or quote, or indentation."""
    problem, context = exc.problem or "", exc.context or ""
    if line is not None and "\t" in _line_text(text, line):
        return "YAML does not allow tab characters for indentation; use spaces"
    if "constructor for the tag" in problem:
        return "YAML tags (`!!python/...`, `!include`, ...) are not allowed in specs; remove it"
    if "unhashable" in problem:
        return "mapping keys must be plain scalars such as names or numbers"
    if "flow" in context or "quoted" in context:
        start = exc.context_mark.line + 1 if exc.context_mark is not None else line
        return f"{context.removeprefix('while ')} that starts on line {start}: is it closed?"
    if "mapping" in problem or "key" in problem or "block" in context:
        return (
            "check the indentation (nested keys need more spaces than their parent) and quote "
            "values that contain ': '"
        )
    return context or None


def _line_text(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _too_big(source: str) -> SpecError:
    return SpecError(
        f"the document is larger than {MAX_SPEC_BYTES // 1024} KiB",
        file=source,
        hint="keep specs small; put large knowledge in workspace files referenced by `file:`",
    )


# --- validation errors --------------------------------------------------------------------------


_ABSENT = object()


def _data_path(loc: tuple[int | str, ...], data: Any, error_type: str) -> DocPath:
    """Map a pydantic location onto the document, dropping validator tags such as ``[key]``."""
    path: list[Any] = []
    current = data
    for index, part in enumerate(loc):
        child = _child(current, part)
        if child is not _ABSENT:
            current = child
        elif not (index == len(loc) - 1 and error_type == "missing"):
            continue
        path.append(part)
    return tuple(path)


def _child(container: Any, part: int | str) -> Any:
    if isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container):
        return container[part]
    if isinstance(container, dict) and part in container:
        return container[part]
    return _ABSENT


def _model_fields_at(model: type[BaseModel], path: DocPath) -> list[str]:
    """The field names allowed at ``path``, to suggest the intended one for an unknown field."""
    annotation: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        current = _first_model(annotation)
        found = current and _field_by_key(current, part)
        if not found:
            return []
        annotation = found
    current = _first_model(annotation)
    if current is None:
        return []
    return [info.alias or name for name, info in current.model_fields.items()]


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _field_by_key(model: type[BaseModel], key: Any) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def _describe(error: ErrorDetails, path: DocPath, model: type[BaseModel]) -> tuple[str, str | None]:
    """A human message and hint for one pydantic error."""
    kind, name = error["type"], str(path[-1]) if path else ""
    if kind == "missing":
        return f"missing required field '{name}'", None
    if kind == "extra_forbidden":
        allowed = _model_fields_at(model, path[:-1])
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else _allowed_hint(allowed)
        return f"unknown field '{name}'", hint
    message = error["msg"].removeprefix("Value error, ")
    if kind != "value_error":
        message = f"{message} (got {_short(error.get('input'))})"
    return message, _field_hint(name, message)


def _allowed_hint(allowed: list[str]) -> str | None:
    return f"allowed fields: {', '.join(sorted(allowed))}" if allowed else None


def _field_hint(name: str, message: str) -> str | None:
    if name == "version" or "semantic version" in message:
        return "use semantic versions like 1.2.0 (quote it if YAML reads it as a number)"
    if "not a valid name" in message:
        return "names look like 'write-spec' or 'qa_engineer'"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _validation_error(
    exc: ValidationError, data: Any, model: type[S], where: SourceMap
) -> SpecError:
    """Report the most useful error and count the rest.

    Unknown fields come first (a typo explains other errors), then wrong values, then missing
    fields, each by line: fixing what is written usually comes before adding what is not.
    """
    located = []
    for order, error in enumerate(exc.errors()):
        path = _data_path(error["loc"], data, error["type"])
        rank = {"extra_forbidden": 0, "missing": 2}.get(error["type"], 1)
        located.append((rank, where.line_of(path) or 0, order, error, path))
    located.sort(key=lambda item: item[:3])
    _, _, _, error, path = located[0]
    message, hint = _describe(error, path, model)
    rest = [item for item in located[1:] if not _is_echo(item[3], item[4], path, hint)]
    if rest:
        others = [f"{format_path(p) or 'document'} (line {ln})" for _, ln, _, _, p in rest[:3]]
        message += f"; {len(rest)} more problem(s), at {', '.join(others)}"
    return where.error(message, path, hint=hint)


def _is_echo(error: ErrorDetails, path: DocPath, reported: DocPath, hint: str | None) -> bool:
    """A field reported missing only because its name was misspelt is not a second problem."""
    return (
        error["type"] == "missing"
        and path[:-1] == reported[:-1]
        and hint == f"did you mean '{path[-1]}'?"
    )


# --- kinds and semantic checks ------------------------------------------------------------------


def _resolve_kind(data: dict[str, Any], kind: str | None, where: SourceMap) -> str:
    declared = data.get("kind")
    if declared is not None and (not isinstance(declared, str) or declared not in SPEC_TYPES):
        close = difflib.get_close_matches(str(declared), list(SPEC_TYPES), n=1)
        hint = f"did you mean '{close[0]}'?" if close else _KIND_HINT
        raise where.error(f"unknown kind {declared!r}", ("kind",), hint=hint)
    if declared and kind and declared != kind:
        raise where.error(f"expected a {kind} document but this is a {declared}", ("kind",))
    chosen = declared or kind or _kind_from_name(where.file or "")
    if chosen is None:
        raise where.error("cannot tell what kind of document this is", hint=_KIND_HINT)
    if chosen not in SPEC_TYPES:
        raise SpecError(f"unknown spec kind {chosen!r}", hint=_KIND_HINT)
    return chosen


def _kind_from_name(file: str) -> str | None:
    """Guess from ``capsule.yaml``, ``x.persona.yaml`` or a ``personas/`` parent directory."""
    path = Path(file)
    for part in path.name.split(".")[:-1]:
        if part in SPEC_TYPES:
            return part
    for parent in path.parts[:-1][::-1]:
        if parent.endswith("s") and parent[:-1] in SPEC_TYPES:
            return parent[:-1]
    return None


def _check_capsule(capsule: Capsule, where: SourceMap) -> None:
    """Checks pydantic cannot express: the JSON Schemas and their use by artifacts and evals."""
    for name in ("inputs", "outputs"):
        _check_json_schema(getattr(capsule, name), (name,), where)
    declared = capsule.outputs.get("properties", {})
    for index, artifact in enumerate(capsule.artifacts):
        if artifact.source not in declared:
            raise where.error(
                f"artifact source '{artifact.source}' is not an output field",
                ("artifacts", index, "from"),
                hint=_choices_hint(artifact.source, list(declared)),
            )
    for index, evaluation in enumerate(capsule.evals):
        _check_eval_input(capsule, evaluation.input, ("evals", index, "input"), where)
        for number, check in enumerate(evaluation.checks):
            _check_eval_check(
                check.kind,
                check.field,
                check.value,
                declared,
                where,
                ("evals", index, "checks", number),
            )


def _check_json_schema(schema: dict[str, Any], path: DocPath, where: SourceMap) -> None:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise where.error(
            f"not a valid JSON Schema: {exc.message}",
            (*path, *exc.absolute_path),
            hint="see https://json-schema.org/understanding-json-schema/",
        ) from None
    if schema.get("type") != "object":
        raise where.error(
            f"{path[-1]} must describe an object", (*path, "type"), hint="set `type: object`"
        )


def _check_eval_input(
    capsule: Capsule, value: dict[str, Any], path: DocPath, where: SourceMap
) -> None:
    try:
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(capsule.inputs).iter_errors(value)
        )
    except Unresolvable as exc:
        raise where.error(
            f"the inputs schema has an unresolvable $ref: {exc}",
            ("inputs",),
            hint="only local refs such as '#/$defs/x' resolve",
        ) from None
    if error is not None:
        raise where.error(
            f"eval input does not match the capsule's inputs: {error.message}",
            (*path, *error.absolute_path),
        )


def _check_eval_check(
    kind: str,
    name: str | None,
    value: Any,
    declared: Mapping[str, Any],
    where: SourceMap,
    path: DocPath,
) -> None:
    if kind in {"contains", "regex", "min_length"} and (name is None or name not in declared):
        raise where.error(
            f"a '{kind}' check needs `field:` naming an output field",
            (*path, "field"),
            hint=_choices_hint(name or "", list(declared)),
        )
    if kind == "regex":
        try:
            re.compile(str(value))
        except re.error as exc:
            raise where.error(f"invalid regular expression: {exc}", (*path, "value")) from None
    if kind == "min_length" and (not isinstance(value, int) or isinstance(value, bool)):
        raise where.error("a 'min_length' check needs an integer `value:`", (*path, "value"))
    if kind == "file_exists" and not (isinstance(value, str) and value):
        raise where.error(
            "a 'file_exists' check needs a workspace path as `value:`", (*path, "value")
        )


def _choices_hint(name: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"declared fields: {', '.join(sorted(choices))}" if choices else None


_SEMANTIC_CHECKS: dict[type[Spec], Callable[[Any, SourceMap], None]] = {Capsule: _check_capsule}


# --- public API ---------------------------------------------------------------------------------


def parse_spec(text: str, kind: str | None = None, source: str = "<string>") -> Spec:
    """Parse and validate one document; ``kind`` is used when the document does not say."""
    data, where = parse_yaml(text, source)
    if not isinstance(data, dict):
        found = {list: "a list", type(None): "empty"}.get(type(data), f"a {type(data).__name__}")
        raise where.error(f"the document must be a mapping of fields, not {found}", hint=_KIND_HINT)
    model = SPEC_TYPES[_resolve_kind(data, kind, where)]
    try:
        spec = model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, data, model, where) from None
    check = _SEMANTIC_CHECKS.get(model)
    if check is not None:
        check(spec, where)
    remember(spec, where)
    return spec


def load_spec(path: str | Path, kind: str | None = None) -> Spec:
    """Load a spec file; repeated loads of an unchanged file return the same (frozen) object."""
    file = Path(path)
    if file.is_dir():
        file = file / "capsule.yaml"
    try:
        stat = file.stat()
    except OSError as exc:
        raise SpecError(f"cannot read the spec: {exc.strerror}", file=str(file)) from None
    if stat.st_size > MAX_SPEC_BYTES:
        raise _too_big(str(file))
    return _load_cached(str(file), stat.st_mtime_ns, stat.st_size, kind)


@lru_cache(maxsize=1024)
def _load_cached(file: str, mtime_ns: int, size: int, kind: str | None) -> Spec:
    del mtime_ns, size  # part of the cache key only: an edited file is read again
    try:
        raw = Path(file).read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read the spec: {exc.strerror}", file=file) from None
    return parse_spec(_decode(raw, file), kind, file)


def _decode(raw: bytes, source: str) -> str:
    if len(raw) > MAX_SPEC_BYTES:
        raise _too_big(source)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            "the file is not UTF-8 text", file=source, line=line, hint="save it as UTF-8"
        ) from None


def _load_as(path: str | Path, model: type[S]) -> S:
    spec = load_spec(path, _kind_of(model))
    assert isinstance(spec, model)  # _resolve_kind refused any other kind
    return spec


def _kind_of(model: type[Spec]) -> str:
    return next(kind for kind, cls in SPEC_TYPES.items() if cls is model)


def load_capsule(path: str | Path) -> Capsule:
    """Load a capsule from its ``capsule.yaml`` or from the directory holding it."""
    return _load_as(path, Capsule)


def load_persona(path: str | Path) -> Persona:
    return _load_as(path, Persona)


def load_constitution(path: str | Path) -> Constitution:
    return _load_as(path, Constitution)


def load_plan(path: str | Path) -> Plan:
    return _load_as(path, Plan)


def spec_json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema for one kind, for editor completion (e.g. the YAML language server)."""
    if kind not in SPEC_TYPES:
        raise SpecError(f"unknown spec kind {kind!r}", hint=_KIND_HINT)
    schema = SPEC_TYPES[kind].model_json_schema(by_alias=True)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://soma-agent-hub.dev/schemas/{kind}.schema.json",
        **schema,
        "title": f"Soma {kind}",
    }
    if kind == "capsule":  # tools may be given as bare names; the model normalises them
        items = schema["properties"]["tools"]["items"]
        schema["properties"]["tools"]["items"] = {"anyOf": [{"type": "string"}, items]}
    return schema
