from __future__ import annotations

from soma.tools import ToolContext, ToolRegistry


async def test_commit_and_diff(registry: ToolRegistry, plain_ctx: ToolContext) -> None:
    await registry.call("fs.write", {"path": "a.txt", "content": "one\n"}, plain_ctx)
    diff = await registry.call("git.diff", {}, plain_ctx)
    assert diff.ok
    assert "+one" in diff.output
    res = await registry.call("git.commit", {"message": "add a"}, plain_ctx)
    assert res.ok
    assert "as developer (implement-feature) <developer@agents.soma.local>" in res.output
    head = plain_ctx.workspace.log(1)[0]
    assert res.data == {"sha": head.sha}
    assert (head.author_name, head.author_email) == (
        "developer (implement-feature)",
        "developer@agents.soma.local",
    )
    clean = await registry.call("git.diff", {}, plain_ctx)
    assert clean.output == "(no changes)"
    since = await registry.call("git.diff", {"rev": "HEAD~1"}, plain_ctx)
    assert "+one" in since.output


async def test_bad_rev_is_agent_error(registry: ToolRegistry, plain_ctx: ToolContext) -> None:
    res = await registry.call("git.diff", {"rev": "--no-index"}, plain_ctx)
    assert not res.ok
    assert "invalid revision" in res.output


async def test_empty_message_rejected(registry: ToolRegistry, plain_ctx: ToolContext) -> None:
    res = await registry.call("git.commit", {"message": ""}, plain_ctx)
    assert not res.ok
    assert "at message" in res.output


async def test_git_log_and_status_report_history_and_changes(
    registry: ToolRegistry, plain_ctx: ToolContext
) -> None:
    ctx = plain_ctx
    (ctx.workspace.path / "new.txt").write_text("x")
    status = await registry.call("git.status", {}, ctx)
    assert status.ok
    assert "new.txt" in status.output
    await registry.call("git.commit", {"message": "add new"}, ctx)
    log = await registry.call("git.log", {"n": 2}, ctx)
    assert log.ok
    assert "add new" in log.output.splitlines()[0]
    assert ctx.agent.git_email in log.output
    clean = await registry.call("git.status", {}, ctx)
    assert clean.output == "(clean)"
