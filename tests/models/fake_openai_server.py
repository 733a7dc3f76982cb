"""A real HTTP server speaking the OpenAI Chat Completions protocol, driven by a script.

Mocking httpx would only prove we call httpx the way we think; a socket-level peer also checks
headers, JSON bodies, chunked SSE framing, timeouts and status handling end to end.
"""

from __future__ import annotations

import contextlib
import json
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted behaviour: an HTTP status with a JSON body, an SSE stream or raw bytes."""

    status: int = 200
    body: Any = None
    # SSE events: dicts are JSON-encoded, strings sent as data, strings starting with ":" sent as
    # SSE comment lines; "[DONE]" is appended.
    sse: list[Any] | None = None
    raw: bytes | None = None
    delay_s: float = 0.0
    split_bytes: int = 0  # write SSE in pieces this small, splitting lines across TCP writes


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeOpenAI:
    """Owns the server thread; tests queue replies and inspect ``requests`` afterwards."""

    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    base_url: str = ""
    responder: Callable[[Any], Reply] | None = None
    """Answers requests computed from their body once the queued replies run out."""

    def reply(self, reply: Reply) -> None:
        self.replies.append(reply)

    def reply_json(self, body: Any, status: int = 200, delay_s: float = 0.0) -> None:
        self.replies.append(Reply(status=status, body=body, delay_s=delay_s))

    def reply_sse(self, events: list[Any], split_bytes: int = 0) -> None:
        self.replies.append(Reply(sse=events, split_bytes=split_bytes))

    @property
    def last(self) -> Recorded:
        return self.requests[-1]


def completion(
    content: str | None = "ok",
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    usage: tuple[int, int] = (10, 2),
    model: str = "fake-model",
) -> dict[str, Any]:
    """A Chat Completions response body in OpenAI's shape."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


def openai_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None) -> dict[str, Any]:
    """A ``chat.completion.chunk`` stream event with one choice."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}],
    }


def usage_chunk(prompt: int, completion_tokens: int) -> dict[str, Any]:
    """The trailing event ``stream_options.include_usage`` asks for: no choices, only usage."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "fake-model",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens},
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        fake = self.server.fake
        fake.requests.append(
            Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, _json(raw))
        )
        if fake.replies:
            reply = fake.replies.popleft()
        elif fake.responder is not None:
            reply = fake.responder(fake.requests[-1].body)
        else:
            reply = _no_reply()
        if reply.delay_s and fake.stopping.wait(reply.delay_s):
            return
        # The client may have given up (e.g. it timed out): exactly what some tests provoke.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(reply)

    def _send(self, reply: Reply) -> None:
        if reply.sse is not None:
            self._send_sse(reply)
            return
        payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _send_sse(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        stream = "".join(_sse_line(e) for e in [*(reply.sse or []), "[DONE]"]).encode()
        for piece in _pieces(stream, reply.split_bytes or len(stream)):
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Record instead of printing: clients that hang up mid-reply are expected here."""
        self.fake.errors.append(traceback.format_exc())


def _sse_line(event: Any) -> str:
    if isinstance(event, str) and event.startswith(":"):
        return f"{event}\n\n"
    return f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n"


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return raw.decode(errors="replace")


def _no_reply() -> Reply:
    return Reply(status=500, body={"error": {"message": "fake server: no scripted reply left"}})


def serve() -> Iterator[FakeOpenAI]:
    """Run a server on a free 127.0.0.1 port for the duration of the generator (a fixture body)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    fake = FakeOpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
