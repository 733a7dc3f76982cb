"""Identity: tenants, users, keys, authentication and OIDC login mapping."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soma.errors import Conflict, Forbidden, NotFound, SomaError, Unauthorized
from soma.identity import Identity, OIDCClaims, Permission, Principal, permissions_for
from soma.identity import sessions as session_tokens
from soma.store import Store, UserRecord

SECRET = b"s" * 32
ISSUER = "https://idp.test"


class Clock:
    """A settable clock, so expiry and last-used bookkeeping are tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'soma.db'}") as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def identity(store: Store, clock: Clock) -> Identity:
    identity = Identity(store, SECRET, clock=clock)
    identity.create_tenant("acme", "Acme Corp")
    identity.create_tenant("globex")
    return identity


@pytest.fixture
def dev(identity: Identity) -> UserRecord:
    return identity.create_user("acme", "Dev@Acme.test", "developer", "Dee Veloper")


# -- tenants and users -------------------------------------------------------------------------


def test_create_tenant(identity: Identity) -> None:
    tenant = identity.create_tenant("team-42", requests_per_min=10, tokens_per_min=1000)
    assert (tenant.id, tenant.name, tenant.requests_per_min) == ("team-42", "team-42", 10)
    with pytest.raises(Conflict, match="already exists"):
        identity.create_tenant("team-42")


@pytest.mark.parametrize("bad", ["", "Acme", "-acme", "a_b", "a" * 64, "acme!", "é"])
def test_tenant_ids_are_slugs(identity: Identity, bad: str) -> None:
    with pytest.raises(SomaError, match="invalid tenant id"):
        identity.create_tenant(bad)


def test_tenant_limits_must_be_positive(identity: Identity) -> None:
    with pytest.raises(SomaError, match="requests_per_min must be positive"):
        identity.create_tenant("x", requests_per_min=0)


def test_create_user_normalizes_email(identity: Identity, dev: UserRecord) -> None:
    assert dev.email == "dev@acme.test"
    assert dev.role == "developer"
    with pytest.raises(Conflict, match="already has a user"):
        identity.create_user("acme", " DEV@acme.test ", "viewer")


def test_create_user_validates(identity: Identity) -> None:
    with pytest.raises(SomaError, match="unknown role 'owner'"):
        identity.create_user("acme", "a@acme.test", "owner")
    with pytest.raises(SomaError, match="invalid email"):
        identity.create_user("acme", "not-an-email", "viewer")
    with pytest.raises(NotFound, match="no tenant 'nope'"):
        identity.create_user("nope", "a@acme.test", "viewer")


# -- the key lifecycle ---------------------------------------------------------------------------


def test_key_lifecycle(identity: Identity, dev: UserRecord) -> None:
    record, plaintext = identity.create_key("acme", dev.id, "laptop")
    assert plaintext.startswith(f"soma_{record.id}_")
    assert record.scopes is None
    assert record.expires_at is None

    principal = identity.authenticate(plaintext)
    assert principal == Principal(
        tenant_id="acme",
        user_id=dev.id,
        role="developer",
        permissions=permissions_for("developer"),
        key_id=record.id,
    )
    assert principal.rate_key == f"key:{record.id}"

    assert [k.id for k in identity.list_keys("acme")] == [record.id]
    revoked = identity.revoke_key("acme", record.id)
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthorized, match=f"API key {record.id} was revoked"):
        identity.authenticate(plaintext)


def test_scopes_narrow_permissions(identity: Identity, dev: UserRecord) -> None:
    _, plaintext = identity.create_key(
        "acme", dev.id, "ci", scopes=[Permission.PROJECTS_READ, Permission.CHAT]
    )
    principal = identity.authenticate(plaintext)
    assert principal.permissions == {Permission.PROJECTS_READ, Permission.CHAT}
    assert principal.can(Permission.CHAT)
    assert not principal.can(Permission.PROJECTS_WRITE)


def test_scopes_cannot_widen_the_role(identity: Identity) -> None:
    viewer = identity.create_user("acme", "v@acme.test", "viewer")
    with pytest.raises(Forbidden, match="does not have projects:write"):
        identity.create_key("acme", viewer.id, "ci", scopes=[Permission.PROJECTS_WRITE])
    assert identity.list_keys("acme") == []


def test_scopes_must_be_known_and_not_empty(identity: Identity, dev: UserRecord) -> None:
    with pytest.raises(SomaError, match="unknown scope 'projects:delete'"):
        identity.create_key("acme", dev.id, "ci", scopes=["projects:delete"])  # type: ignore[list-item]
    with pytest.raises(SomaError, match="empty scope list"):
        identity.create_key("acme", dev.id, "ci", scopes=[])


def test_key_needs_a_name(identity: Identity, dev: UserRecord) -> None:
    with pytest.raises(SomaError, match="key name is required"):
        identity.create_key("acme", dev.id, "  ")


def test_key_expiry(identity: Identity, dev: UserRecord, clock: Clock) -> None:
    record, plaintext = identity.create_key("acme", dev.id, "temp", expires_in_s=60)
    assert record.expires_at == clock.now + timedelta(seconds=60)
    identity.authenticate(plaintext)
    clock.advance(seconds=59)
    identity.authenticate(plaintext)  # cached now, and still checked against the clock
    clock.advance(seconds=1)
    with pytest.raises(Unauthorized, match="expired"):
        identity.authenticate(plaintext)
    with pytest.raises(SomaError, match="must be positive"):
        identity.create_key("acme", dev.id, "temp", expires_in_s=0)


def test_wrong_secret_and_unknown_keys(identity: Identity, dev: UserRecord) -> None:
    _record, plaintext = identity.create_key("acme", dev.id, "laptop")
    identity.authenticate(plaintext)  # now cached: a wrong secret must still fail
    wrong = plaintext[:-4] + ("aaaa" if not plaintext.endswith("aaaa") else "bbbb")
    for token in (wrong, f"soma_{'0' * 12}_{'a' * 43}"):
        with pytest.raises(Unauthorized, match="not valid") as info:
            identity.authenticate(token)
        assert token not in str(info.value)
        assert token.rsplit("_", 1)[-1] not in str(info.value)
    with pytest.raises(Unauthorized, match="no credentials"):
        identity.authenticate("")


def test_revoked_key_status_is_not_told_without_the_secret(
    identity: Identity, dev: UserRecord
) -> None:
    record, _plaintext = identity.create_key("acme", dev.id, "laptop")
    identity.revoke_key("acme", record.id)
    with pytest.raises(Unauthorized, match="not valid") as info:
        identity.authenticate(f"soma_{record.id}_{'a' * 43}")
    assert "revoked" not in str(info.value)


def test_revocation_elsewhere_applies_within_the_cache_ttl(
    store: Store, identity: Identity, dev: UserRecord
) -> None:
    record, plaintext = identity.create_key("acme", dev.id, "laptop")
    other = Identity(store, SECRET, cache_ttl_s=0.2)  # another gateway replica
    other.authenticate(plaintext)
    identity.revoke_key("acme", record.id)
    other.authenticate(plaintext)  # still cached there, for at most cache_ttl_s
    time.sleep(0.25)
    with pytest.raises(Unauthorized, match="revoked"):
        other.authenticate(plaintext)


def test_last_used_is_written_at_most_once_a_minute(
    store: Store, identity: Identity, dev: UserRecord, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, plaintext = identity.create_key("acme", dev.id, "laptop")
    writes: list[datetime] = []
    touch = store.touch_api_key

    def counting_touch(key_id: str, when: datetime) -> None:
        writes.append(when)
        touch(key_id, when)

    monkeypatch.setattr(store, "touch_api_key", counting_touch)
    first = clock.now
    for _ in range(20):
        identity.authenticate(plaintext)
        clock.advance(seconds=1)
    assert writes == [first]
    clock.advance(seconds=60)
    identity.authenticate(plaintext)
    assert len(writes) == 2
    assert store.get_api_key(record.id).last_used_at == writes[-1]


def test_key_tenant_isolation(identity: Identity, dev: UserRecord) -> None:
    bob = identity.create_user("globex", "bob@globex.test", "admin")
    record, plaintext = identity.create_key("acme", dev.id, "laptop")
    assert identity.authenticate(plaintext).tenant_id == "acme"
    assert identity.list_keys("globex") == []
    with pytest.raises(NotFound):
        identity.revoke_key("globex", record.id)
    with pytest.raises(NotFound):
        identity.create_key("globex", dev.id, "sneaky")  # dev is not globex's user
    with pytest.raises(NotFound):
        identity.create_key("acme", bob.id, "sneaky")
    identity.authenticate(plaintext)  # the failed revoke changed nothing


def test_disabled_user_and_tenant(identity: Identity, dev: UserRecord) -> None:
    _, plaintext = identity.create_key("acme", dev.id, "laptop")
    session = identity.issue_session("acme", dev.id)
    identity.authenticate(plaintext)
    identity.authenticate(session)

    identity.set_user_disabled("acme", dev.id)
    for token in (plaintext, session):
        with pytest.raises(Unauthorized, match="is disabled"):
            identity.authenticate(token)
    with pytest.raises(Forbidden, match="disabled"):
        identity.create_key("acme", dev.id, "another")
    with pytest.raises(Unauthorized, match="is disabled"):
        identity.issue_session("acme", dev.id)

    identity.set_user_disabled("acme", dev.id, False)
    identity.authenticate(plaintext)
    identity.set_tenant_disabled("acme")
    with pytest.raises(Unauthorized, match="tenant 'acme' is disabled"):
        identity.authenticate(plaintext)


# -- sessions ------------------------------------------------------------------------------------


def test_session_round_trip(identity: Identity, dev: UserRecord) -> None:
    token = identity.issue_session("acme", dev.id)
    principal = identity.authenticate(token)
    assert principal == Principal("acme", dev.id, "developer", permissions_for("developer"))
    assert principal.rate_key == f"user:{dev.id}"


def test_session_of_another_server_or_expired(
    store: Store, identity: Identity, dev: UserRecord, clock: Clock
) -> None:
    foreign = Identity(store, b"x" * 32).issue_session("acme", dev.id)
    with pytest.raises(Unauthorized, match="signature is invalid"):
        identity.authenticate(foreign)
    clock.advance(seconds=-7200)
    old = identity.issue_session("acme", dev.id)
    with pytest.raises(Unauthorized, match="expired"):
        identity.authenticate(old)


def test_session_for_a_user_of_another_tenant_is_refused(
    identity: Identity, dev: UserRecord
) -> None:
    forged = session_tokens.issue(
        SECRET, tenant_id="globex", user_id=dev.id, role="admin", ttl_s=60
    )
    with pytest.raises(Unauthorized, match="no longer exists"):
        identity.authenticate(forged)


def test_session_role_comes_from_the_store(identity: Identity, dev: UserRecord) -> None:
    claimed_admin = session_tokens.issue(
        SECRET, tenant_id="acme", user_id=dev.id, role="admin", ttl_s=60
    )
    assert identity.authenticate(claimed_admin).role == "developer"


# -- OIDC login mapping --------------------------------------------------------------------------


def _claims(
    subject: str = "sub-1", email: str | None = "new@acme.test", **more: object
) -> OIDCClaims:
    return OIDCClaims.model_validate(
        {"issuer": ISSUER, "subject": subject, "email": email, "email_verified": True, **more}
    )


def test_login_creates_then_finds_the_user(identity: Identity) -> None:
    created = identity.login_oidc(
        _claims(name="New Person"), tenant_id="acme", default_role="reviewer"
    )
    assert (created.email, created.role, created.name) == (
        "new@acme.test",
        "reviewer",
        "New Person",
    )
    assert (created.oidc_issuer, created.oidc_subject) == (ISSUER, "sub-1")
    # The email changed at the provider: the subject still finds the same user.
    again = identity.login_oidc(
        _claims(email="renamed@acme.test"), tenant_id="acme", default_role="viewer"
    )
    assert again.id == created.id


def test_login_links_an_existing_user_by_verified_email(
    identity: Identity, dev: UserRecord
) -> None:
    user = identity.login_oidc(
        _claims(email="DEV@acme.test"), tenant_id="acme", default_role="viewer"
    )
    assert user.id == dev.id
    assert user.role == "developer"
    assert user.oidc_subject == "sub-1"


def test_login_refuses_unverified_email(identity: Identity, dev: UserRecord) -> None:
    unverified = _claims(email="dev@acme.test", email_verified=False)
    with pytest.raises(Unauthorized, match="not verified"):
        identity.login_oidc(unverified, tenant_id="acme", default_role="viewer")
    with pytest.raises(Unauthorized, match="did not say which email"):
        identity.login_oidc(_claims(email=None), tenant_id="acme", default_role="viewer")


def test_login_does_not_relink_a_linked_user(identity: Identity, dev: UserRecord) -> None:
    identity.login_oidc(_claims("sub-1", "dev@acme.test"), tenant_id="acme", default_role="viewer")
    with pytest.raises(Unauthorized, match="already linked to a different account"):
        identity.login_oidc(
            _claims("sub-2", "dev@acme.test"), tenant_id="acme", default_role="viewer"
        )


def test_login_identity_belongs_to_one_tenant(identity: Identity) -> None:
    identity.login_oidc(_claims(), tenant_id="acme", default_role="viewer")
    with pytest.raises(Unauthorized, match="already linked"):
        identity.login_oidc(_claims(), tenant_id="globex", default_role="viewer")


def test_login_to_missing_or_disabled_tenant(identity: Identity) -> None:
    with pytest.raises(Unauthorized, match="does not exist"):
        identity.login_oidc(_claims(), tenant_id="nope", default_role="viewer")
    identity.set_tenant_disabled("globex")
    with pytest.raises(Unauthorized, match="disabled"):
        identity.login_oidc(_claims(), tenant_id="globex", default_role="viewer")


def test_login_of_a_disabled_user(identity: Identity) -> None:
    user = identity.login_oidc(_claims(), tenant_id="acme", default_role="viewer")
    identity.set_user_disabled("acme", user.id)
    with pytest.raises(Unauthorized, match="is disabled"):
        identity.login_oidc(_claims(), tenant_id="acme", default_role="viewer")


# -- no secret leaks -----------------------------------------------------------------------------


def test_secrets_never_show_in_records_or_errors(identity: Identity, dev: UserRecord) -> None:
    record, plaintext = identity.create_key("acme", dev.id, "laptop")
    secret = plaintext.rsplit("_", 1)[-1]
    texts = [repr(record), str(record), record.model_dump_json(), repr(identity)]
    texts += [repr(k) for k in identity.list_keys("acme")]
    for attempt in (plaintext[:-1] + "!", plaintext + "x", plaintext[:-2] + "zz"):
        with pytest.raises(Unauthorized) as info:
            identity.authenticate(attempt)
        texts += [str(info.value), repr(info.value)]
    identity.revoke_key("acme", record.id)
    with pytest.raises(Unauthorized) as info:
        identity.authenticate(plaintext)
    texts += [str(info.value), repr(info.value)]
    for text in texts:
        assert secret not in text
        assert secret[:16] not in text
        assert record.secret_hash not in text


def test_secret_must_be_long_enough(store: Store) -> None:
    with pytest.raises(SomaError, match="at least 32"):
        Identity(store, b"short")


def test_authenticate_is_fast(identity: Identity, dev: UserRecord) -> None:
    """Every gateway request pays for this: it must stay far below a millisecond (cached)."""
    _, plaintext = identity.create_key("acme", dev.id, "laptop")
    session = identity.issue_session("acme", dev.id)
    for token in (plaintext, session):
        identity.authenticate(token)
        start = time.perf_counter()
        for _ in range(1000):
            identity.authenticate(token)
        per_call = (time.perf_counter() - start) / 1000
        assert per_call < 0.001, f"{per_call * 1e6:.0f} µs per call"
