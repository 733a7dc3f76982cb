"""Secret masking: every kind is found, ordinary text is left alone, and check() applies it."""

from __future__ import annotations

import pytest

from soma.constitution import SECRET_KINDS, Action, Constitution, Subject, redact, redact_value
from soma.specs.models import Constitution as Spec

# Fake values, shaped like the real thing.
SECRETS = {
    "openai_key": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv",
    "anthropic_key": "sk-ant-api03-abcDEF123ghiJKL456mnoPQR",
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "github_token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "slack_token": "xoxb-123456789012-abcdefghijkl",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0",
    "email": "jane.doe+dev@example.co.uk",
    "credit_card": "4111 1111 1111 1111",
}


@pytest.mark.parametrize(("kind", "secret"), SECRETS.items())
def test_each_secret_kind_is_masked(kind: str, secret: str) -> None:
    masked, found = redact(f"before {secret} after")
    assert masked == f"before [REDACTED:{kind}] after"
    assert found == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "OPENAI_API_KEY=abcd1234efgh5678",
        'config = {"password": "hunter2hunter2"}',
        "db_password: correct-horse-battery",
        "Token = 'zyxw9876vuts5432'",
    ],
)
def test_assigned_secrets_keep_the_name(text: str) -> None:
    masked, found = redact(text)
    assert found == ["secret_assignment"]
    assert "[REDACTED:secret_assignment]" in masked
    assert (
        masked.split("[REDACTED")[0].strip(" =:'\"{").lower().endswith(("key", "password", "token"))
    )


def test_bearer_private_key_and_aws_secret() -> None:
    masked, found = redact("Authorization: Bearer abcdefghijklmnop1234567890")
    assert masked == "Authorization: Bearer [REDACTED:bearer_token]"
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----"
    assert redact(f"key:\n{pem}\nend") == ("key:\n[REDACTED:private_key]\nend", ["private_key"])
    truncated = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA..."
    assert redact(truncated) == ("[REDACTED:private_key]", ["private_key"])
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert redact(f"aws_secret_access_key = {secret}")[1] == ["aws_secret_key"]
    masked, found = redact(f"AKIAIOSFODNN7EXAMPLE {secret}")
    assert masked == "[REDACTED:aws_access_key] [REDACTED:aws_secret_key]"
    assert found == ["aws_access_key", "aws_secret_key"]


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog.",
        "All 42 tests pass in 3.14159265358979 seconds on python 3.11.7",
        "order 1234567890123456 and epoch 1700000000000 and phone 555-123-4567",
        "card-like but not Luhn: 4111 1111 1111 1112",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "git clone git@github.com:org/repo.git",
        "password = get_password()",
        "token = os.environ['TOKEN']",
        "api_key: ${OPENAI_API_KEY}",
        "max_tokens=50000000 num_tokens: 12345678",
        "pip install scikit-learn; sk-learn-style-names-here-and-more",
        "@pytest.mark.parametrize('x', [1, 2])",
        "the secret: short",
        "ünïcödé tëxt with no secrets at all",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    masked, found = redact(text)
    assert (masked, found) == (text, [])
    assert masked is text


def test_every_kind_is_listed() -> None:
    assert set(SECRETS) | {"secret_assignment", "bearer_token", "private_key"} <= set(SECRET_KINDS)


def test_non_ascii_text_is_still_scanned() -> None:
    masked, found = redact("Schlüssel TOKEN=abcdefgh99 für jane@example.com")
    assert found == ["secret_assignment", "email"]
    assert "abcdefgh99" not in masked


def test_redact_value_walks_nested_data_and_copies_only_what_changed() -> None:
    clean = {"a": [1, "x"], "b": {"c": "plain"}}
    assert redact_value(clean) == (clean, [])
    assert redact_value(clean)[0] is clean
    value = {
        "list": ["ok", f"key {SECRETS['github_token']}"],
        "nested": {"api_key": "abcdefgh12", "n": 3},
        "tuple": ("AKIAIOSFODNN7EXAMPLE",),
    }
    masked, found = redact_value(value)
    assert masked == {
        "list": ["ok", "key [REDACTED:github_token]"],
        "nested": {"api_key": "[REDACTED:secret_assignment]", "n": 3},
        "tuple": ("[REDACTED:aws_access_key]",),
    }
    assert found == ["github_token", "secret_assignment", "aws_access_key"]
    assert value["nested"] == {"api_key": "abcdefgh12", "n": 3}  # the input is not changed


# --- through the engine -----------------------------------------------------------------------

WHO = Subject(persona="developer")


def test_check_always_masks_secrets_even_without_rules() -> None:
    engine = Constitution.compile(Spec(name="empty", version="1.0.0"))
    arguments = {"path": "a.env", "content": f"KEY={SECRETS['openai_key']}"}
    decision = engine.check(WHO, Action(kind="tool_call", tool="fs.write", arguments=arguments))
    assert decision.effect == "allow"
    assert decision.findings == ["openai_key"]
    assert decision.arguments == {"path": "a.env", "content": "KEY=[REDACTED:openai_key]"}
    assert arguments["content"].endswith(SECRETS["openai_key"])  # caller's data untouched
    output = engine.check(WHO, Action(kind="message", text=f"mail {SECRETS['email']}"))
    assert output.text == "mail [REDACTED:email]"
    assert output.findings == ["email"]


def test_redact_rules_mask_their_own_patterns_and_arguments() -> None:
    rules = [
        {"id": "hide-codenames", "effect": "redact", "reason": "x",
         "action": {"kind": "model_output"}, "when": {"text_matches": "Project [A-Z]\\w+"}},
        {"id": "hide-card-holder", "effect": "redact", "reason": "x",
         "action": {"tool": "pay"}, "when": {"arguments_match": {"holder": "."}}},
        {"id": "hide-all-notes", "effect": "redact", "reason": "x", "action": {"tool": "note"}},
    ]  # fmt: skip
    engine = Constitution.compile(
        Spec.model_validate({"name": "c", "version": "1.0.0", "rules": rules})
    )
    out = engine.check(WHO, Action(kind="model_output", text="Status of Project Falcon: green"))
    assert out.effect == "redact"
    assert out.text == "Status of [REDACTED:hide-codenames]: green"
    assert out.findings == ["rule:hide-codenames"]
    pay = engine.check(
        WHO, Action(kind="tool_call", tool="pay", arguments={"holder": "Jane", "amount": 3})
    )
    assert pay.arguments == {"holder": "[REDACTED:hide-card-holder]", "amount": 3}
    note = engine.check(WHO, Action(kind="tool_call", tool="note", arguments={"t": "hi", "n": 1}))
    assert note.arguments == {"t": "[REDACTED:hide-all-notes]", "n": 1}


def test_redaction_applies_even_when_another_effect_wins() -> None:
    rules = [
        {"id": "hide", "effect": "redact", "reason": "x", "action": {"kind": "message"},
         "when": {"text_matches": "codename \\w+"}},
        {"id": "stop", "effect": "deny", "reason": "x", "action": {"kind": "message"},
         "when": {"text_matches": "codename"}},
    ]  # fmt: skip
    engine = Constitution.compile(
        Spec.model_validate({"name": "c", "version": "1.0.0", "rules": rules})
    )
    decision = engine.check(WHO, Action(kind="message", text="the codename falcon"))
    assert decision.effect == "deny"
    assert decision.text == "the [REDACTED:hide]"


def test_default_constitution_redacts_keys_in_model_output() -> None:
    engine = Constitution.default()
    text = f"deploy with {SECRETS['aws_access_key']}"
    decision = engine.check(WHO, Action(kind="model_output", text=text))
    assert decision.effect == "redact"
    assert decision.text == "deploy with [REDACTED:aws_access_key]"
    assert "aws_access_key" in decision.findings
