"""Each tenant's tools: the worker's registry plus the tools of the MCP servers the tenant has
configured.

An MCP server is configured as a tenant secret named ``mcp.<server>`` whose value is the JSON of
:class:`~soma.tools.mcp_client.McpServerConfig` (the vault, because such configs carry tokens in
headers or environment variables). Its tools appear as ``mcp.<server>.<tool>`` and, like any
tool, are offered only to capsules that grant them. Discovery connects to every configured
server, so a tenant's registry is cached until its MCP configuration changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

from pydantic import ValidationError

from soma.errors import SomaError
from soma.secrets import Vault
from soma.tools import ToolRegistry
from soma.tools.mcp_client import McpServerConfig, discover_tools

log = logging.getLogger("soma.orchestrator")
PREFIX = "mcp."


class TenantTools:
    def __init__(self, base: ToolRegistry, vault: Vault) -> None:
        self.base = base
        self.vault = vault
        self._cache: dict[str, tuple[str, ToolRegistry]] = {}
        self._lock = asyncio.Lock()

    async def registry(self, tenant_id: str) -> ToolRegistry:
        configs = await asyncio.to_thread(self._configs, tenant_id)
        if not configs:
            return self.base
        stamp = hashlib.sha256(
            json.dumps([c.model_dump(mode="json") for c in configs], sort_keys=True).encode()
        ).hexdigest()
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        async with self._lock:
            registry = ToolRegistry([self.base.get(name) for name in self.base.names()])
            for config in configs:
                try:
                    tools = await discover_tools(config)
                except SomaError as exc:  # one broken server must not take the others down
                    log.warning("tenant %s: MCP server %s skipped: %s", tenant_id, config.name, exc)
                    continue
                for tool in tools:
                    registry.register(tool)
            self._cache[tenant_id] = (stamp, registry)
            return registry

    def _configs(self, tenant_id: str) -> list[McpServerConfig]:
        configs = []
        for info in self.vault.names(tenant_id):
            if not info.name.startswith(PREFIX):
                continue
            try:
                raw = json.loads(self.vault.get(tenant_id, info.name))
                if isinstance(raw, dict):  # the secret's name names the server
                    raw["name"] = info.name.removeprefix(PREFIX)
                configs.append(McpServerConfig.model_validate(raw))
            except (json.JSONDecodeError, ValidationError, SomaError) as exc:
                log.warning(
                    "tenant %s: secret %s is not an MCP server config: %s",
                    tenant_id,
                    info.name,
                    exc,
                )
        return configs
