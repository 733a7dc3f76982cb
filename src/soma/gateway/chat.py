"""What the OpenAI-compatible endpoints do between the wire format and a :class:`Model`.

A requested model name resolves to a :class:`Target` once and is cached: ``persona:<ref>`` and
``capsule:<ref>`` become the server's default model with a system prompt and a constitution
subject, a configured provider spec passes through as it is. Requests and replies are converted
between OpenAI's shapes and :mod:`soma.models.types` here, and model failures become HTTP
errors a client can act on.

This sits on the hot path of every proxied call (benchmarked in ``bench/bench_gateway.py``), so
per-request work is limited to the conversions themselves: lookups, prompts, compiled
constitutions and the ``/v1/models`` page are all computed once per process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from soma.agents.prompts import persona_lines, system_prompt
from soma.constitution import Action, Constitution, Subject
from soma.constitution.audit import record_decision
from soma.constitution.redact import redact_value
from soma.errors import (
    Forbidden,
    ModelError,
    ModelHTTPError,
    ModelTimeout,
    ModelUnavailable,
    NotFound,
    SomaError,
)
from soma.gateway.errors import error_body
from soma.gateway.openai_types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageOut,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    FunctionOut,
    ModelCard,
    ModelList,
    ToolCallDelta,
    ToolCallOut,
    UsageOut,
)
from soma.gateway.services import Services
from soma.models.protocol import Model
from soma.models.types import (
    Message,
    ModelRequest,
    ModelResponse,
    OutputSchema,
    ToolCall,
    ToolSpec,
    Usage,
)
from soma.specs.library import Library
from soma.specs.models import Capsule, Persona

log = logging.getLogger("soma.gateway")

PERSONA_PREFIX = "persona:"
CAPSULE_PREFIX = "capsule:"
_LIST_HINT = (
    "GET /v1/models lists the models this gateway serves: persona:<name>, capsule:<name> "
    "and the configured provider models"
)
# Distinct names that resolve are few, but version ranges (persona:x@>=1,<2) can be spelled in
# endless ways; the cache is cleared when it grows past this rather than growing without bound.
_MAX_TARGETS = 1024
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "tool_calls": "tool_calls",
    "length": "length",
    "error": "content_filter",
}
_JSON_OBJECT = OutputSchema(name="json_object", json_schema={"type": "object"})
_SSE_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Target:
    """What a requested model name stands for. ``persona`` is set for the governed names
    (``persona:``/``capsule:``), whose replies, streamed or not, pass the constitution."""

    model: Model
    system: str | None = None
    temperature: float | None = None
    persona: Persona | None = None
    capsule: Capsule | None = None

    @property
    def actor(self) -> str:
        """How the audit log names the speaker, as the orchestrator does: ``persona (capsule)``."""
        persona = self.persona.name if self.persona else "-"
        return f"{persona} ({self.capsule.name if self.capsule else 'chat'})"


class Chat:
    """The per-process state of the OpenAI-compatible endpoints, built on first use."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        settings = svc.settings
        self.providers: tuple[str, ...] = tuple(
            dict.fromkeys([settings.model, *settings.gateway_models])
        )
        self._created = int(time.time())
        self._providers: dict[str, Target] = {}
        self._targets: dict[tuple[str, str], tuple[Library, Target]] = {}
        self._constitutions: dict[tuple[str, str], tuple[Library, Constitution]] = {}
        self._listings: dict[str, tuple[Library, bytes]] = {}
        self._upstream = settings.openai_base_url.rstrip("/")

    # --- models ------------------------------------------------------------------------------

    def listing(self, tenant_id: str) -> bytes:
        """The ``/v1/models`` body of a tenant, serialised once per version of its library
        (an install adds models; the settings do not change while the process runs)."""
        library = self.svc.library_for(tenant_id)
        cached = self._listings.get(tenant_id)
        if cached is None or cached[0] is not library:
            cards = [
                *(self._card(PERSONA_PREFIX + p.name, "soma") for p in library.personas()),
                *(self._card(CAPSULE_PREFIX + c.name, "soma") for c in library.capsules()),
                *(self._card(spec, spec.partition(":")[0]) for spec in self.providers),
            ]
            cached = (library, ModelList(data=cards).model_dump_json().encode())
            self._listings[tenant_id] = cached
        return cached[1]

    def _card(self, name: str, owner: str) -> ModelCard:
        return ModelCard(id=name, created=self._created, owned_by=owner)

    async def target(self, name: str, tenant_id: str) -> Target:
        """The target of a model name for a tenant; NotFound for a name it cannot use.

        The first resolution of a name runs in a thread because it may construct the provider
        (the local model loads its weights); later ones are a dictionary read, plus a check
        that the tenant's library has not changed for persona and capsule names."""
        provider = self._providers.get(name)
        if provider is not None:
            return provider
        if name in self.providers:
            provider = await asyncio.to_thread(lambda: Target(model=self.svc.models(name)))
            self._providers[name] = provider
            return provider
        if not name.startswith((PERSONA_PREFIX, CAPSULE_PREFIX)):
            raise NotFound(f"model '{name}' does not exist", hint=_LIST_HINT)
        library = self.svc.library_for(tenant_id)
        cached = self._targets.get((tenant_id, name))
        if cached is None or cached[0] is not library:
            target = await asyncio.to_thread(self._resolve, name, library)
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            cached = (library, target)
            self._targets[(tenant_id, name)] = cached
        return cached[1]

    def _resolve(self, name: str, library: Library) -> Target:
        kind, _, ref = name.partition(":")
        capsule: Capsule | None = None
        try:
            if kind == "capsule":
                capsule = library.capsule(ref)
            persona = library.persona(capsule.persona if capsule else ref)
        except SomaError as exc:
            raise NotFound(
                f"model '{name}' does not exist: {exc.message}",
                hint=f"{exc.hint}; {_LIST_HINT}" if exc.hint else _LIST_HINT,
            ) from None
        return self._governed(persona, capsule)

    def _governed(self, persona: Persona, capsule: Capsule | None) -> Target:
        if capsule is None:
            prompt = persona_prompt(persona)
        else:
            prompt = (
                system_prompt(persona, capsule, [])
                + "\n\nYour instructions, in which {{ name }} placeholders stand for values "
                "the user gives you in the conversation:\n" + capsule.instructions.strip()
            )
        return Target(
            model=self.svc.models(self.svc.settings.model),
            system=prompt,
            temperature=persona.model.temperature,
            persona=persona,
            capsule=capsule,
        )

    # --- governance --------------------------------------------------------------------------

    def constitution(self, capsule: Capsule | None, tenant_id: str) -> Constitution:
        """The default constitution made stricter by the capsule's policies, compiled once per
        tenant library, exactly as the orchestrator governs the same capsule's agents."""
        library = self.svc.library_for(tenant_id)
        key = (tenant_id, capsule.ref if capsule else "")
        cached = self._constitutions.get(key)
        if cached is None or cached[0] is not library:
            layers = [library.constitution(ref) for ref in capsule.policies] if capsule else []
            cached = (library, Constitution.compile(library.constitution("default"), *layers))
            self._constitutions[key] = cached
        return cached[1]

    def govern(self, target: Target, response: ModelResponse, tenant_id: str) -> ModelResponse:
        """The reply as the client may see it: secrets masked, or Forbidden when a rule denies
        it. The decision is appended to the audit log, which writes to the store, so callers
        on the event loop run this in a thread."""
        assert target.persona is not None
        subject = Subject(
            persona=target.persona.name,
            role=target.persona.role,
            capsule=target.capsule.name if target.capsule else None,
            tenant=tenant_id,
        )
        message = response.message
        action = Action(kind="model_output", text=message.content or "")
        decision = self.constitution(target.capsule, tenant_id).check(subject, action)
        record_decision(
            self.svc.store,
            tenant_id=tenant_id,
            project_id=None,
            actor=target.actor,
            action_kind=action.kind,
            arguments=decision.text if decision.text is not None else action.text,
            rule_id=decision.rule_id,
            effect=decision.effect,
            reason=decision.reason,
        )
        if decision.effect == "deny":
            raise Forbidden(
                f"the reply was withheld by the constitution, rule '{decision.rule_id}': "
                f"{decision.reason}",
                hint="rephrase the request; the audit log records the decision",
            )
        calls = [
            call.model_copy(update={"arguments": redact_value(call.arguments)[0]})
            for call in message.tool_calls
        ]
        content = message.content
        if content is not None and decision.text is not None:
            content = decision.text
        governed = message.model_copy(update={"content": content, "tool_calls": calls})
        return response.model_copy(update={"message": governed})

    # --- errors ------------------------------------------------------------------------------

    def model_error(self, exc: ModelError, request_id: str) -> tuple[int, dict[str, Any]]:
        """A provider failure as the HTTP status that tells the client whose problem it is, and
        the error body: 429 to back off, 400 for a request the model refused, 502/503/504 for
        the upstream. The upstream's address is internal, so it is replaced in the message."""
        status = 502
        if isinstance(exc, ModelHTTPError):
            if exc.status == 429:
                status = 429
            elif exc.status in {400, 413, 422}:
                status = 400
            elif exc.status == 408:
                status = 504
        elif isinstance(exc, ModelTimeout):
            status = 504
        elif isinstance(exc, ModelUnavailable):
            status = 503
        if status >= 500:
            log.warning("model call failed (request %s): %s", request_id, exc)
        message = str(exc).replace(self._upstream, "the upstream server")
        return status, error_body(status, f"the model failed: {message}")


def chat_for(request: Request) -> Chat:
    """The app's Chat, created on first use so that building an app stays cheap."""
    state = request.app.state
    chat: Chat | None = getattr(state, "soma_openai_chat", None)
    if chat is None:
        chat = Chat(state.services)
        state.soma_openai_chat = chat
    return chat


def persona_prompt(persona: Persona) -> str:
    """The persona part of the agents' system prompt, for chats that have no capsule task."""
    return "\n\n".join(persona_lines(persona))


# --- requests -----------------------------------------------------------------------------------


def model_request(body: ChatCompletionRequest, target: Target) -> ModelRequest:
    """The provider-neutral request: the target's system prompt first, then the conversation.

    A tool result names its tool when the client did not, looked up from the call it answers,
    because some providers need the name."""
    messages: list[Message] = []
    if target.system is not None:
        messages.append(Message(role="system", content=target.system))
    tool_names: dict[str, str] = {}
    for wire in body.messages:
        role = wire.role
        if role == "assistant" and wire.tool_calls:
            calls = [
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
                for c in wire.tool_calls
            ]
            tool_names.update((call.id, call.name) for call in calls)
            messages.append(Message(role="assistant", content=wire.text, tool_calls=calls))
        elif role == "tool":
            call_id = wire.tool_call_id
            name = wire.name or tool_names.get(call_id or "")
            messages.append(
                Message(role="tool", content=wire.text or "", tool_call_id=call_id, name=name)
            )
        else:
            text = wire.text
            messages.append(
                Message(
                    role="system" if role == "developer" else role,
                    content=text if role == "assistant" else (text or ""),
                    name=wire.name,
                )
            )
    tools: list[ToolSpec] = []
    if body.tools and body.tool_choice != "none":
        tools = [
            ToolSpec(
                name=tool.function.name,
                description=tool.function.description,
                parameters=tool.function.parameters,
            )
            for tool in body.tools
        ]
    output: OutputSchema | None = None
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
        output = OutputSchema(name=fmt.json_schema.name, json_schema=fmt.json_schema.json_schema)
    elif fmt is not None and fmt.type == "json_object":
        output = _JSON_OBJECT
    return ModelRequest(
        messages=messages,
        tools=tools,
        output=output,
        temperature=body.temperature if body.temperature is not None else target.temperature,
        max_tokens=body.max_completion_tokens or body.max_tokens,
    )


# --- replies ------------------------------------------------------------------------------------


def usage_out(usage: Usage) -> UsageOut:
    return UsageOut(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
    )


def _calls_out(calls: list[ToolCall]) -> list[ToolCallOut] | None:
    if not calls:
        return None
    return [
        ToolCallOut(id=c.id, function=FunctionOut(name=c.name, arguments=json.dumps(c.arguments)))
        for c in calls
    ]


def completion_body(response: ModelResponse, *, completion_id: str, model: str) -> bytes:
    """The ``chat.completion`` JSON; ``model`` is the name the client asked for."""
    message = response.message
    completion = ChatCompletion(
        id=completion_id,
        created=int(time.time()),
        model=model,
        choices=[
            Choice(
                message=ChatMessageOut(
                    content=message.content, tool_calls=_calls_out(message.tool_calls)
                ),
                finish_reason=_FINISH[response.finish_reason],
            )
        ],
        usage=usage_out(response.usage),
    )
    return completion.model_dump_json().encode()


class ChunkWriter:
    """Server-sent events of one streamed completion, in OpenAI's ``chat.completion.chunk``
    shape: the role first, text deltas, tool calls, the finish reason, optionally usage."""

    def __init__(self, completion_id: str, model: str) -> None:
        self._id = completion_id
        self._model = model
        self._created = int(time.time())

    def _event(self, choices: list[ChunkChoice], usage: UsageOut | None = None) -> bytes:
        chunk = ChatCompletionChunk(
            id=self._id, created=self._created, model=self._model, choices=choices, usage=usage
        )
        return b"data: " + chunk.model_dump_json().encode() + b"\n\n"

    def role(self) -> bytes:
        return self._event([ChunkChoice(delta=Delta(role="assistant", content=""))])

    def text(self, text: str) -> bytes:
        return self._event([ChunkChoice(delta=Delta(content=text))])

    def ending(self, response: ModelResponse, *, streamed_text: bool, usage: bool) -> list[bytes]:
        """Everything after the text: content the model did not stream (some providers send
        it whole), tool calls (our models only report them in the final reply), the finish
        reason, usage if asked for, and the ``[DONE]`` sentinel."""
        events: list[bytes] = []
        message = response.message
        if message.content and not streamed_text:
            events.append(self.text(message.content))
        if message.tool_calls:
            deltas = [
                ToolCallDelta(
                    index=index,
                    id=call.id,
                    function=FunctionOut(name=call.name, arguments=json.dumps(call.arguments)),
                )
                for index, call in enumerate(message.tool_calls)
            ]
            events.append(self._event([ChunkChoice(delta=Delta(tool_calls=deltas))]))
        finish = _FINISH[response.finish_reason]
        events.append(self._event([ChunkChoice(delta=Delta(), finish_reason=finish)]))
        if usage:
            events.append(self._event([], usage_out(response.usage)))
        events.append(_SSE_DONE)
        return events

    @staticmethod
    def error(body: dict[str, Any]) -> bytes:
        """A failure after the stream started, when the status line is already sent; the
        OpenAI SDKs raise an APIError for an event with an ``error`` member."""
        return b"data: " + json.dumps(body).encode() + b"\n\n"
