"""The API key format: generation, parsing and secret checks."""

from __future__ import annotations

import hashlib
import re

import pytest

from soma.errors import Unauthorized
from soma.identity.keys import generate_key, hash_secret, parse_key, secret_matches


def test_generated_keys_have_the_documented_shape() -> None:
    new = generate_key()
    assert re.fullmatch(r"soma_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", new.plaintext)
    assert new.plaintext.startswith(f"soma_{new.key_id}_")
    secret = new.plaintext.removeprefix(f"soma_{new.key_id}_")
    assert new.secret_hash == hashlib.sha256(secret.encode()).hexdigest()


def test_keys_are_unique() -> None:
    assert len({generate_key().plaintext for _ in range(200)}) == 200


def test_parse_round_trips_even_with_underscores_in_the_secret() -> None:
    for _ in range(50):  # token_urlsafe often contains '_' and '-'
        new = generate_key()
        parsed = parse_key(new.plaintext)
        assert parsed.key_id == new.key_id
        assert secret_matches(parsed.secret, new.secret_hash)


def test_wrong_secret_does_not_match() -> None:
    new = generate_key()
    assert not secret_matches("x" * 43, new.secret_hash)
    assert hash_secret("a") != hash_secret("b")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "soma_",
        "soma_abc_def",
        "soma_0123456789AB_" + "a" * 43,  # upper-case key id
        "soma_0123456789ab_" + "a" * 42,  # secret too short
        "soma_0123456789ab_" + "a" * 44,  # secret too long
        "soma_0123456789ab-" + "a" * 43,  # wrong separator
        "soma_0123456789ab_" + "a" * 42 + "=",
        "sk-0123456789ab_" + "a" * 43,
    ],
)
def test_malformed_keys_are_unauthorized_without_echo(token: str) -> None:
    with pytest.raises(Unauthorized, match="malformed API key") as info:
        parse_key(token)
    if len(token) > 8:
        assert token not in str(info.value)
        assert token[-20:] not in str(info.value)


def test_reprs_never_show_the_secret() -> None:
    new = generate_key()
    secret = new.plaintext.rsplit("_", 1)[-1]
    assert new.plaintext not in repr(new)
    assert new.secret_hash not in repr(new)
    assert secret not in repr(parse_key(new.plaintext))
