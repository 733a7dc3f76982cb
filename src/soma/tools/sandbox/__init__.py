"""Running agent commands confined: bubblewrap when possible, rlimited subprocesses otherwise."""

from soma.tools.sandbox.base import OUTPUT_LIMIT_BYTES, Sandbox, SandboxResult
from soma.tools.sandbox.bwrap import SANDBOX_WORKDIR, BwrapSandbox, bwrap_works
from soma.tools.sandbox.factory import SandboxMode, make_sandbox
from soma.tools.sandbox.plain import SubprocessSandbox

__all__ = [
    "OUTPUT_LIMIT_BYTES",
    "SANDBOX_WORKDIR",
    "BwrapSandbox",
    "Sandbox",
    "SandboxMode",
    "SandboxResult",
    "SubprocessSandbox",
    "bwrap_works",
    "make_sandbox",
]
