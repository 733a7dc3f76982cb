"""Command-line entry point of todo-cli."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STORE = Path.home() / ".todo.json"


def load(path: Path = STORE) -> list[dict[str, object]]:
    """Read the list; a missing file is an empty list, not an error."""
    if not path.exists():
        return []
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="todo")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add an item")
    add.add_argument("text")
    sub.add_parser("list", help="show all items")
    args = parser.parse_args(argv)
    items = load()
    if args.command == "add":
        items.append({"text": args.text, "done": False})
        STORE.write_text(json.dumps(items, indent=2), encoding="utf-8")
    for number, item in enumerate(items, start=1):
        print(f"{number}. {item['text']}")
    return 0
