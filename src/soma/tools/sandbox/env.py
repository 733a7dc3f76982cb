"""The environment a sandboxed command sees: built from scratch, never inherited.

The host environment holds API keys (``SOMA_OPENAI_API_KEY`` and friends); starting from an
empty mapping is the only way to be sure none leaks into agent-run code.
"""

from __future__ import annotations

from collections.abc import Mapping

from soma.errors import SandboxError

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def base_env(home: str) -> dict[str, str]:
    return {
        "PATH": SANDBOX_PATH,
        "HOME": home,
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def check_extra_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """Validate caller-supplied variables (they come from tool arguments, i.e. from agents)."""
    if not env:
        return {}
    for key, value in env.items():
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            raise SandboxError(f"invalid environment variable name or value: {key!r}")
    return dict(env)
