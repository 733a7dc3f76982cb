"""Runs every benchmark in this folder (``make bench``) and prints one table each."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(selected: list[str]) -> None:
    sys.path.insert(0, str(HERE))
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem
        if selected and not any(s in name for s in selected):
            continue
        module = importlib.import_module(name)
        sys.argv = [str(path)]  # each benchmark parses its own options; run them with defaults
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
