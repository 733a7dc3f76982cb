"""A local server speaking the subset of Slack's Web API the Slack tools use.

Like Slack, it answers HTTP 200 with ``{"ok": false, "error": ...}`` for its own errors, so the
tools' handling of that convention is tested against the real wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request

TOKEN = "xoxb-fake-token-0123456789"
KNOWN_CHANNELS = {"C001", "C002"}


@dataclass
class FakeSlack:
    token: str = TOKEN
    messages: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/chat.postMessage")
        async def post_message(request: Request) -> dict[str, Any]:
            header = request.headers.get("authorization", "")
            self.auth_headers.append(header)
            if header != f"Bearer {self.token}":
                return {"ok": False, "error": "invalid_auth"}
            body = await request.json()
            channel = body.get("channel")
            if channel not in KNOWN_CHANNELS:
                return {"ok": False, "error": "channel_not_found"}
            ts = f"1700000000.{len(self.messages):06d}"
            self.messages.append({**body, "ts": ts})
            return {"ok": True, "ts": ts, "channel": channel, "message": {"text": body["text"]}}

        return app
