"""GitHub through its REST API: repositories, branches, files, issues and pull requests.

The token comes from the tenant's secret store on every call and is only ever put in the
``Authorization`` header: outputs, data and errors are masked in case GitHub (or a proxy)
echoes it. Redirects are not followed, so the header never travels to another host. Upstream
refusals (401, 404, 409, 422...) come back as ``ok=False`` results carrying GitHub's own
message, because the agent can usually act on it (wrong branch, PR not mergeable, no access).
"""

from __future__ import annotations

import base64
import re
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field

from soma.errors import ToolError
from soma.tools.base import SecretReader, Tool, ToolArgs, ToolContext, ToolResult, tool

DEFAULT_API_URL = "https://api.github.com"
TOKEN_SECRET = "github.token"
API_URL_SECRET = "github.api_url"
TIMEOUT_S = 30.0
_MASK = "***"

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def _check_name(kind: str, value: str) -> str:
    # "." and ".." would turn /repos/{o}/{r} into another endpoint once the URL is normalized.
    if not _NAME.fullmatch(value) or value in {".", ".."}:
        raise ToolError(f"invalid {kind} {value!r}", hint="use the name as shown on GitHub")
    return value


def _quote_path(path: str) -> str:
    parts = path.strip("/").split("/")
    if not path.strip("/") or any(p in {"", ".", ".."} for p in parts):
        raise ToolError(
            f"invalid file path {path!r}", hint="use a repository-relative path like 'src/app.py'"
        )
    return "/".join(quote(p, safe="") for p in parts)


def _mask(value: Any, token: str) -> Any:
    """Replace the token wherever it appears, however deep, so no echo reaches the model."""
    if isinstance(value, str):
        return value.replace(token, _MASK) if token else value
    if isinstance(value, dict):
        return {k: _mask(v, token) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, token) for v in value]
    return value


class _GitHub:
    """One tool call's view of the API: credentials resolved, every answer masked."""

    def __init__(self, ctx: ToolContext) -> None:
        self._setup(ctx.secrets, ctx.tenant_id)

    @classmethod
    def for_tenant(cls, secrets: SecretReader | None, tenant_id: str) -> _GitHub:
        """The same client outside a tool call (the workspace manager provisions with it)."""
        gh = cls.__new__(cls)
        gh._setup(secrets, tenant_id)
        return gh

    def _setup(self, secrets: SecretReader | None, tenant_id: str) -> None:
        token = secrets.get(TOKEN_SECRET) if secrets is not None else None
        if not token:
            raise ToolError(
                f"no GitHub token for tenant {tenant_id!r}",
                hint=f"set it with `soma secrets set {tenant_id} {TOKEN_SECRET}`",
            )
        self.token = token
        api_url = secrets.get(API_URL_SECRET) if secrets is not None else None
        self.base_url = (api_url or DEFAULT_API_URL).rstrip("/")

    def mask(self, value: Any) -> Any:
        return _mask(value, self.token)

    async def request(
        self, method: str, path: str, json: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """Send one request; return (status, decoded JSON or None). Network failures raise."""
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "soma-agent",
        }
        try:
            async with httpx.AsyncClient(
                base_url=self.base_url, timeout=TIMEOUT_S, follow_redirects=False
            ) as client:
                resp = await client.request(method, path, headers=headers, json=json)
        except httpx.HTTPError as exc:
            detail = self.mask(str(exc)) or type(exc).__name__
            raise ToolError(
                f"could not reach GitHub at {self.base_url}: {detail}",
                hint="retry later; if it persists, check the tenant's github.api_url secret",
            ) from None
        try:
            body = resp.json() if resp.content else None
        except ValueError:
            body = None
        return resp.status_code, self.mask(body)

    def failure(self, action: str, status: int, body: Any) -> ToolResult:
        """GitHub's refusal as the agent should read it: status, message and field errors."""
        message = ""
        details: list[str] = []
        if isinstance(body, dict):
            message = str(body.get("message") or "")
            for err in body.get("errors") or []:
                if isinstance(err, dict):
                    details.append(str(err.get("message") or err.get("code") or err))
                else:
                    details.append(str(err))
        if 300 <= status < 400:
            message = message or "redirected (not followed); the repository may have moved"
        text = message or "no message"
        if details:
            text = f"{text} ({'; '.join(details)})"
        hint = {
            401: " - the tenant's github.token is invalid or expired",
            403: " - the token lacks permission, or a rate limit was hit",
            404: " - not found, or the token cannot see it",
        }.get(status, "")
        return ToolResult(
            ok=False,
            output=self.mask(f"error: {action} failed: GitHub {status}: {text}{hint}"),
            data=self.mask({"status": status, "message": message, "errors": details}),
        )

    def success(self, output: str, data: dict[str, Any]) -> ToolResult:
        return ToolResult(ok=True, output=self.mask(output), data=self.mask(data))


def _repo_path(owner: str, repo: str) -> str:
    return f"/repos/{_check_name('owner', owner)}/{_check_name('repository', repo)}"


class RepoArgs(ToolArgs):
    owner: str = Field(
        pattern=_NAME.pattern, description="User or organization that owns the repository."
    )
    repo: str = Field(pattern=_NAME.pattern, description="Repository name.")


class CreateBranchArgs(RepoArgs):
    branch: str = Field(min_length=1, max_length=250, description="Name of the new branch.")
    base: str | None = Field(
        default=None, description="Branch to start from (default: the repository's default)."
    )


class PutFileArgs(RepoArgs):
    path: str = Field(min_length=1, description="File path in the repository, e.g. 'README.md'.")
    content: str = Field(description="The whole new file content (text).")
    message: str = Field(min_length=1, description="Commit message.")
    branch: str = Field(min_length=1, description="Branch to commit to.")


class CreateIssueArgs(RepoArgs):
    title: str = Field(min_length=1, max_length=256)
    body: str = ""


class OpenPrArgs(RepoArgs):
    title: str = Field(min_length=1, max_length=256)
    head: str = Field(min_length=1, description="Branch with the changes.")
    base: str | None = Field(
        default=None, description="Branch to merge into (default: the repository's default)."
    )
    body: str = ""
    draft: bool = False


class CommentArgs(RepoArgs):
    number: int = Field(ge=1, description="Issue or pull request number.")
    body: str = Field(min_length=1)


class MergePrArgs(RepoArgs):
    number: int = Field(ge=1, description="Pull request number.")
    method: Literal["merge", "squash", "rebase"] = "merge"
    commit_title: str | None = None


async def _base_branch(
    gh: _GitHub, repo_path: str, given: str | None
) -> tuple[str | None, ToolResult | None]:
    """The branch the agent named, else the repository's default (one more request)."""
    if given is not None:
        return given, None
    status, body = await gh.request("GET", repo_path)
    if status != 200 or not isinstance(body, dict):
        return None, gh.failure("reading the repository", status, body)
    return str(body.get("default_branch") or "main"), None


@tool("github.get_repo", "Describe a GitHub repository: default branch, visibility, URL.", RepoArgs)
async def github_get_repo(args: RepoArgs, ctx: ToolContext) -> ToolResult:
    gh = _GitHub(ctx)
    status, body = await gh.request("GET", _repo_path(args.owner, args.repo))
    if status != 200 or not isinstance(body, dict):
        return gh.failure("get_repo", status, body)
    data = {
        "full_name": body.get("full_name"),
        "default_branch": body.get("default_branch"),
        "private": body.get("private"),
        "description": body.get("description"),
        "html_url": body.get("html_url"),
    }
    desc = f" - {data['description']}" if data["description"] else ""
    vis = "private" if data["private"] else "public"
    return gh.success(
        f"{data['full_name']} ({vis}, default branch {data['default_branch']}): "
        f"{data['html_url']}{desc}",
        data,
    )


@tool(
    "github.create_branch",
    "Create a branch on GitHub from the tip of a base branch (default: the default branch).",
    CreateBranchArgs,
)
async def github_create_branch(args: CreateBranchArgs, ctx: ToolContext) -> ToolResult:
    gh = _GitHub(ctx)
    repo_path = _repo_path(args.owner, args.repo)
    base, failed = await _base_branch(gh, repo_path, args.base)
    if failed is not None:
        return failed
    assert base is not None
    status, body = await gh.request("GET", f"{repo_path}/git/ref/heads/{quote(base, safe='/')}")
    if status != 200 or not isinstance(body, dict):
        return gh.failure(f"reading base branch {base!r}", status, body)
    sha = str((body.get("object") or {}).get("sha") or "")
    status, body = await gh.request(
        "POST", f"{repo_path}/git/refs", {"ref": f"refs/heads/{args.branch}", "sha": sha}
    )
    if status != 201:
        return gh.failure(f"creating branch {args.branch!r}", status, body)
    return gh.success(
        f"created branch {args.branch} from {base} at {sha[:12]}",
        {"branch": args.branch, "base": base, "sha": sha},
    )


@tool(
    "github.put_file",
    "Create or replace a file on a GitHub branch as one commit.",
    PutFileArgs,
)
async def github_put_file(args: PutFileArgs, ctx: ToolContext) -> ToolResult:
    gh = _GitHub(ctx)
    url = f"{_repo_path(args.owner, args.repo)}/contents/{_quote_path(args.path)}"
    # Updating needs the current blob sha; GitHub answers 404 when the file is new.
    status, body = await gh.request("GET", f"{url}?ref={quote(args.branch, safe='')}")
    existing: str | None = None
    if status == 200 and isinstance(body, dict):
        existing = body.get("sha")
    elif status != 404:
        return gh.failure(f"reading {args.path!r}", status, body)
    payload: dict[str, Any] = {
        "message": args.message,
        "content": base64.b64encode(args.content.encode()).decode("ascii"),
        "branch": args.branch,
    }
    if existing:
        payload["sha"] = existing
    status, body = await gh.request("PUT", url, payload)
    if status not in (200, 201) or not isinstance(body, dict):
        return gh.failure(f"writing {args.path!r}", status, body)
    commit_sha = str((body.get("commit") or {}).get("sha") or "")
    verb = "updated" if existing else "created"
    return gh.success(
        f"{verb} {args.path} on {args.branch} in commit {commit_sha[:12]}",
        {"path": args.path, "branch": args.branch, "commit": commit_sha, "created": not existing},
    )


@tool("github.create_issue", "Open an issue on a GitHub repository.", CreateIssueArgs)
async def github_create_issue(args: CreateIssueArgs, ctx: ToolContext) -> ToolResult:
    gh = _GitHub(ctx)
    status, body = await gh.request(
        "POST",
        f"{_repo_path(args.owner, args.repo)}/issues",
        {"title": args.title, "body": args.body},
    )
    if status != 201 or not isinstance(body, dict):
        return gh.failure("create_issue", status, body)
    number, url = body.get("number"), body.get("html_url")
    return gh.success(f"created issue #{number}: {url}", {"number": number, "html_url": url})


@tool(
    "github.open_pr",
    "Open a pull request from a head branch into a base branch (default: the default branch).",
    OpenPrArgs,
)
async def github_open_pr(args: OpenPrArgs, ctx: ToolContext) -> ToolResult:
    gh = _GitHub(ctx)
    repo_path = _repo_path(args.owner, args.repo)
    base, failed = await _base_branch(gh, repo_path, args.base)
    if failed is not None:
        return failed
    status, body = await gh.request(
        "POST",
        f"{repo_path}/pulls",
        {
            "title": args.title,
            "head": args.head,
            "base": base,
            "body": args.body,
            "draft": args.draft,
        },
    )
    if status != 201 or not isinstance(body, dict):
        return gh.failure("open_pr", status, body)
    number, url = body.get("number"), body.get("html_url")
    return gh.success(
        f"opened PR #{number} ({args.head} -> {base}): {url}",
        {"number": number, "html_url": url, "head": args.head, "base": base},
    )


@tool("github.comment", "Comment on a GitHub issue or pull request.", CommentArgs)
async def github_comment(args: CommentArgs, ctx: ToolContext) -> ToolResult:
    gh = _GitHub(ctx)
    status, body = await gh.request(
        "POST",
        f"{_repo_path(args.owner, args.repo)}/issues/{args.number}/comments",
        {"body": args.body},
    )
    if status != 201 or not isinstance(body, dict):
        return gh.failure("comment", status, body)
    url = body.get("html_url")
    return gh.success(
        f"commented on #{args.number}: {url}", {"id": body.get("id"), "html_url": url}
    )


@tool("github.merge_pr", "Merge a GitHub pull request.", MergePrArgs)
async def github_merge_pr(args: MergePrArgs, ctx: ToolContext) -> ToolResult:
    gh = _GitHub(ctx)
    payload: dict[str, Any] = {"merge_method": args.method}
    if args.commit_title:
        payload["commit_title"] = args.commit_title
    status, body = await gh.request(
        "PUT", f"{_repo_path(args.owner, args.repo)}/pulls/{args.number}/merge", payload
    )
    if status != 200 or not isinstance(body, dict) or not body.get("merged"):
        return gh.failure(f"merging PR #{args.number}", status, body)
    sha = str(body.get("sha") or "")
    return gh.success(
        f"merged PR #{args.number} ({args.method}) as {sha[:12]}",
        {"number": args.number, "sha": sha, "merged": True},
    )


GitHubApi = _GitHub
"""The adapter's API client, for callers outside a tool call (``GitHubApi.for_tenant``)."""

GITHUB_TOOLS: list[Tool] = [
    github_get_repo,
    github_create_branch,
    github_put_file,
    github_create_issue,
    github_open_pr,
    github_comment,
    github_merge_pr,
]
