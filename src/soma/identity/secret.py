"""The server's secret key, which signs session tokens.

Without ``SOMA_SECRET_KEY`` a key is generated on first use into ``SOMA_HOME/secret.key``, so a
single-machine install needs no setup yet keeps sessions valid across restarts. Several
processes (gateway replicas, CLI calls) may start at once; they must all end up with the same
key, or each would reject the others' sessions. The file is therefore written completely under a
temporary name and then hard-linked into place, which fails if another process won: a reader
can never see a half-written key, and the loser simply reads the winner's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
from pathlib import Path

from soma.errors import SomaError
from soma.settings import Settings

SECRET_FILE = "secret.key"
MIN_SECRET_LENGTH = 32
_KEY_BYTES = 32
_HEX_KEY = re.compile(r"[0-9a-f]{64}")

log = logging.getLogger(__name__)


def load_secret_key(settings: Settings) -> bytes:
    """``SOMA_SECRET_KEY`` if set, else the key in ``SOMA_HOME/secret.key`` (created if absent)."""
    if settings.secret_key is not None:
        value = settings.secret_key.get_secret_value()
        if len(value) < MIN_SECRET_LENGTH:
            raise SomaError(
                f"SOMA_SECRET_KEY is {len(value)} characters; at least {MIN_SECRET_LENGTH} are"
                " needed to sign session tokens safely",
                hint='generate one with `python -c "import secrets; print(secrets.token_hex(32))"`',
            )
        return value.encode("utf-8")
    return _read_or_create(settings.home / SECRET_FILE)


def _read_or_create(path: Path) -> bytes:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(_KEY_BYTES) + "\n")
            file.flush()
            os.fsync(file.fileno())
        # If another process linked its key first, everyone uses that one.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if not _HEX_KEY.fullmatch(text):
        raise SomaError(
            f"{path} does not hold a secret key (64 lowercase hex digits)",
            hint="delete the file to generate a new one (signs everybody out), "
            "or set SOMA_SECRET_KEY",
        )
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; run `chmod 600 %s`", path, path)
    return bytes.fromhex(text)
