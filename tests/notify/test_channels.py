"""The channels against real loopback receivers: a webhook server, a Slack stand-in, an SMTP
server (aiosmtpd)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from soma.notify.channels import (
    DeliveryError,
    EmailChannel,
    Message,
    SlackChannel,
    WebhookChannel,
)
from soma.notify.signing import SignatureError, verify
from tests.notify.conftest import Receiver, Smtp, free_port

SECRET = "whsec-channel-test"
PAYLOAD: dict[str, Any] = {
    "version": 1,
    "type": "project.finished",
    "tenant_id": "acme",
    "project_id": "p-42",
    "event_id": 9,
    "occurred_at": "2026-11-26T12:00:00Z",
    "summary": "Project p-42 succeeded",
    "data": {"status": "succeeded", "message": "all good ✓"},
}


def message(target: str, secret: str | None = SECRET) -> Message:
    return Message(
        delivery_id="17",
        event_type="project.finished",
        payload=PAYLOAD,
        target=target,
        secret=secret,
    )


async def send(channel: WebhookChannel | SlackChannel, msg: Message) -> None:
    try:
        await channel.send(msg)
    finally:
        await channel.aclose()


async def test_webhook_posts_signed_json(receiver: Receiver) -> None:
    await send(WebhookChannel(), message(receiver.url))
    [got] = receiver.requests
    assert got.path == "/hooks/soma"
    assert got.json() == PAYLOAD
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Soma-Event"] == "project.finished"
    assert got.headers["X-Soma-Delivery"] == "17"
    assert got.headers["User-Agent"].startswith("soma-notify/")
    verify(SECRET, got.body, got.headers["X-Soma-Signature"])
    with pytest.raises(SignatureError):
        verify("wrong-secret", got.body, got.headers["X-Soma-Signature"])
    with pytest.raises(SignatureError):
        verify(SECRET, got.body + b" ", got.headers["X-Soma-Signature"])


async def test_webhook_without_secret_is_unsigned(receiver: Receiver) -> None:
    await send(WebhookChannel(), message(receiver.url, secret=None))
    assert "X-Soma-Signature" not in receiver.requests[0].headers


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (503, True),
        (408, True),
        (429, True),
        (400, False),
        (401, False),
        (404, False),
        (410, False),
        (302, False),
    ],
)
async def test_webhook_status_classification(
    receiver: Receiver, status: int, retryable: bool
) -> None:
    receiver.status = status
    with pytest.raises(DeliveryError) as caught:
        await send(WebhookChannel(), message(receiver.url))
    assert caught.value.retryable is retryable
    assert f"HTTP {status}" in str(caught.value)
    assert "/hooks/soma" not in str(caught.value)  # the host only, never the full URL


async def test_retry_after_is_passed_on(receiver: Receiver) -> None:
    receiver.status = 429
    receiver.extra_headers = {"Retry-After": "7"}
    with pytest.raises(DeliveryError) as caught:
        await send(WebhookChannel(), message(receiver.url))
    assert caught.value.retry_after_s == 7.0


async def test_connection_refused_is_retryable() -> None:
    with pytest.raises(DeliveryError, match="could not reach") as caught:
        await send(WebhookChannel(), message(f"http://127.0.0.1:{free_port()}/x"))
    assert caught.value.retryable


async def test_timeout_is_retryable(receiver: Receiver) -> None:
    receiver.delay_s = 1.0
    with pytest.raises(DeliveryError, match="in time") as caught:
        await send(WebhookChannel(timeout_s=0.2), message(receiver.url))
    assert caught.value.retryable


async def test_slack_posts_text_to_the_secret_url(receiver: Receiver) -> None:
    await send(SlackChannel(), message("", secret=receiver.url))
    [got] = receiver.requests
    body = json.loads(got.body)
    assert list(body) == ["text"]
    assert body["text"].startswith("Project p-42 succeeded")
    assert "status: succeeded" in body["text"]


async def test_slack_falls_back_to_the_target(receiver: Receiver) -> None:
    await send(SlackChannel(), message(receiver.url, secret=None))
    assert receiver.count() == 1


async def test_email_reaches_the_smtp_server(smtp: Smtp) -> None:
    channel = EmailChannel(host=smtp.host, port=smtp.port, sender="soma@hub.test")
    await channel.send(message("ops@acme.test, lead@acme.test", secret=None))
    [(envelope, email)] = smtp.mailbox.messages
    assert envelope.mail_from == "soma@hub.test"
    assert envelope.rcpt_tos == ["ops@acme.test", "lead@acme.test"]
    assert email["Subject"] == "[Soma] Project p-42 succeeded"
    assert email["X-Soma-Delivery"] == "17"
    body = email.get_body()
    assert body is not None
    text = body.get_content()
    assert "p-42" in text
    assert "all good ✓" in text


async def test_email_refused_recipient_is_permanent(smtp: Smtp) -> None:
    smtp.mailbox.refuse.add("gone@acme.test")
    channel = EmailChannel(host=smtp.host, port=smtp.port, sender="soma@hub.test")
    with pytest.raises(DeliveryError, match="refused the recipients") as caught:
        await channel.send(message("gone@acme.test", secret=None))
    assert not caught.value.retryable


async def test_email_unreachable_server_is_retryable() -> None:
    channel = EmailChannel(host="127.0.0.1", port=free_port(), sender="soma@hub.test", timeout_s=2)
    with pytest.raises(DeliveryError) as caught:
        await channel.send(message("ops@acme.test", secret=None))
    assert caught.value.retryable
