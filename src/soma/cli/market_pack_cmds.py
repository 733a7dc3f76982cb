"""Placeholder: commands are added here and registered on ``market_app``."""

from __future__ import annotations

from soma.cli.market_cmds import market_app

__all__ = ["market_app"]
