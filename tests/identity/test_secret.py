"""The server secret: from SOMA_SECRET_KEY, or generated once into SOMA_HOME/secret.key."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from soma.errors import SomaError
from soma.identity import load_secret_key
from soma.settings import Settings


def test_configured_key_wins(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, secret_key=SecretStr("s" * 40))
    assert load_secret_key(settings) == b"s" * 40
    assert not (tmp_path / "secret.key").exists()


def test_short_configured_key_is_refused_without_echo(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, secret_key=SecretStr("hunter2-hunter2"))
    with pytest.raises(SomaError, match="at least 32") as info:
        load_secret_key(settings)
    assert "hunter2" not in str(info.value)


def test_generated_once_with_private_permissions(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", secret_key=None)
    first = load_secret_key(settings)
    path = tmp_path / "home" / "secret.key"
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key(settings) == first
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temp files left


def test_corrupt_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("not a key\n")
    with pytest.raises(SomaError, match="does not hold a secret key") as info:
        load_secret_key(Settings(home=tmp_path, secret_key=None))
    assert info.value.hint is not None
    assert "SOMA_SECRET_KEY" in info.value.hint


def _load_into(home: str, results: multiprocessing.Queue[str], start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    results.put(load_secret_key(Settings(home=Path(home), secret_key=None)).hex())


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork (spawn is slow)"
)
def test_racing_processes_agree_on_one_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[str] = context.Queue()
    start = context.Event()
    processes = [
        context.Process(target=_load_into, args=(str(tmp_path), results, start)) for _ in range(6)
    ]
    for process in processes:
        process.start()
    start.set()
    keys = {results.get(timeout=60) for _ in processes}
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * 6
    assert keys == {(tmp_path / "secret.key").read_text().strip()}
