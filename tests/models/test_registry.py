from __future__ import annotations

import sys
import types

import pytest
from pydantic import SecretStr

from soma.errors import ModelUnavailable
from soma.models import OpenAICompatModel, ScriptedModel, resolve_model
from soma.models.protocol import Model
from soma.settings import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings(
        openai_base_url="http://127.0.0.1:9/v1",
        openai_api_key=SecretStr("sk-registry-secret"),
        model_timeout_s=7,
    )


@pytest.fixture
def fake_local(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Stand in for soma.models.local, which another module owns and may need a heavy runtime."""
    calls: list[str | None] = []
    module = types.ModuleType("soma.models.local")

    def load_local_model(settings: Settings, name: str | None) -> Model:
        calls.append(name)
        return ScriptedModel([], name=f"local:{name}")

    module.load_local_model = load_local_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "soma.models.local", module)
    return calls


def test_openai_spec(settings: Settings) -> None:
    model = resolve_model("openai:gpt-4o-mini", settings)
    assert isinstance(model, OpenAICompatModel)
    assert model.name == "openai:gpt-4o-mini"
    assert model.base_url == "http://127.0.0.1:9/v1"
    assert model.timeout_s == 7
    assert "sk-registry-secret" in model._headers()["Authorization"]
    assert "sk-registry-secret" not in repr(model)


def test_openai_spec_keeps_colons_in_model_name(settings: Settings) -> None:
    assert resolve_model("openai:llama3:8b", settings).name == "openai:llama3:8b"


def test_openai_without_key(settings: Settings) -> None:
    model = resolve_model("openai:m", settings.model_copy(update={"openai_api_key": None}))
    assert isinstance(model, OpenAICompatModel)
    assert "Authorization" not in model._headers()


def test_openai_without_model_name(settings: Settings) -> None:
    with pytest.raises(ModelUnavailable, match="names no model"):
        resolve_model("openai:", settings)


@pytest.mark.parametrize(("spec", "name"), [("local", None), ("local:smollm2", "smollm2")])
def test_local_specs_call_the_local_loader(
    settings: Settings, fake_local: list[str | None], spec: str, name: str | None
) -> None:
    model = resolve_model(spec, settings)
    assert fake_local == [name]
    assert model.name == f"local:{name}"


def test_missing_local_runtime(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "soma.models.local", None)  # makes the import fail
    with pytest.raises(ModelUnavailable, match="local model runtime") as caught:
        resolve_model("local", settings)
    assert caught.value.hint is not None
    assert "openai:<model>" in caught.value.hint


@pytest.mark.parametrize("spec", ["gpt-4", "anthropic:claude", ""])
def test_unknown_spec_lists_valid_forms(settings: Settings, spec: str) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        resolve_model(spec, settings)
    assert "'local', 'local:<name>' or 'openai:<model>'" in str(caught.value)
