"""A GitHub REST stand-in speaking the subset the adapter uses, with state tests can inspect.

Answers are shaped like GitHub's (field names, status codes, ``{"message": ...}`` errors) so
the adapter's parsing and error paths run as they would against the real API.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.gateway.conftest import serve_in_thread

TOKEN = "ghp_fakeTOKEN0123456789abcdef"
DOCS = "https://docs.github.com/rest"


def _sha(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()


@dataclass
class Repo:
    owner: str
    name: str
    default_branch: str = "main"
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    files: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (br, path)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # issues and PRs share numbers
    comments: list[dict[str, Any]] = field(default_factory=list)
    archived: bool = False

    @property
    def html_url(self) -> str:
        return f"https://github.test/{self.owner}/{self.name}"


@dataclass
class FakeGitHub:
    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    login: str = "soma-bot"
    orgs: set[str] = field(default_factory=lambda: {"acme"})
    refuse_delete: bool = False  # like a token without the delete_repo scope

    def add_repo(self, owner: str, name: str) -> Repo:
        repo = Repo(owner, name, branches={"main": _sha(owner, name, "init")})
        self.repos[(owner, name)] = repo
        return repo


def _error(status: int, message: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"message": message, "documentation_url": DOCS}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


def create_app(state: FakeGitHub) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Any:
        state.requests.append((request.method, request.url.path, dict(request.headers)))
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _error(401, "Bad credentials")
        return await call_next(request)

    def repo_or_404(owner: str, name: str) -> Repo | JSONResponse:
        repo = state.repos.get((owner, name))
        return repo if repo is not None else _error(404, "Not Found")

    @app.get("/repos/{owner}/{name}")
    async def get_repo(owner: str, name: str) -> Any:
        repo = repo_or_404(owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        return {
            "id": 1,
            "name": repo.name,
            "full_name": f"{owner}/{name}",
            "private": False,
            "description": "a fake repository",
            "default_branch": repo.default_branch,
            "html_url": repo.html_url,
        }

    @app.get("/user")
    async def user() -> Any:
        return {"login": state.login, "type": "User"}

    def create_repo(owner: str, body: dict[str, Any]) -> JSONResponse:
        name = str(body.get("name") or "")
        if (owner, name) in state.repos:
            return _error(
                422,
                "Repository creation failed.",
                [{"resource": "Repository", "code": "custom", "field": "name",
                  "message": "name already exists on this account"}],
            )  # fmt: skip
        repo = state.add_repo(owner, name)
        out = {
            "name": name,
            "full_name": f"{owner}/{name}",
            "private": bool(body.get("private")),
            "html_url": repo.html_url,
            "clone_url": f"{repo.html_url}.git",
        }
        return JSONResponse(out, status_code=201)

    @app.post("/user/repos")
    async def create_user_repo(request: Request) -> Any:
        return create_repo(state.login, await request.json())

    @app.post("/orgs/{org}/repos")
    async def create_org_repo(org: str, request: Request) -> Any:
        if org not in state.orgs:
            return _error(404, "Not Found")
        return create_repo(org, await request.json())

    @app.delete("/repos/{owner}/{name}")
    async def delete_repo(owner: str, name: str) -> Any:
        repo = repo_or_404(owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        if state.refuse_delete:
            return _error(403, "Must have admin rights to Repository.")
        del state.repos[(owner, name)]
        return Response(status_code=204)

    @app.patch("/repos/{owner}/{name}")
    async def update_repo(owner: str, name: str, request: Request) -> Any:
        repo = repo_or_404(owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        body = await request.json()
        repo.archived = bool(body.get("archived", repo.archived))
        return {"full_name": f"{owner}/{name}", "archived": repo.archived}

    @app.get("/repos/{owner}/{name}/git/ref/heads/{branch:path}")
    async def get_ref(owner: str, name: str, branch: str) -> Any:
        repo = repo_or_404(owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        if branch not in repo.branches:
            return _error(404, "Not Found")
        sha = repo.branches[branch]
        return {"ref": f"refs/heads/{branch}", "object": {"type": "commit", "sha": sha}}

    @app.post("/repos/{owner}/{name}/git/refs")
    async def create_ref(owner: str, name: str, request: Request) -> Any:
        repo = repo_or_404(owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        body = await request.json()
        ref, sha = body.get("ref", ""), body.get("sha", "")
        if not ref.startswith("refs/heads/"):
            return _error(422, "Reference name must start with 'refs/'")
        branch = ref.removeprefix("refs/heads/")
        if branch in repo.branches:
            return _error(422, "Reference already exists")
        if sha not in repo.branches.values():
            return _error(422, "Object does not exist")
        repo.branches[branch] = sha
        return JSONResponse({"ref": ref, "object": {"type": "commit", "sha": sha}}, 201)

    @app.get("/repos/{owner}/{name}/contents/{path:path}")
    async def get_contents(owner: str, name: str, path: str, ref: str | None = None) -> Any:
        repo = repo_or_404(owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        found = repo.files.get((ref or repo.default_branch, path))
        if found is None:
            return _error(404, "Not Found")
        content, sha = found
        encoded = base64.b64encode(content.encode()).decode()
        return {"type": "file", "path": path, "sha": sha, "content": encoded}

    @app.put("/repos/{owner}/{name}/contents/{path:path}")
    async def put_contents(owner: str, name: str, path: str, request: Request) -> Any:
        repo = repo_or_404(owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        body = await request.json()
        branch = body.get("branch") or repo.default_branch
        if branch not in repo.branches:
            return _error(404, f"Branch {branch} not found")
        if not body.get("message"):
            return _error(422, 'Invalid request.\n\n"message" wasn\'t supplied.')
        existing = repo.files.get((branch, path))
        if existing is not None and body.get("sha") != existing[1]:
            return _error(409, f"{path} does not match {body.get('sha')}")
        if existing is None and body.get("sha"):
            return _error(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
        content = base64.b64decode(body["content"]).decode()
        blob = _sha("blob", content)
        commit = _sha(repo.branches[branch], path, content)
        repo.files[(branch, path)] = (content, blob)
        repo.branches[branch] = commit
        out = {"content": {"path": path, "sha": blob}, "commit": {"sha": commit}}
        return JSONResponse(out, status_code=200 if existing else 201)

    @app.post("/repos/{owner}/{name}/issues")
    async def create_issue(owner: str, name: str, request: Request) -> Any:
        repo = repo_or_404(owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        body = await request.json()
        number = len(repo.issues) + 1
        issue = {
            "number": number,
            "title": body.get("title"),
            "body": body.get("body"),
            "state": "open",
            "html_url": f"{repo.html_url}/issues/{number}",
        }
        repo.issues[number] = issue
        return JSONResponse(issue, status_code=201)

    @app.post("/repos/{owner}/{name}/pulls")
    async def create_pull(owner: str, name: str, request: Request) -> Any:
        repo = repo_or_404(owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        body = await request.json()
        head, base = body.get("head"), body.get("base")
        for branch in (head, base):
            if branch not in repo.branches:
                return _error(
                    422,
                    "Validation Failed",
                    [{"resource": "PullRequest", "code": "invalid", "field": "head"}],
                )
        if repo.branches[head] == repo.branches[base]:
            return _error(
                422,
                "Validation Failed",
                [{"resource": "PullRequest", "code": "custom",
                  "message": f"No commits between {base} and {head}"}],
            )  # fmt: skip
        number = len(repo.issues) + 1
        pr = {
            "number": number,
            "title": body.get("title"),
            "body": body.get("body"),
            "state": "open",
            "merged": False,
            "head": {"ref": head},
            "base": {"ref": base},
            "html_url": f"{repo.html_url}/pull/{number}",
        }
        repo.issues[number] = pr
        return JSONResponse(pr, status_code=201)

    @app.post("/repos/{owner}/{name}/issues/{number}/comments")
    async def comment(owner: str, name: str, number: int, request: Request) -> Any:
        repo = repo_or_404(owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        if number not in repo.issues:
            return _error(404, "Not Found")
        body = await request.json()
        cid = len(repo.comments) + 1
        item = {
            "id": cid,
            "issue": number,
            "body": body.get("body"),
            "html_url": f"{repo.html_url}/issues/{number}#issuecomment-{cid}",
        }
        repo.comments.append(item)
        return JSONResponse(item, status_code=201)

    @app.put("/repos/{owner}/{name}/pulls/{number}/merge")
    async def merge(owner: str, name: str, number: int, request: Request) -> Any:
        repo = repo_or_404(owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        pr = repo.issues.get(number)
        if pr is None or "merged" not in pr:
            return _error(404, "Not Found")
        if pr["merged"]:
            return _error(405, "Pull Request is not mergeable")
        body = await request.json()
        base, head = pr["base"]["ref"], pr["head"]["ref"]
        sha = _sha(repo.branches[base], repo.branches[head], body.get("merge_method", "merge"))
        repo.branches[base] = sha
        pr["merged"], pr["state"] = True, "closed"
        return {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}

    return app


__all__ = ["TOKEN", "FakeGitHub", "create_app", "serve_in_thread"]
