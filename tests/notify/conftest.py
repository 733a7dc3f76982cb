"""Loopback receivers for the notification tests: an HTTP server that records requests (and
fails on demand) and an SMTP server (aiosmtpd) that records messages."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from soma.secrets import Vault
from soma.store import Store

KEY = b"notify-test-instance-secret-0123456789"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1: answers ``fail_status`` to the first ``fail_first``
    requests and ``status`` afterwards; ``delay_s`` makes it slow."""

    url: str = ""
    fail_first: int = 0
    fail_status: int = 500
    status: int = 200
    delay_s: float = 0.0
    extra_headers: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, received: Received) -> int:
        with self.lock:
            self.requests.append(received)
            count = len(self.requests)
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.fail_status if count <= self.fail_first else self.status

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


def _serve(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            status = receiver.handle(Received(self.path, dict(self.headers.items()), body))
            payload = b"ok" if status < 300 else b"nope"
            self.send_response(status)
            for name, value in receiver.extra_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/soma"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve(Receiver())


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    yield from _serve(Receiver())


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 Message accepted"


@dataclass
class Smtp:
    host: str
    port: int
    mailbox: _Mailbox


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield Smtp("127.0.0.1", controller.port, mailbox)
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with tenants ``acme`` and ``other``, copied by each test:
    running the migrations once instead of per test keeps the suite fast."""
    path = tmp_path_factory.mktemp("notify-template") / "soma.db"
    with Store.open(f"sqlite:///{path}") as opened:
        opened.create_tenant("acme", "Acme")
        opened.create_tenant("other", "Other")
    return path


@pytest.fixture
def store(migrated_db: Path, tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "soma.db"
    shutil.copyfile(migrated_db, path)
    with Store.open(f"sqlite:///{path}") as opened:
        yield opened


@pytest.fixture
def vault(store: Store) -> Vault:
    return Vault(store, KEY)


async def wait_for(check: Callable[[], bool], *, timeout_s: float = 5.0) -> None:
    """Poll ``check`` until it holds, failing the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)
