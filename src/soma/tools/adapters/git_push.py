"""``git.push``: publish a workspace branch to a remote.

It runs git in the worker (the sandbox has no network) with the same hardening as every other
workspace git call. The GitHub token, when one applies, reaches git only through environment
config (``http.<origin>/.extraHeader``), never the URL, argv or output, and only for the
GitHub host the tenant configured, so an agent cannot point a push at its own server to
collect the token. Local remotes (paths, ``file://``) are accepted only from the operator's
``git.remote_url`` secret or the project's provisioned ``git.local`` repository: from arguments
they would let an agent write into any repository on the worker's disk.
"""

from __future__ import annotations

import asyncio
import base64
import re
from urllib.parse import urlsplit

from pydantic import Field

from soma.errors import ToolError
from soma.tools.adapters.github import API_URL_SECRET, DEFAULT_API_URL, TOKEN_SECRET
from soma.tools.base import Tool, ToolArgs, ToolContext, ToolResult, tool
from soma.workspace.git import _BASE_ARGV, _BASE_ENV
from soma.workspace.repos import provisioned_origin

REMOTE_SECRET = "git.remote_url"
PUSH_TIMEOUT_S = 120.0
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<!\.lock)(?<![/.])$")

# The base config forbids every transport (protocol.allow=never); a push needs exactly these.
_PUSH_CONFIG = ("protocol.file.allow=always", "protocol.https.allow=always")


class PushArgs(ToolArgs):
    remote: str | None = Field(
        default=None,
        description="https URL to push to (default: the project's configured remote).",
    )
    branch: str | None = Field(
        default=None, description="Local branch to push (default: the current branch)."
    )


def _github_host(api_url: str) -> str:
    """The git host matching the tenant's API URL: api.github.com serves github.com."""
    host = (urlsplit(api_url).hostname or "").lower()
    return "github.com" if host == "api.github.com" else host


def _remote_kind(url: str) -> str:
    if url.startswith("https://"):
        return "https"
    if url.startswith(("file://", "/")):
        return "file"
    return "other"


def _display(url: str) -> str:
    """The URL without any user:password part an operator may have put in the secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def _git(cwd: str, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *_BASE_ARGV,
        *(part for kv in _PUSH_CONFIG for part in ("-c", kv)),
        *args,
        cwd=cwd,
        env={**_BASE_ENV, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), PUSH_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ToolError(
            f"git {args[0]} timed out after {PUSH_TIMEOUT_S:g}s",
            hint="check that the remote is reachable, then retry",
        ) from None
    return proc.returncode or 0, out.decode("utf-8", "replace")


@tool(
    "git.push",
    "Push a workspace branch (default: the current one) to the project's remote.",
    PushArgs,
)
async def git_push(args: PushArgs, ctx: ToolContext) -> ToolResult:
    secrets = ctx.secrets
    configured = secrets.get(REMOTE_SECRET) if secrets is not None else None
    # A project's own provisioned repository (docs/resources.md) wins over the tenant's default.
    own = provisioned_origin(ctx.workspace.path, ctx.tenant_id, ctx.workspace.project_id)
    if own is not None:
        configured = str(own)
    remote = args.remote or configured
    if not remote:
        raise ToolError(
            "no remote to push to",
            hint=f"pass an https 'remote', or set `soma secrets set {ctx.tenant_id} "
            f"{REMOTE_SECRET}`",
        )
    kind = _remote_kind(remote)
    if kind == "other" or (kind == "file" and remote != configured):
        raise ToolError(
            f"cannot push to {remote!r}",
            hint="use an https URL; local remotes are only allowed from the git.remote_url secret",
        )

    cwd = str(ctx.workspace.path)
    branch = args.branch
    if branch is None:
        rc, out = await _git(cwd, ["symbolic-ref", "--quiet", "--short", "HEAD"], {})
        if rc != 0:
            raise ToolError("the workspace is not on a branch", hint="pass 'branch' explicitly")
        branch = out.strip()
    if not _BRANCH.fullmatch(branch):
        raise ToolError(f"invalid branch name {branch!r}")

    env: dict[str, str] = {}
    token = secrets.get(TOKEN_SECRET) if secrets is not None else None
    if kind == "https" and token:
        api_url = (secrets.get(API_URL_SECRET) if secrets is not None else None) or DEFAULT_API_URL
        host = (urlsplit(remote).hostname or "").lower()
        if host and host == _github_host(api_url):
            # GitHub's git endpoint takes a token as the password of Basic auth.
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")
            env = {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": f"http.https://{host}/.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
            }

    ref = f"refs/heads/{branch}"
    rc, out = await _git(cwd, ["push", "--porcelain", "--", remote, f"{ref}:{ref}"], env)
    secret_texts = [t for t in (token, env.get("GIT_CONFIG_VALUE_0")) if t]
    for text in secret_texts:
        out = out.replace(text, "***")
    shown = _display(remote) if kind == "https" else "the configured remote"
    if rc != 0:
        return ToolResult(
            ok=False,
            output=f"error: git push of {branch} to {shown} failed:\n{out.strip()}",
            data={"branch": branch, "remote": shown, "exit_code": rc},
        )
    rc, head = await _git(cwd, ["rev-parse", ref], {})
    sha = head.strip() if rc == 0 else ""
    return ToolResult(
        ok=True,
        output=f"pushed {branch} ({sha[:12]}) to {shown}",
        data={"branch": branch, "remote": shown, "sha": sha},
    )


GIT_PUSH_TOOLS: list[Tool] = [git_push]
