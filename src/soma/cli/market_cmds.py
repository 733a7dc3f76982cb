"""`soma market`: pack, sign, verify, publish, search and install capsule and persona packages.

The commands live in ``market_pack_cmds`` (local package files) and ``market_registry_cmds``
(registries and installs); both register on :data:`market_app`.
"""

from __future__ import annotations

import typer

market_app = typer.Typer(
    help="Marketplace: signed capsule and persona packages — pack, sign, verify, publish, "
    "search, install.",
    no_args_is_help=True,
)
