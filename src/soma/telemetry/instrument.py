"""Spans and metrics around the agent's effects: model calls, tool calls, policy decisions.

The activities call these around the real work, never around a replayed result, so a span or
a counted token always means a call that happened. Types are structural (protocols) so this
module depends on nothing in Soma above settings: any reply with a ``usage`` works.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

from opentelemetry.trace import Span, Status, StatusCode

from soma.telemetry import metrics
from soma.telemetry.tracing import tracer


class _Usage(Protocol):
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...


class _Reply(Protocol):
    @property
    def usage(self) -> _Usage: ...


class _Decision(Protocol):
    @property
    def effect(self) -> str: ...
    @property
    def rule_id(self) -> str | None: ...


R = TypeVar("R", bound=_Reply)
D = TypeVar("D", bound=_Decision)


async def model_call(model: str, call: Awaitable[R], *, purpose: str = "agent") -> R:
    """Await one model call inside a ``soma.model`` span; count its tokens.

    ``purpose`` tells agent steps from critic and reviewer calls in the trace.
    """
    with tracer().start_as_current_span(
        "soma.model", attributes={"soma.model": model, "soma.model.purpose": purpose}
    ) as span:
        started = time.perf_counter()
        reply = await call
        latency = time.perf_counter() - started
        usage = reply.usage
        metrics.record_tokens(model, usage.input_tokens, usage.output_tokens)
        if span.is_recording():
            span.set_attributes(
                {
                    "soma.model.input_tokens": usage.input_tokens,
                    "soma.model.output_tokens": usage.output_tokens,
                    "soma.model.latency_ms": round(latency * 1000, 3),
                }
            )
        return reply


@contextmanager
def tool_call(tool: str) -> Iterator[Callable[[bool], None]]:
    """A ``soma.tool`` span around one tool call; call the yielded function with the outcome.

    A tool call that raises counts as ``error`` and marks the span as failed.
    """
    with tracer().start_as_current_span("soma.tool", attributes={"soma.tool": tool}) as span:
        done = False

        def finish(ok: bool) -> None:
            nonlocal done
            done = True
            metrics.record_tool_call(tool, "ok" if ok else "error")
            span.set_attribute("soma.tool.ok", ok)
            if not ok:
                span.set_status(Status(StatusCode.ERROR, "the tool reported a failure"))

        try:
            yield finish
        except BaseException:
            if not done:
                metrics.record_tool_call(tool, "error")
                span.set_attribute("soma.tool.ok", False)
            raise


def decision(kind: str, tool: str | None, check: Callable[[], D]) -> D:
    """Run a constitution check inside a ``soma.constitution`` span (effect, rule id); a tool
    call's decision is also counted by its effect."""
    attributes: dict[str, str] = {"soma.action.kind": kind}
    if tool:
        attributes["soma.tool"] = tool
    with tracer().start_as_current_span("soma.constitution", attributes=attributes) as span:
        verdict = check()
        _describe(span, verdict)
        if tool and kind == "tool_call":
            metrics.record_tool_call(tool, verdict.effect)
        return verdict


def _describe(span: Span, verdict: _Decision) -> None:
    if span.is_recording():
        span.set_attribute("soma.constitution.effect", verdict.effect)
        if verdict.rule_id:
            span.set_attribute("soma.constitution.rule_id", verdict.rule_id)
