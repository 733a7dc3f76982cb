"""Turns a model spec string (``SOMA_MODEL``, ``--model``) into a ready :class:`Model`."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from soma.errors import ModelUnavailable
from soma.models.openai_compat import OpenAICompatModel
from soma.models.protocol import Model
from soma.settings import Settings

_VALID_FORMS = "'local', 'local:<name>' or 'openai:<model>'"

LocalLoader = Callable[[Settings, str | None], Model]


def resolve_model(spec: str, settings: Settings) -> Model:
    """``openai:<model>`` talks to ``settings.openai_base_url``; ``local[:<name>]`` loads the
    embedded runtime, which is imported only here so a missing one never breaks other providers."""
    provider, _, name = spec.strip().partition(":")
    if provider == "openai":
        return _openai(name, spec, settings)
    if provider == "local":
        return _local(name or None, settings)
    raise ModelUnavailable(f"unknown model {spec!r}", hint=f"use {_VALID_FORMS}")


def _openai(model: str, spec: str, settings: Settings) -> Model:
    if not model:
        raise ModelUnavailable(
            f"model spec {spec!r} names no model",
            hint="write it as 'openai:<model>', e.g. openai:gpt-4o-mini",
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return OpenAICompatModel(
        model, settings.openai_base_url, key, timeout_s=settings.model_timeout_s
    )


def _local(name: str | None, settings: Settings) -> Model:
    try:
        module = importlib.import_module("soma.models.local")
        loader: LocalLoader = module.load_local_model
        return loader(settings, name)
    except ImportError as exc:
        raise ModelUnavailable(
            f"the local model runtime is not available ({exc})",
            hint="install it with: pip install 'soma-agent-hub[local]', "
            "or use SOMA_MODEL=openai:<model> with an OpenAI-compatible server",
        ) from exc
