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

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'soma.db'}"

    @property
    def workspaces_dir(self) -> Path:
        return self.home / "workspaces"
