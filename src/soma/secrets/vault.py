"""The per-tenant secret store: adapter credentials sealed with AES-256-GCM.

The encryption key is derived (HKDF-SHA256, info ``soma-secrets-v1``) from the instance secret
rather than being the instance secret itself, so the key that signs sessions never touches
secret data and a future ``v2`` derivation can coexist with ``v1`` rows. Each row is sealed with
a fresh 12-byte nonce and the associated data ``tenant_id\\0name``: GCM then refuses a row that
was copied to another tenant or renamed, so a database writer cannot hand tenant A's token to
tenant B without it being noticed.

Values leave this module only through :meth:`Vault.get` and :meth:`TenantSecrets.get`; every
``repr``, error message and audit record carries names only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from soma.errors import NotFound, SomaError
from soma.store import SecretInfo, Store
from soma.store.audit import digest

KEY_VERSION = 1
_HKDF_INFO = b"soma-secrets-v1"
_NONCE_BYTES = 12
MAX_VALUE_BYTES = 64 * 1024
# Shorter values would mask ordinary text ("on", "yes") everywhere they appear.
MIN_MASKED_LENGTH = 4
MASK = "[secret]"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
SYSTEM = "system"


def derive_key(instance_secret: bytes) -> bytes:
    """The 256-bit encryption key for secrets, derived from the instance secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        instance_secret
    )


def check_name(name: str) -> str:
    """``name`` if it is a valid secret name; names end up in audit records and URLs."""
    if not NAME_PATTERN.fullmatch(name):
        raise SomaError(
            f"invalid secret name {name!r}: use 1-128 lowercase letters, digits, '.', '_' or"
            " '-', starting with a letter or digit",
            hint="for example `github.token` or `jira-api-key`",
        )
    return name


def _check_value(name: str, value: str) -> bytes:
    data = value.encode("utf-8")
    if not data:
        raise SomaError(
            f"secret '{name}' would be empty",
            hint=f"give a value, or remove the secret with `soma secrets delete <tenant> {name}`",
        )
    if len(data) > MAX_VALUE_BYTES:
        raise SomaError(
            f"secret '{name}' is {len(data)} bytes; at most {MAX_VALUE_BYTES} are allowed",
            hint="store a credential, not a file; keep large material elsewhere",
        )
    return data


def _aad(tenant_id: str, name: str) -> bytes:
    return f"{tenant_id}\0{name}".encode()


def mask(text: str, values: Iterable[str]) -> str:
    """``text`` with every secret value of at least 4 characters replaced by ``[secret]``.

    Adapters run upstream responses through this, since services sometimes echo the credential
    they were sent and the model must never see it. Longer values are replaced first, so a
    value that contains another is not left half-masked.
    """
    for value in sorted({v for v in values if len(v) >= MIN_MASKED_LENGTH}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


class Vault:
    """Seals, stores and opens tenants' secrets; set and delete join the tenant's audit chain."""

    def __init__(self, store: Store, instance_secret: bytes) -> None:
        self._store = store
        self._aead = AESGCM(derive_key(instance_secret))

    def __repr__(self) -> str:
        return "Vault(<sealed>)"

    __str__ = __repr__

    def set(self, tenant_id: str, name: str, value: str, *, actor: str = SYSTEM) -> SecretInfo:
        """Create or replace a secret; NotFound for an unknown tenant."""
        check_name(name)
        data = _check_value(name, value)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, data, _aad(tenant_id, name))
        info = self._store.put_secret_row(
            tenant_id,
            name,
            nonce=nonce,
            ciphertext=sealed,
            key_version=KEY_VERSION,
            updated_by=actor,
        )
        self._audit(tenant_id, actor, "secret.set", name)
        return info

    def get(self, tenant_id: str, name: str) -> str:
        """The secret's value; NotFound if unset, SomaError if the row cannot be opened."""
        check_name(name)
        row = self._store.get_secret_row(tenant_id, name)
        if row.key_version != KEY_VERSION:
            raise SomaError(
                f"secret '{name}' of tenant '{tenant_id}' was sealed with key version"
                f" {row.key_version}, which this version of Soma does not know",
                hint="upgrade Soma, or set the secret again",
            )
        try:
            data = self._aead.decrypt(row.nonce, row.ciphertext, _aad(tenant_id, name))
        except InvalidTag:
            raise SomaError(
                f"secret '{name}' of tenant '{tenant_id}' cannot be decrypted: it was changed or"
                " moved, or SOMA_SECRET_KEY changed",
                hint="restore the previous SOMA_SECRET_KEY (or SOMA_HOME/secret.key), or set the"
                f" secret again with `soma secrets set {tenant_id} {name}`",
            ) from None
        return data.decode("utf-8")

    def names(self, tenant_id: str) -> list[SecretInfo]:
        """The tenant's secrets by name, with who changed them last; never their values."""
        return self._store.list_secret_rows(tenant_id)

    def delete(self, tenant_id: str, name: str, *, actor: str = SYSTEM) -> None:
        """Forget a secret; NotFound if it is not there."""
        check_name(name)
        self._store.delete_secret_row(tenant_id, name)
        self._audit(tenant_id, actor, "secret.delete", name)

    def reader(self, tenant_id: str) -> TenantSecrets:
        """The tenant's secrets as adapters read them (a :class:`soma.tools.SecretReader`)."""
        return TenantSecrets(self, tenant_id)

    def _audit(self, tenant_id: str, actor: str, operation: str, name: str) -> None:
        """Who changed which credential belongs in the same tamper-evident trail as the
        commands that used it; the record names the secret and never holds its value."""
        self._store.append_audit(
            tenant_id=tenant_id,
            project_id=None,
            node_id=None,
            actor=actor,
            action_kind="secrets",
            tool=operation,
            arguments_digest=digest({"name": name}),
            rule_id=None,
            effect="allow",
            reason=f"{operation} name={name}",
        )


class TenantSecrets:
    """One tenant's secrets for the adapters of one run.

    Values are cached after the first read, both to spare the database and so that
    :meth:`values` (what to mask) covers exactly what was handed out.
    """

    def __init__(self, vault: Vault, tenant_id: str) -> None:
        self._vault = vault
        self.tenant_id = tenant_id
        self._cache: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"TenantSecrets(tenant_id={self.tenant_id!r}, <sealed>)"

    __str__ = __repr__

    def get(self, name: str) -> str | None:
        """The value, or None when the tenant has no such secret."""
        if name not in self._cache:
            try:
                self._cache[name] = self._vault.get(self.tenant_id, name)
            except NotFound:
                return None
        return self._cache[name]

    def values(self) -> list[str]:
        """Every value of the tenant's secrets that can be opened, for :func:`mask`."""
        for info in self._vault.names(self.tenant_id):
            try:
                self.get(info.name)
            except SomaError:  # unreadable here, so it cannot be leaked either; get() reports it
                continue
        return list(self._cache.values())
