from __future__ import annotations

import logging

import pytest

from soma.errors import SandboxError
from soma.tools import make_sandbox
from soma.tools.sandbox import BwrapSandbox, SubprocessSandbox, bwrap, bwrap_works
from soma.tools.sandbox import factory as factory_mod

needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not usable here")


@needs_bwrap
def test_auto_prefers_bwrap() -> None:
    sandbox = make_sandbox("auto")
    assert isinstance(sandbox, BwrapSandbox)
    assert sandbox.isolated


def test_subprocess_mode() -> None:
    sandbox = make_sandbox("subprocess")
    assert isinstance(sandbox, SubprocessSandbox)
    assert not sandbox.isolated


def test_auto_falls_back_with_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(factory_mod, "bwrap_works", lambda: False)
    with caplog.at_level(logging.WARNING):
        sandbox = make_sandbox("auto")
    assert isinstance(sandbox, SubprocessSandbox)
    assert "falling back" in caplog.text
    with pytest.raises(SandboxError, match="not usable"):
        make_sandbox("bwrap")


def test_probe_false_without_binary() -> None:
    assert bwrap.bwrap_works("/nonexistent/bwrap") is False
