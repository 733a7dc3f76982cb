"""File tools. They run in-process (no sandbox round trip) and go through Workspace.resolve."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import Field

from soma.errors import ToolError
from soma.tools.base import ToolArgs, ToolContext, ToolResult, tool

DEFAULT_READ_BYTES = 256 * 1024
MAX_LIST_ENTRIES = 2000


class ReadArgs(ToolArgs):
    path: str = Field(description="File path relative to the workspace root.")
    max_bytes: int | None = Field(
        default=None,
        ge=1,
        description=f"Read at most this many bytes (default {DEFAULT_READ_BYTES}).",
    )


class WriteArgs(ToolArgs):
    path: str = Field(description="File path relative to the workspace root.")
    content: str = Field(description="The complete new content of the file (UTF-8).")


class ListArgs(ToolArgs):
    path: str = Field(default=".", description="Directory relative to the workspace root.")
    recursive: bool = Field(default=False, description="List subdirectories too (skips .git).")


def _display(ctx: ToolContext, path: Path) -> str:
    rel = path.relative_to(ctx.workspace.path).as_posix()
    return rel or "."


@tool("fs.read", "Read a text file from the workspace.", ReadArgs, quick=True)
async def fs_read(args: ReadArgs, ctx: ToolContext) -> ToolResult:
    path = ctx.workspace.resolve(args.path)
    limit = args.max_bytes or DEFAULT_READ_BYTES
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            data = fh.read(limit)
    except IsADirectoryError:
        raise ToolError(f"{args.path} is a directory", hint="use fs.list") from None
    except FileNotFoundError:
        raise ToolError(f"{args.path} does not exist") from None
    except OSError as exc:
        raise ToolError(f"cannot read {args.path}: {exc.strerror}") from None
    if b"\x00" in data[:8192]:
        return ToolResult(
            ok=True, output=f"{args.path} is a binary file ({size} bytes)", data={"size": size}
        )
    text = data.decode("utf-8", errors="replace")
    truncated = size > len(data)
    if truncated:
        text += f"\n[... truncated: showed {len(data)} of {size} bytes; raise max_bytes ...]"
    return ToolResult(ok=True, output=text, data={"size": size, "truncated": truncated})


@tool(
    "fs.write",
    "Create or overwrite a text file in the workspace (parent directories are created).",
    WriteArgs,
    quick=True,
)
async def fs_write(args: WriteArgs, ctx: ToolContext) -> ToolResult:
    path = ctx.workspace.resolve(args.path)
    if path == ctx.workspace.path:
        raise ToolError("fs.write needs a file path, not the workspace root")
    data = args.content.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Re-check after mkdir: a parent that is a symlink would have been resolved above, but
        # the tree may have changed in between.
        ctx.workspace.resolve(args.path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except IsADirectoryError:
        raise ToolError(f"{args.path} is a directory") from None
    except OSError as exc:
        raise ToolError(f"cannot write {args.path}: {exc.strerror}") from None
    return ToolResult(
        ok=True,
        output=f"wrote {len(data)} bytes to {_display(ctx, path)}",
        data={"path": _display(ctx, path), "bytes": len(data)},
    )


def _walk(root: Path, recursive: bool) -> tuple[list[Path], bool]:
    entries: list[Path] = []
    stack = [root]
    while stack:
        current = stack.pop()
        with os.scandir(current) as it:
            children = sorted(it, key=lambda e: e.name)
        for entry in children:
            if entry.name == ".git":
                continue
            path = Path(entry.path)
            entries.append(path)
            if len(entries) >= MAX_LIST_ENTRIES:
                return entries, True
            if recursive and entry.is_dir(follow_symlinks=False):
                stack.append(path)
    return sorted(entries), False


@tool(
    "fs.list",
    "List files and directories in the workspace (directories end in '/').",
    ListArgs,
    quick=True,
)
async def fs_list(args: ListArgs, ctx: ToolContext) -> ToolResult:
    root = ctx.workspace.resolve(args.path)
    if not root.is_dir():
        raise ToolError(f"{args.path} is not a directory")
    entries, truncated = await asyncio.to_thread(_walk, root, args.recursive)
    names = [_display(ctx, p) + ("/" if p.is_dir() and not p.is_symlink() else "") for p in entries]
    output = "\n".join(names) if names else "(empty)"
    if truncated:
        output += f"\n[... stopped at {MAX_LIST_ENTRIES} entries; list a subdirectory ...]"
    return ToolResult(ok=True, output=output, data={"entries": names, "truncated": truncated})
