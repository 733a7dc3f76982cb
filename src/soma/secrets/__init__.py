"""Per-tenant secrets for adapter credentials: encrypted at rest, never logged, never shown to
the model. See ``docs/secrets.md``."""

from soma.secrets.vault import MASK, TenantSecrets, Vault, check_name, mask

__all__ = ["MASK", "TenantSecrets", "Vault", "check_name", "mask"]
