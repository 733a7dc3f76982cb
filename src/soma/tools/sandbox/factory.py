"""Choosing a sandbox from the ``sandbox`` setting."""

from __future__ import annotations

import logging
from typing import Literal

from soma.errors import SandboxError
from soma.tools.sandbox.base import Sandbox
from soma.tools.sandbox.bwrap import BwrapSandbox, bwrap_works
from soma.tools.sandbox.plain import SubprocessSandbox

log = logging.getLogger(__name__)

SandboxMode = Literal["auto", "bwrap", "subprocess"]


def make_sandbox(mode: SandboxMode = "auto") -> Sandbox:
    """``auto`` prefers bubblewrap and falls back (with a warning) when it cannot run here.

    ``bwrap`` fails instead of falling back: whoever asked for isolation explicitly must not
    silently get less.
    """
    if mode == "subprocess":
        return SubprocessSandbox()
    if bwrap_works():
        return BwrapSandbox()
    if mode == "bwrap":
        raise SandboxError(
            "bubblewrap is not usable here",
            hint="install bubblewrap and allow user namespaces, or set SOMA_SANDBOX=subprocess",
        )
    if mode != "auto":
        raise SandboxError(f"unknown sandbox mode {mode!r}", hint="use auto, bwrap or subprocess")
    log.warning("bubblewrap is not usable here; falling back to the subprocess sandbox")
    return SubprocessSandbox()
