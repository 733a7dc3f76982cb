# `make test` is the project's one test command (README, .ci/run).
.PHONY: test lint bench

test:
	@scripts/bootstrap
	.venv/bin/python -m pytest

lint:
	@scripts/bootstrap
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy src

bench:
	@scripts/bootstrap
	.venv/bin/python bench/run.py
