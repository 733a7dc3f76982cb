"""Each tenant's library: a shared base (the built-in catalogue, or what the process was given)
plus the tenant's own directory, where marketplace installs land.

Workers, the planner and the gateway ask for a tenant's library on every use; it is rebuilt
only when that tenant's directory changed (an install or uninstall renames entries in it), so
an install is visible to the next project without a restart.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from soma.errors import SomaError
from soma.specs.library import Library

DEFAULT_TENANT = "default"
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_WATCHED = ("", "capsules", "personas", "constitutions")


def tenant_library_dir(home: Path, tenant_id: str) -> Path:
    """``$SOMA_HOME/library`` for the default tenant (what `soma` has always read), else
    ``$SOMA_HOME/tenants/<tenant>/library``."""
    if not _TENANT_RE.match(tenant_id):
        raise SomaError(
            f"invalid tenant id {tenant_id!r}",
            hint="tenant ids are lowercase letters, digits and dashes",
        )
    if tenant_id == DEFAULT_TENANT:
        return home / "library"
    return home / "tenants" / tenant_id / "library"


def _fingerprint(directory: Path) -> tuple[int, ...]:
    stamps = []
    for part in _WATCHED:
        try:
            stamps.append((directory / part).stat().st_mtime_ns)
        except FileNotFoundError:
            stamps.append(0)
    return tuple(stamps)


class TenantLibraries:
    """Thread-safe cache of per-tenant libraries over one base library."""

    def __init__(self, home: Path, base: Library | None = None) -> None:
        self.home = home
        self.base = base or Library.builtin()
        self._cache: dict[str, tuple[tuple[int, ...], Library]] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: str) -> Library:
        directory = tenant_library_dir(self.home, tenant_id)
        stamp = _fingerprint(directory)
        with self._lock:
            cached = self._cache.get(tenant_id)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        library = self.base.extended(directory) if directory.is_dir() else self.base
        with self._lock:
            self._cache[tenant_id] = (stamp, library)
        return library
