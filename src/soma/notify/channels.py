"""Where notifications go: a small :class:`Channel` protocol and its three implementations.

A channel sends one message and either returns (delivered) or raises :class:`DeliveryError`
saying whether trying again could help. The retry schedule itself belongs to the dispatcher,
so every channel gets the same backoff and attempt cap.

Error messages end up in ``notification_deliveries.last_error``, which tenants can read; they
name the host only, never a full URL, since a Slack incoming-webhook URL is a credential.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from soma import __version__
from soma.errors import SomaError
from soma.notify.events import render_text
from soma.notify.signing import HEADER, sign
from soma.settings import Settings

USER_AGENT = f"soma-notify/{__version__}"
_MAX_ERROR_BODY = 200


class DeliveryError(SomaError):
    """A channel could not deliver. ``retryable``: the same message may get through later;
    ``retry_after_s``: when the receiver asked to be tried again (HTTP ``Retry-After``)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        super().__init__(message, hint=hint)


@dataclass(frozen=True)
class Message:
    """One delivery attempt, resolved: the rule's target and, where it has one, its secret's
    value (the webhook's HMAC key, or a Slack rule's incoming-webhook URL)."""

    delivery_id: str
    event_type: str
    payload: dict[str, Any]
    target: str
    secret: str | None = None

    def __repr__(self) -> str:  # never show the secret
        return f"Message(delivery_id={self.delivery_id!r}, event_type={self.event_type!r})"


class Channel(Protocol):
    """Sends messages of one kind (webhook, Slack, email)."""

    async def send(self, message: Message) -> None:
        """Deliver or raise :class:`DeliveryError`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are sent (and signed): compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" if parts.hostname else "<invalid URL>"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: rare for webhooks, fall back to our own backoff
        return None


async def _post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> None:
    """POST and classify the outcome: 2xx delivered; 408, 429, 5xx and network trouble are
    worth retrying; any other status (4xx, or a 3xx redirect, which is not followed) is not."""
    origin = _origin(url)
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        raise DeliveryError(f"{origin} did not answer in time", retryable=True) from None
    except httpx.TransportError as exc:
        raise DeliveryError(
            f"could not reach {origin}: {type(exc).__name__}", retryable=True
        ) from None
    status = response.status_code
    if 200 <= status < 300:
        return
    text = response.text[:_MAX_ERROR_BODY].strip()
    detail = f"{origin} answered HTTP {status}" + (f": {text}" if text else "")
    if status in (408, 429) or status >= 500:
        raise DeliveryError(detail, retryable=True, retry_after_s=_retry_after(response))
    hint = (
        "point the rule at the final URL: redirects are not followed"
        if 300 <= status < 400
        else "fix the receiver or the rule's URL/secret, then `soma notify test`"
    )
    raise DeliveryError(detail, retryable=False, hint=hint)


class WebhookChannel:
    """POSTs the notification as JSON, signed with the rule's secret when it has one.

    Headers: ``X-Soma-Event`` (the notification type), ``X-Soma-Delivery`` (the delivery id,
    the same on every retry: receivers de-duplicate on it) and ``X-Soma-Signature``.
    """

    def __init__(self, *, client: httpx.AsyncClient | None = None, timeout_s: float = 10.0) -> None:
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._owns_client = client is None

    async def send(self, message: Message) -> None:
        body = encode_body(message.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Soma-Event": message.event_type,
            "X-Soma-Delivery": message.delivery_id,
        }
        if message.secret:
            headers[HEADER] = sign(message.secret, body)
        await _post(self._client, message.target, body, headers)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


class SlackChannel:
    """POSTs ``{"text": ...}`` to a Slack incoming webhook: the URL in the rule's vault secret
    (recommended: whoever has the URL can post to the channel) or else the rule's target."""

    def __init__(self, *, client: httpx.AsyncClient | None = None, timeout_s: float = 10.0) -> None:
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._owns_client = client is None

    async def send(self, message: Message) -> None:
        url = message.secret or message.target
        if not url:
            raise DeliveryError(
                "the Slack rule has neither a URL nor a secret holding one",
                retryable=False,
                hint="store the incoming-webhook URL with `soma secrets set` and re-add the rule"
                " with --secret",
            )
        body = encode_body({"text": render_text(message.payload)})
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        await _post(self._client, url, body, headers)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


class EmailChannel:
    """Sends a plain-text email over SMTP (stdlib ``smtplib``, in a worker thread).

    The target is one address or several separated by commas. SMTP 4xx replies and network
    errors are retried; 5xx replies (unknown recipient, refused sender, bad login) are not.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 30.0,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailChannel:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_sender,
            username=settings.smtp_username,
            password=password,
            starttls=settings.smtp_starttls,
        )

    def compose(self, message: Message) -> EmailMessage:
        """The email for ``message``: the summary as subject, the details and JSON as body."""
        payload = message.payload
        summary = str(payload.get("summary") or message.event_type)
        email = EmailMessage()
        email["Subject"] = f"[Soma] {' '.join(summary.split())[:180]}"
        email["From"] = self._sender
        email["To"] = ", ".join(a.strip() for a in message.target.split(",") if a.strip())
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2] or None)
        email["X-Soma-Event"] = message.event_type
        email["X-Soma-Delivery"] = message.delivery_id
        details = json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True)
        email.set_content(f"{render_text(payload)}\n\n-- \nNotification payload:\n{details}\n")
        return email

    async def send(self, message: Message) -> None:
        await asyncio.to_thread(self._send, self.compose(message))

    def _send(self, email: EmailMessage) -> None:
        where = f"SMTP server {self._host}:{self._port}"
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(sorted(exc.recipients))
            raise DeliveryError(
                f"{where} refused the recipients {refused}",
                retryable=False,
                hint="check the rule's email addresses",
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryError(
                f"{where} does not support STARTTLS",
                retryable=False,
                hint="set SOMA_SMTP_STARTTLS=false, or use a server that offers STARTTLS",
            ) from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise DeliveryError(
                f"{where} answered {exc.smtp_code}: {text[:_MAX_ERROR_BODY]}",
                retryable=exc.smtp_code < 500,
                hint="check SOMA_SMTP_SENDER, SOMA_SMTP_USERNAME and SOMA_SMTP_PASSWORD",
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"could not send through {where}: {type(exc).__name__}: {exc}",
                retryable=True,
                hint="check SOMA_SMTP_HOST and SOMA_SMTP_PORT",
            ) from None

    async def aclose(self) -> None:
        return None
