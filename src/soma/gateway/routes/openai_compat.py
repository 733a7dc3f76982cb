"""OpenAI-compatible ``/v1/models`` and ``/v1/chat/completions``, so any OpenAI SDK can talk to
personas, capsules and the configured provider models (docs/api.md).

Every call is proxied, so the route stays thin and allocation-light: authentication and
request-rate limits come from the ``require`` dependency, the token quota is one ``peek``
before and one ``charge`` after, and everything else lives in :mod:`soma.gateway.chat`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from soma.errors import ModelError, ModelOutputError, NotFound, RateLimited
from soma.gateway.auth import require
from soma.gateway.chat import Chat, ChunkWriter, Target, chat_for, completion_body, model_request
from soma.gateway.errors import error_response
from soma.gateway.openai_types import ChatCompletion, ChatCompletionRequest, ModelList
from soma.gateway.ratelimit import Limit
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.models.types import ModelRequest, ModelResponse, StreamChunk

router = APIRouter(prefix="/v1", tags=["openai"])

Chatter = Annotated[Principal, Depends(require(Permission.CHAT))]

_JSON = "application/json"
_STREAM_HEADERS = {"x-accel-buffering": "no"}  # proxies such as nginx must not buffer SSE


@router.get(
    "/models",
    summary="Models: personas, capsules and provider models (OpenAI list format)",
    response_model=ModelList,
)
async def list_models(request: Request, who: Chatter) -> Response:
    return Response(chat_for(request).listing(who.tenant_id), media_type=_JSON)


@router.post(
    "/chat/completions",
    summary="Chat completion (OpenAI format; stream=true answers with server-sent events)",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def chat_completions(body: ChatCompletionRequest, request: Request, who: Chatter) -> Response:
    """Replies of ``persona:`` and ``capsule:`` models pass the constitution's ``model_output``
    check (secrets masked, denied replies answered 403), streamed or not. Masking cannot be
    applied reliably to deltas (a secret may straddle two of them), so a governed reply is
    judged whole and then sent as a stream of one delta; provider models stream as they
    generate."""
    chat = chat_for(request)
    request_id = str(request.scope.get("soma.request_id") or secrets.token_hex(8))
    try:
        target = await chat.target(body.model, who.tenant_id)
    except NotFound as exc:
        return error_response(404, str(exc), "model")
    except ModelError as exc:  # the provider could not be set up (not installed, misconfigured)
        status, error = chat.model_error(exc, request_id)
        return JSONResponse(error, status_code=status)
    svc = chat.svc
    tenant = who.tenant_id
    quota = svc.tenant_limits(tenant).tokens
    quota_key = f"tokens:{tenant}"
    decision = await svc.limiter.peek(quota_key, quota)
    if not decision.allowed:
        raise RateLimited(
            f"token quota exhausted: {quota.name} is {quota.per_min:g}",
            retry_after_s=decision.retry_after_s,
            hint=f"retry after {decision.retry_after_s:.1f} s, or ask an admin for a higher quota",
        )
    prepared = model_request(body, target)
    completion_id = f"chatcmpl-{request_id}"
    include_usage = body.stream_options is not None and body.stream_options.include_usage
    if body.stream and target.persona is None:
        return await _stream(
            chat, target, prepared, completion_id, body.model, include_usage, quota, quota_key
        )
    try:
        response = await target.model.complete(prepared)
    except ModelError as exc:
        status, error = chat.model_error(exc, request_id)
        return JSONResponse(error, status_code=status)
    await _charge(chat, quota, quota_key, response)
    if target.persona is not None:
        response = await asyncio.to_thread(chat.govern, target, response, tenant)
    if body.stream:
        writer = ChunkWriter(completion_id, body.model)
        return StreamingResponse(
            _replay(writer, response, include_usage),
            media_type="text/event-stream",
            headers=_STREAM_HEADERS,
        )
    return Response(
        completion_body(response, completion_id=completion_id, model=body.model), media_type=_JSON
    )


async def _replay(
    writer: ChunkWriter, response: ModelResponse, include_usage: bool
) -> AsyncIterator[bytes]:
    """A governed reply, already judged whole, as a stream."""
    yield writer.role()
    for event in writer.ending(response, streamed_text=False, usage=include_usage):
        yield event


async def _charge(chat: Chat, quota: Limit, key: str, response: ModelResponse) -> None:
    used = response.usage.input_tokens + response.usage.output_tokens
    if used:
        await chat.svc.limiter.charge(key, quota, used)


async def _stream(
    chat: Chat,
    target: Target,
    prepared: ModelRequest,
    completion_id: str,
    model: str,
    include_usage: bool,
    quota: Limit,
    quota_key: str,
) -> Response:
    """The first chunk is awaited before answering, so that a model that fails at once (the
    upstream refused, timed out, is rate limited) gets a proper HTTP status, not a 200 stream
    that carries an error."""
    request_id = completion_id.removeprefix("chatcmpl-")
    chunks = aiter(target.model.stream(prepared))
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except ModelError as exc:
        status, error = chat.model_error(exc, request_id)
        return JSONResponse(error, status_code=status)
    writer = ChunkWriter(completion_id, model)

    async def events() -> AsyncIterator[bytes]:
        yield writer.role()
        streamed_text = False
        response: ModelResponse | None = None
        chunk = first
        try:
            while chunk is not None:
                if chunk.response is not None:
                    response = chunk.response
                    break
                if chunk.text:
                    streamed_text = True
                    yield writer.text(chunk.text)
                chunk = await anext(chunks, None)
            if response is None:
                raise ModelOutputError(f"{target.model.name} ended its stream without a reply")
        except ModelError as exc:
            yield writer.error(chat.model_error(exc, request_id)[1])
            return
        finally:
            await _close(chunks)
        await _charge(chat, quota, quota_key, response)
        for event in writer.ending(response, streamed_text=streamed_text, usage=include_usage):
            yield event

    return StreamingResponse(events(), media_type="text/event-stream", headers=_STREAM_HEADERS)


async def _close(chunks: AsyncIterator[StreamChunk]) -> None:
    """Close the model's stream (its HTTP response, if any) even when the client went away."""
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()
