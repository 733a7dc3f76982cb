"""A corpus of malformed spec files (``data/malformed_yaml``): each one is refused by
``load_spec`` with a :class:`SpecError` that names the file, the line (where one is meaningful),
the field (where one is wrong) and a hint — quickly, including the alias bomb."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from soma.errors import SpecError
from soma.specs.loader import load_spec

CORPUS = Path(__file__).parent / "data" / "malformed_yaml"

# file -> (line or None when the whole file is at fault, field or None, words in the message)
EXPECTED: dict[str, tuple[int | None, str | None, str]] = {
    "bad_indentation.yaml": (3, None, "mapping values are not allowed"),
    "billion_laughs.yaml": (1, "a4[0][2][0][6][7]", "aliases expand the document"),
    "colon_in_value.yaml": (3, None, "mapping values are not allowed"),
    "control_character.yaml": (3, None, "unacceptable character U+0007"),
    "custom_tag.yaml": (6, None, "tag '!include'"),
    "deep_block_nesting.yaml": (67, "model.k0.k1.k2.k3.k4.k5.k6", "nests deeper than 64"),
    "deep_flow_nesting.yaml": (2, None, "exceeded maximum nesting depth"),
    "directive_only.yaml": (3, None, "must be a mapping of fields, not empty"),
    "duplicate_key.yaml": (6, "name", "duplicate key 'name'"),
    "duplicate_nested_key.yaml": (8, "model.temperature", "duplicate key 'temperature'"),
    "empty.yaml": (1, None, "the document is empty"),
    "huge_scalar.yaml": (None, None, "larger than 1024 KiB"),
    "kind_not_a_string.yaml": (1, "kind", "unknown kind ['persona']"),
    "latin1_bytes.yaml": (3, None, "not UTF-8"),
    "merge_of_scalar.yaml": (7, None, "expected a mapping or list of mappings for merging"),
    "multi_document.yaml": (6, None, "another document"),
    "name_with_traversal.yaml": (2, "name", "is not a valid name"),
    "nul_byte.yaml": (2, None, "unacceptable character U+0000"),
    "only_comments.yaml": (1, None, "the document is empty"),
    "plan_nodes_not_a_list.yaml": (3, "nodes", "valid list"),
    "python_name_tag.yaml": (1, None, "python/name:os.system"),
    "python_object_tag.yaml": (6, None, "python/object/apply:os.system"),
    "recursive_alias.yaml": (6, "skills[0]", "refers to a value that contains it"),
    "tab_indent.yaml": (4, None, "cannot start any token"),
    "top_level_list.yaml": (1, None, "not a list"),
    "top_level_number.yaml": (1, None, "not a int"),
    "top_level_scalar.yaml": (1, None, "not a str"),
    "unclosed_brace.yaml": (4, None, "expected ',' or '}'"),
    "unclosed_bracket.yaml": (4, None, "expected ',' or ']'"),
    "unclosed_double_quote.yaml": (5, None, "unexpected end of stream"),
    "unclosed_single_quote.yaml": (4, None, "unexpected end of stream"),
    "unhashable_key.yaml": (6, None, "unhashable key"),
    "unknown_field_typo.yaml": (6, "skils", "unknown field 'skils'"),
    "unknown_kind.yaml": (1, "kind", "unknown kind 'workflow'"),
    "utf16_bom.yaml": (1, None, "not UTF-8"),
    "version_as_number.yaml": (3, "version", "valid string (got 1.0)"),
    "wrong_kind.yaml": (1, "kind", "unknown kind 'persone'"),
    "wrong_type_nested.yaml": (7, "model.temperature", "valid number"),
}
# Pydantic's own type messages say what is expected; no extra hint adds anything there.
NO_HINT = {"wrong_type_nested.yaml", "plan_nodes_not_a_list.yaml"}
HINTS = {
    "tab_indent.yaml": "tab",
    "billion_laughs.yaml": "alias bomb",
    "unclosed_double_quote.yaml": "line 3: is it closed?",
    "unclosed_bracket.yaml": "line 3: is it closed?",
    "duplicate_key.yaml": "already set on line 2",
    "python_object_tag.yaml": "tags",
    "wrong_kind.yaml": "did you mean 'persona'?",
    "unknown_field_typo.yaml": "did you mean 'skills'?",
}


def test_corpus_is_complete() -> None:
    files = sorted(p.name for p in CORPUS.iterdir())
    assert files == sorted(EXPECTED), "add new corpus files to EXPECTED"
    assert 20 <= len(files) <= 40


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file_is_refused_with_its_location(name: str) -> None:
    line, field, words = EXPECTED[name]
    path = CORPUS / name
    started = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_spec(path, "plan" if name.startswith("plan_") else None)
    elapsed = time.monotonic() - started
    error = info.value
    text = str(error)
    assert elapsed < 1.0, f"{name} took {elapsed:.2f}s"
    assert words in error.message, text
    assert error.file == str(path)
    assert error.line == line, text
    location = f"{path}:{line}" if line is not None else f"{path}:"
    assert text.startswith(location), text
    assert error.field == field, text
    if field is not None:
        assert f" at {field}: " in text
    if name not in NO_HINT:
        assert error.hint, f"{name} has no hint: {text}"
    assert HINTS.get(name, "") in (error.hint or "")
    assert "Traceback" not in text
    assert "os.system" not in (error.hint or "")
