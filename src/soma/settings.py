"""Settings, read once from ``SOMA_*`` environment variables and passed down explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".soma"


class Settings(BaseSettings):
    """Process-wide configuration; library code receives it as an argument, never reads it."""

    model_config = SettingsConfigDict(env_prefix="SOMA_", env_file=None, extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Where Soma keeps its state.")
    model: str = Field(
        default="local",
        description="Default model: 'local' (embedded, offline) or 'openai:<model>' "
        "for an OpenAI-compatible server at SOMA_OPENAI_BASE_URL.",
    )
    local_model_path: Path | None = Field(
        default=None, description="A .gguf file to use instead of the packaged local model."
    )
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    model_timeout_s: float = 120.0
    sandbox: Literal["auto", "bwrap", "subprocess"] = "auto"
    sandbox_timeout_s: float = 60.0
    sandbox_memory_mb: int = 1024

    temporal_address: str | None = Field(
        default=None,
        description="host:port of an existing Temporal cluster; unset starts the embedded server.",
    )
    temporal_namespace: str = "default"
    task_queue: str = "soma"
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store; unset uses SQLite under SOMA_HOME.",
    )

    # -- gateway (soma serve) -------------------------------------------------------------------
    gateway_host: str = Field(default="127.0.0.1", description="Address `soma serve` binds.")
    gateway_port: int = 8765
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs session tokens; unset: generated once into SOMA_HOME/secret.key (0600).",
    )
    session_ttl_s: int = Field(default=3600, gt=0, description="Lifetime of a session token.")
    oidc_issuer: str | None = Field(
        default=None, description="OpenID Connect issuer URL; set it to enable OIDC login."
    )
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_redirect_url: str | None = Field(
        default=None,
        description="Callback URL registered at the provider; unset: derived from the request.",
    )
    oidc_tenant: str = Field(default="default", description="Tenant that OIDC users belong to.")
    oidc_default_role: Literal["admin", "developer", "reviewer", "viewer"] = "viewer"
    rate_limit_url: str | None = Field(
        default=None,
        description="redis://host:port/db to share rate limits between gateway replicas; "
        "unset keeps them in process.",
    )
    key_requests_per_min: int = Field(default=600, gt=0, description="Per API key or session.")
    tenant_requests_per_min: int = Field(default=3000, gt=0)
    tenant_tokens_per_min: int = Field(
        default=1_000_000, gt=0, description="Model tokens per tenant per minute (chat endpoints)."
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="Largest request body.")
    request_timeout_s: float = Field(default=120.0, gt=0, description="Non-streaming requests.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty (default) is CORS off."
    )
    gateway_models: list[str] = Field(
        default_factory=list,
        description="Provider models (e.g. openai:gpt-4o-mini) offered at /v1/models besides "
        "SOMA_MODEL.",
    )

    # -- operations (docs/operations.md) --------------------------------------------------------
    log_format: Literal["console", "json"] = Field(
        default="console", description="json: one structured line per log record (structlog)."
    )
    log_level: str = "INFO"
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        default="none", description="Where OpenTelemetry spans go; otlp uses SOMA_OTEL_ENDPOINT."
    )
    otel_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces."
    )
    otel_service_name: str = "soma"
    metrics_port: int | None = Field(
        default=None,
        description="`soma worker` serves Prometheus /metrics on this port (the gateway always "
        "serves /metrics).",
    )
    prices_file: Path | None = Field(
        default=None,
        description="A YAML price table (USD per million tokens per model) replacing the "
        "built-in one.",
    )
    event_export: Literal["none", "nats"] = Field(
        default="none", description="Publish the store's event log to NATS JetStream."
    )
    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = Field(default="SOMA_EVENTS", description="JetStream stream for events.")
    nats_subject_prefix: str = Field(
        default="soma.events", description="Events go to <prefix>.<tenant>.<project>."
    )
    notifications: bool = Field(
        default=True, description="Deliver the tenants' notification rules (webhook, Slack, email)."
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_sender: str = "soma@localhost"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    qdrant_url: str | None = Field(
        default=None,
        description="A Qdrant server for memory (http://host:6333); unset keeps memory in the "
        "store.",
    )
    qdrant_api_key: SecretStr | None = None

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'soma.db'}"

    @property
    def workspaces_dir(self) -> Path:
        return self.home / "workspaces"
