"""The gateway application: routers, hardening and error handling around shared services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from temporalio.client import Client

from soma import __version__
from soma.console.routes import install_console
from soma.errors import NotFound
from soma.gateway.errors import install_error_handlers
from soma.gateway.middleware import HardeningMiddleware
from soma.gateway.ratelimit import RateLimiter, build_limiter
from soma.gateway.routes import (
    billing,
    governance,
    health,
    identity,
    library,
    login,
    market,
    market_installs,
    notifications,
    openai_compat,
    projects,
    reviews,
    secrets,
    slack,
)
from soma.gateway.services import ModelResolver, Services
from soma.identity.login import LoginProvider
from soma.identity.oidc import OIDCClient
from soma.identity.secret import load_secret_key
from soma.identity.service import Identity
from soma.marketplace.catalogue import publish_builtin_catalogue
from soma.models.protocol import Model
from soma.models.registry import resolve_model
from soma.orchestrator.background import background_consumers
from soma.orchestrator.server import connect
from soma.orchestrator.worker import build_worker
from soma.secrets import Vault
from soma.settings import Settings
from soma.specs.library import Library
from soma.store import Store
from soma.telemetry.asgi import TelemetryMiddleware, metrics_endpoint
from soma.telemetry.temporal import backlog_monitor

DESCRIPTION = """\
SomaAgentHub's API: projects planned from a goal and executed durably by agent teams, their
review gates, the capsule and persona library, the audit log and usage — plus OpenAI-compatible
`/v1/models` and `/v1/chat/completions`, so any OpenAI SDK can talk to personas and capsules.

Authenticate with `Authorization: Bearer <API key or session token>`. Errors are
`{"error": {"type", "message", "field"}}`.
"""


def create_app(svc: Services, *, engine: bool = False, worker: bool = False) -> FastAPI:
    """The ASGI app. With ``engine`` it connects to Temporal on startup (starting the embedded
    server if none is configured); with ``worker`` it also runs a worker in this process, which
    is what `soma serve` does by default so that one command gives a working system."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(svc.limiter.close)
            await asyncio.to_thread(publish_builtin_catalogue, svc.store, svc.settings)
            if (engine or worker) and svc.temporal is None:
                svc.temporal = await connect(svc.settings)
            if worker:
                await stack.enter_async_context(
                    build_worker(
                        svc.engine(),
                        svc.settings,
                        store=svc.store,
                        library=svc.library,
                        models=svc.models,
                    )
                )
                await stack.enter_async_context(
                    backlog_monitor(svc.engine(), svc.settings.task_queue)
                )
                await stack.enter_async_context(
                    background_consumers(svc.store, svc.settings, svc.secret_key)
                )
            yield

    app = FastAPI(
        title="SomaAgentHub",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
        # Request spans and HTTP metrics come from soma.telemetry's middleware (one span, with
        # the hardening layer inside it); FastAPI's own would add three spans per request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.services = svc
    app.state.slack_secrets = _secret_lookup(svc)
    app.state.engine_expected = engine or worker
    install_error_handlers(app)
    # The OpenAI-compatible router first: routers are tried in order, and the proxy is the
    # hottest path (measured ~60 µs a request saved; no paths overlap, so order is otherwise moot).
    routers = (
        openai_compat,
        health,
        login,
        identity,
        projects,
        reviews,
        library,
        governance,
        billing,
        market,
        market_installs,
        secrets,
        notifications,
        slack,
    )
    for module in routers:
        app.include_router(module.router)
    install_console(app)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    settings = svc.settings
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["authorization", "content-type", "last-event-id", "x-csrf-token"],
        )
    app.add_middleware(
        HardeningMiddleware,
        max_body_bytes=settings.max_body_bytes,
        timeout_s=settings.request_timeout_s,
    )
    # Outermost, so request spans and latencies include the hardening layer and its answers.
    app.add_middleware(TelemetryMiddleware)
    return app


def _secret_lookup(svc: Services) -> Callable[[str, str], str | None]:
    """How integrations that authenticate by a shared secret (Slack's signing secret) read it
    from the tenant's vault; a missing tenant or secret is simply None."""
    vault = Vault(svc.store, svc.secret_key)

    def lookup(tenant_id: str, name: str) -> str | None:
        try:
            return vault.get(tenant_id, name)
        except NotFound:
            return None

    return lookup


def model_resolver(settings: Settings) -> ModelResolver:
    """Resolves model specs once each: providers hold connection pools (and the local model
    its weights), so they are shared by every request."""
    cache: dict[str, Model] = {}

    def resolve(spec: str) -> Model:
        model = cache.get(spec)
        if model is None:
            model = cache[spec] = resolve_model(spec, settings)
        return model

    return resolve


def build_services(
    settings: Settings,
    *,
    store: Store | None = None,
    library: Library | None = None,
    models: Callable[[str], Model] | None = None,
    limiter: RateLimiter | None = None,
    temporal: Client | None = None,
    oidc: LoginProvider | None = None,
) -> Services:
    """Services from settings; tests and embedders pass their own parts."""
    store = store or Store.open(settings.store_url)
    secret = load_secret_key(settings)
    if oidc is None and settings.oidc_issuer and settings.oidc_client_id:
        client_secret = settings.oidc_client_secret
        oidc = OIDCClient(
            settings.oidc_issuer,
            settings.oidc_client_id,
            client_secret.get_secret_value() if client_secret else None,
        )
    return Services(
        settings=settings,
        store=store,
        identity=Identity(store, secret, session_ttl_s=settings.session_ttl_s),
        library=library or Library.builtin(),
        limiter=limiter or build_limiter(settings.rate_limit_url),
        models=models or model_resolver(settings),
        secret_key=secret,
        temporal=temporal,
        oidc=oidc,
    )
