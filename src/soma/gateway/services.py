"""What the routes work with, built once per gateway process and shared by every request."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from temporalio.client import Client

from soma.gateway.errors import EngineUnavailable
from soma.gateway.ratelimit import Limit, RateLimiter
from soma.identity.login import LoginProvider
from soma.identity.service import Identity
from soma.models.protocol import Model
from soma.settings import Settings
from soma.specs.library import Library
from soma.specs.tenant_libraries import TenantLibraries
from soma.store import Store

ModelResolver = Callable[[str], Model]
_TENANT_LIMITS_TTL_S = 30.0


@dataclass(frozen=True, slots=True)
class TenantLimits:
    requests: Limit
    tokens: Limit


@dataclass
class Services:
    """The gateway's dependencies. ``temporal`` is None until the engine is connected (and in
    deployments that only proxy models); project routes answer 503 then."""

    settings: Settings
    store: Store
    identity: Identity
    library: Library
    limiter: RateLimiter
    models: ModelResolver
    secret_key: bytes
    temporal: Client | None = None
    oidc: LoginProvider | None = None
    libraries: TenantLibraries | None = None
    _tenant_limits: dict[str, tuple[float, TenantLimits]] = field(default_factory=dict)

    def library_for(self, tenant_id: str) -> Library:
        """The tenant's library: the shared one plus its installed packages."""
        if self.libraries is None:
            self.libraries = TenantLibraries(self.settings.home, self.library)
        return self.libraries.get(tenant_id)

    def engine(self) -> Client:
        if self.temporal is None:
            raise EngineUnavailable(
                "the durable engine is not connected",
                hint="start the gateway with `soma serve` (it starts or connects to Temporal)",
            )
        return self.temporal

    @property
    def key_limit(self) -> Limit:
        return Limit("requests per minute for this credential", self.settings.key_requests_per_min)

    def tenant_limits(self, tenant_id: str) -> TenantLimits:
        """The tenant's own limits where set, else the defaults; re-read every 30 s so an
        admin's change reaches every replica without a restart."""
        now = time.monotonic()
        cached = self._tenant_limits.get(tenant_id)
        if cached is not None and now - cached[0] < _TENANT_LIMITS_TTL_S:
            return cached[1]
        tenant = self.store.get_tenant(tenant_id)
        limits = TenantLimits(
            requests=Limit(
                f"requests per minute for tenant {tenant_id}",
                tenant.requests_per_min or self.settings.tenant_requests_per_min,
            ),
            tokens=Limit(
                f"model tokens per minute for tenant {tenant_id}",
                tenant.tokens_per_min or self.settings.tenant_tokens_per_min,
            ),
        )
        self._tenant_limits[tenant_id] = (now, limits)
        return limits
