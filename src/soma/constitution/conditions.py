"""The ``when`` conditions of a rule, compiled once into predicates over an action.

Conditions are a closed vocabulary rather than an expression language: each key reads one
well-defined part of an action (the shell command, the path arguments, the URL hosts...), so a
policy author cannot write something the engine evaluates slowly or differently from what the
docs say, and an unknown key is a compile-time error with a did-you-mean hint instead of a
silently ignored condition. All conditions of a rule must hold (they are ANDed); a list value
for a pattern condition means "any of these".
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from soma.constitution.types import Action

__all__ = [
    "ARGUMENT_CONDITIONS",
    "CONDITION_KEYS",
    "CompiledCondition",
    "ConditionSyntaxError",
    "Facts",
    "compile_condition",
    "glob_regex",
    "glob_test",
]


class ConditionSyntaxError(ValueError):
    """A condition's value is malformed; the engine adds the rule and layer to the message."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class Facts:
    """The parts of one action that conditions read, each computed at most once per check.

    Several rules usually test the same action, so the paths, hosts, amount and rendered
    argument text are derived lazily and shared. (Plain attributes rather than
    ``functools.cached_property``, which takes a lock on every access before Python 3.12.)
    """

    __slots__ = ("_amount", "_hosts", "_paths", "_text", "action", "arguments", "command")

    def __init__(self, action: Action) -> None:
        self.action = action
        arguments = action.arguments
        self.arguments: Mapping[str, Any] = arguments
        # The shell command (``command``) or, for python.run, the code (``code``).
        command = arguments.get("command") if arguments else None
        if not isinstance(command, str) and arguments:
            command = arguments.get("code")
        self.command: str | None = command if isinstance(command, str) else None
        self._paths: tuple[str, ...] | None = None
        self._hosts: tuple[str, ...] | None = None
        self._amount: float | bool | None = False  # False: not computed yet
        self._text: str | None = None

    @property
    def paths(self) -> tuple[str, ...]:
        """Arguments named ``path``/``paths`` or ending in ``_path``/``_paths``."""
        if self._paths is None:
            self._paths = _named_strings(self.arguments, ("path", "paths"), ("_path", "_paths"))
        return self._paths

    @property
    def hosts(self) -> tuple[str, ...]:
        """Lower-cased hosts of arguments named ``url``/``urls`` or ending in ``_url``."""
        if self._hosts is None:
            urls = _named_strings(self.arguments, ("url", "urls"), ("_url", "_urls"))
            self._hosts = tuple(host for host in map(_host_of, urls) if host is not None)
        return self._hosts

    @property
    def amount(self) -> float | None:
        """The argument ``amount`` as a number (numeric strings too), or None."""
        if self._amount is False:
            self._amount = _number(self.arguments.get("amount"))
        assert not isinstance(self._amount, bool)
        return self._amount

    @property
    def text(self) -> str:
        """What ``text_matches`` searches: the action's text, then one ``name: value`` line per
        argument (nested values as JSON), so a pattern can anchor on argument names."""
        if self._text is None:
            parts: list[str] = []
            if self.action.text:
                parts.append(self.action.text)
            for name, value in self.arguments.items():
                parts.append(f"{name}: {stringify(value)}")
            self._text = "\n".join(parts)
        return self._text


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", "").strip())
        except ValueError:
            return None
    return None


def stringify(value: Any) -> str:
    """An argument as text: strings as they are, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _named_strings(
    arguments: Mapping[str, Any], names: tuple[str, ...], suffixes: tuple[str, ...]
) -> tuple[str, ...]:
    found: list[str] = []
    for name, value in arguments.items():
        if name in names or name.endswith(suffixes):
            if isinstance(value, str):
                found.append(value)
            elif isinstance(value, list | tuple):
                found.extend(v for v in value if isinstance(v, str))
    return tuple(found)


def _host_of(url: str) -> str | None:
    text = url.strip()
    if "://" not in text and not text.startswith("//"):
        text = "//" + text  # "example.com/x" has no scheme; urlsplit needs one to see a host
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() if host else None


def path_outside_workspace(path: str) -> bool:
    """Absolute, home-relative or climbing with ``..``: the path may leave the workspace."""
    text = path.replace("\\", "/")
    if text.startswith(("/", "~")) or re.match(r"[A-Za-z]:", text):
        return True
    return ".." in text.split("/")


# --- compilation ----------------------------------------------------------------------------


def glob_regex(patterns: str | list[str] | tuple[str, ...]) -> re.Pattern[str]:
    """One regex matching a whole string against any of the shell-style glob ``patterns``.

    ``*`` matches any characters including ``/`` and newlines (commands span lines).
    """
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in items))


def glob_test(patterns: str | list[str]) -> Callable[[str], bool]:
    """A fast whole-string test for glob ``patterns``: ``*text*`` becomes a substring test and
    a pattern without wildcards an equality, which is what most command rules look like;
    anything else uses the regex from :func:`glob_regex`."""
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    if len(items) == 1:
        pattern = items[0]
        inner = pattern[1:-1]
        if len(pattern) > 2 and pattern[0] == pattern[-1] == "*" and not _has_glob(inner):
            return lambda value: inner in value
        if not _has_glob(pattern):
            return lambda value: value == pattern
    match = glob_regex(items).match
    return lambda value: match(value) is not None


def _has_glob(text: str) -> bool:
    return "*" in text or "?" in text or "[" in text


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    """One compiled ``when`` entry: its key, a predicate and a short description for
    explanations."""

    key: str
    test: Callable[[Facts], bool]
    description: str
    regexes: tuple[re.Pattern[str], ...] = ()  # text_matches: what a redact rule masks
    argument_names: tuple[str, ...] = ()  # arguments_match: what a redact rule masks


def _patterns(key: str, value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise ConditionSyntaxError(
            f"'{key}' needs a pattern or a non-empty list of patterns, not {value!r}"
        )
    return items


def _regex(key: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConditionSyntaxError(
            f"'{key}' has an invalid regular expression {pattern!r}: {exc}",
            hint="patterns use Python's re syntax; escape a literal '.' or '(' with '\\'",
        ) from None


def _command_matches(value: Any) -> CompiledCondition:
    matches = glob_test(_patterns("command_matches", value))

    def test(facts: Facts) -> bool:
        command = facts.command
        return command is not None and matches(command)

    return CompiledCondition("command_matches", test, f"command_matches {value!r}")


def _path_outside_workspace(value: Any) -> CompiledCondition:
    if not isinstance(value, bool):
        raise ConditionSyntaxError(f"'path_outside_workspace' must be true or false, not {value!r}")

    def test(facts: Facts) -> bool:
        paths = facts.paths
        outside = any(path_outside_workspace(p) for p in paths)
        return outside if value else bool(paths) and not outside

    return CompiledCondition("path_outside_workspace", test, f"path_outside_workspace {value}")


def _path_matches(value: Any) -> CompiledCondition:
    matches = glob_test(_patterns("path_matches", value))

    def test(facts: Facts) -> bool:
        for path in facts.paths:
            if matches(path) or matches(posixpath.normpath(path.replace("\\", "/"))):
                return True
        return False

    return CompiledCondition("path_matches", test, f"path_matches {value!r}")


def _hosts(key: str, value: Any) -> re.Pattern[str]:
    return glob_regex([p.lower() for p in _patterns(key, value)])


def _url_host_in(value: Any) -> CompiledCondition:
    regex = _hosts("url_host_in", value)

    def test(facts: Facts) -> bool:
        return any(regex.match(host) for host in facts.hosts)

    return CompiledCondition("url_host_in", test, f"url_host_in {value!r}")


def _url_host_not_in(value: Any) -> CompiledCondition:
    regex = _hosts("url_host_not_in", value)

    def test(facts: Facts) -> bool:
        return any(regex.match(host) is None for host in facts.hosts)

    return CompiledCondition("url_host_not_in", test, f"url_host_not_in {value!r}")


def _amount_over(value: Any) -> CompiledCondition:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConditionSyntaxError(f"'amount_over' must be a number, not {value!r}")
    limit = float(value)

    def test(facts: Facts) -> bool:
        amount = facts.amount
        return amount is not None and amount > limit

    return CompiledCondition("amount_over", test, f"amount_over {value}")


def _text_matches(value: Any) -> CompiledCondition:
    # Kept apart rather than joined with '|', so each may carry its own global flags ((?i)).
    regexes = tuple(_regex("text_matches", p) for p in _patterns("text_matches", value))

    if len(regexes) == 1:
        search = regexes[0].search

        def test(facts: Facts) -> bool:
            return search(facts.text) is not None

    else:

        def test(facts: Facts) -> bool:
            text = facts.text
            return any(regex.search(text) is not None for regex in regexes)

    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return CompiledCondition("text_matches", test, f"text_matches {shown}", regexes=regexes)


def _arguments_match(value: Any) -> CompiledCondition:
    if not isinstance(value, dict) or not value:
        raise ConditionSyntaxError(
            f"'arguments_match' needs a mapping of argument name to regex, not {value!r}"
        )
    checks: list[tuple[str, re.Pattern[str]]] = []
    for name, pattern in value.items():
        if not isinstance(pattern, str):
            raise ConditionSyntaxError(
                f"'arguments_match.{name}' must be a regular expression, not {pattern!r}"
            )
        checks.append((str(name), _regex(f"arguments_match.{name}", pattern)))

    def test(facts: Facts) -> bool:
        arguments = facts.arguments
        for name, regex in checks:
            if name not in arguments or regex.search(stringify(arguments[name])) is None:
                return False
        return True

    return CompiledCondition(
        "arguments_match",
        test,
        f"arguments_match {value!r}",
        argument_names=tuple(name for name, _ in checks),
    )


_COMPILERS: dict[str, Callable[[Any], CompiledCondition]] = {
    "command_matches": _command_matches,
    "path_outside_workspace": _path_outside_workspace,
    "path_matches": _path_matches,
    "url_host_in": _url_host_in,
    "url_host_not_in": _url_host_not_in,
    "amount_over": _amount_over,
    "text_matches": _text_matches,
    "arguments_match": _arguments_match,
}

CONDITION_KEYS: tuple[str, ...] = tuple(_COMPILERS)
"""Every key a rule's ``when`` may use."""

ARGUMENT_CONDITIONS = frozenset(CONDITION_KEYS) - {"text_matches"}
"""Conditions that read tool arguments, so only tool-call rules may use them."""


def compile_condition(key: str, value: Any) -> CompiledCondition:
    """Compile one ``when`` entry, or raise :class:`ConditionSyntaxError` (with a did-you-mean
    hint for an unknown key)."""
    compiler = _COMPILERS.get(key)
    if compiler is None:
        close = difflib.get_close_matches(key, CONDITION_KEYS, n=1)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else "known conditions: " + ", ".join(CONDITION_KEYS)
        )
        raise ConditionSyntaxError(f"unknown condition '{key}'", hint=hint)
    return compiler(value)
