"""Each ``when`` condition, through the engine, with a matching and a non-matching action."""

from __future__ import annotations

from typing import Any

import pytest

from soma.constitution import Action, Constitution, Subject
from soma.specs.models import Constitution as Spec

WHO = Subject(persona="developer")


def effect_of(when: dict[str, Any], arguments: dict[str, Any], tool: str = "t") -> str:
    rule = {"id": "r", "effect": "deny", "reason": "test", "action": {"tool": tool}, "when": when}
    engine = Constitution.compile(
        Spec.model_validate({"name": "c", "version": "1.0.0", "rules": [rule]})
    )
    return engine.check(WHO, Action(kind="tool_call", tool=tool, arguments=arguments)).effect


@pytest.mark.parametrize(
    ("when", "arguments", "expected"),
    [
        ({"command_matches": "*rm -rf /*"}, {"command": "cd x && rm -rf /"}, "deny"),
        ({"command_matches": "*rm -rf /*"}, {"command": "rm -rf build"}, "allow"),
        ({"command_matches": ["*curl *", "*wget *"]}, {"command": "wget http://x"}, "deny"),
        ({"command_matches": "make *"}, {"command": "make lint"}, "deny"),
        ({"command_matches": "make *"}, {"command": "cmake ."}, "allow"),
        ({"command_matches": "*os.system(*"}, {"code": "import os\nos.system('ls')"}, "deny"),
        ({"command_matches": "*"}, {"other": "x"}, "allow"),
        ({"path_outside_workspace": True}, {"path": "/etc/passwd"}, "deny"),
        ({"path_outside_workspace": True}, {"path": "a/../../b"}, "deny"),
        ({"path_outside_workspace": True}, {"path": "~/.ssh/id_rsa"}, "deny"),
        ({"path_outside_workspace": True}, {"paths": ["ok.txt", "/tmp/x"]}, "deny"),
        ({"path_outside_workspace": True}, {"source_path": "..\\x"}, "deny"),
        ({"path_outside_workspace": True}, {"path": "src/a..b.py"}, "allow"),
        ({"path_outside_workspace": False}, {"path": "src/a.py"}, "deny"),
        ({"path_outside_workspace": False}, {"path": "/abs"}, "allow"),
        ({"path_matches": "secrets/*"}, {"path": "secrets/key.pem"}, "deny"),
        ({"path_matches": "secrets/*"}, {"path": "./secrets/key.pem"}, "deny"),
        ({"path_matches": ["*.pem", "*.key"]}, {"paths": ["a.txt", "b.key"]}, "deny"),
        ({"path_matches": "secrets/*"}, {"path": "src/secrets.py"}, "allow"),
        ({"url_host_in": ["evil.test", "*.evil.test"]}, {"url": "https://a.evil.test/x"}, "deny"),
        ({"url_host_in": ["evil.test"]}, {"url": "https://EVIL.test:8443/"}, "deny"),
        ({"url_host_in": ["evil.test"]}, {"url": "https://good.test/"}, "allow"),
        ({"url_host_not_in": ["example.com"]}, {"url": "https://other.org/"}, "deny"),
        ({"url_host_not_in": ["example.com"]}, {"url": "example.com/path"}, "allow"),
        (
            {"url_host_not_in": ["example.com"]},
            {"urls": ["https://example.com", "http://x.io"]},
            "deny",
        ),
        ({"url_host_not_in": ["example.com"]}, {"other": "https://x.io"}, "allow"),
        ({"amount_over": 100}, {"amount": 250}, "deny"),
        ({"amount_over": 100}, {"amount": "1,000.50"}, "deny"),
        ({"amount_over": 100}, {"amount": 100}, "allow"),
        ({"amount_over": 100}, {"amount": "lots"}, "allow"),
        ({"amount_over": 100}, {"amount": True}, "allow"),
        ({"amount_over": 100}, {}, "allow"),
        ({"text_matches": "(?i)drop table"}, {"sql": "DROP TABLE users"}, "deny"),
        ({"text_matches": "^sql: select"}, {"sql": "select 1"}, "deny"),
        ({"text_matches": "drop table"}, {"sql": "select 1"}, "allow"),
        ({"text_matches": "prod"}, {"config": {"env": "prod"}}, "deny"),
        ({"arguments_match": {"branch": "^(main|master)$"}}, {"branch": "main"}, "deny"),
        ({"arguments_match": {"branch": "^(main|master)$"}}, {"branch": "feature"}, "allow"),
        ({"arguments_match": {"branch": "^main$"}}, {}, "allow"),
        ({"arguments_match": {"force": "true"}}, {"force": True}, "deny"),
        ({"arguments_match": {"a": "1", "b": "2"}}, {"a": 1, "b": 3}, "allow"),
        ({"amount_over": 10, "arguments_match": {"to": "^x"}}, {"amount": 11, "to": "xy"}, "deny"),
        ({"amount_over": 10, "arguments_match": {"to": "^x"}}, {"amount": 11, "to": "y"}, "allow"),
    ],
)
def test_condition(when: dict[str, Any], arguments: dict[str, Any], expected: str) -> None:
    assert effect_of(when, arguments) == expected


def test_text_matches_reads_model_output_and_messages() -> None:
    rules = [
        {"id": "o", "effect": "deny", "reason": "x", "action": {"kind": "model_output"},
         "when": {"text_matches": "forbidden"}},
        {"id": "m", "effect": "deny", "reason": "x", "action": {"kind": "message"},
         "when": {"text_matches": ["(?i)secret plan", "launch code"]}},
    ]  # fmt: skip
    engine = Constitution.compile(
        Spec.model_validate({"name": "c", "version": "1.0.0", "rules": rules})
    )
    assert engine.check(WHO, Action(kind="model_output", text="a forbidden word")).effect == "deny"
    assert engine.check(WHO, Action(kind="model_output", text="fine")).effect == "allow"
    assert engine.check(WHO, Action(kind="message", text="The SECRET PLAN")).effect == "deny"
    assert engine.check(WHO, Action(kind="message", text="the launch code")).effect == "deny"
