"""Masking of secrets and personal data in text and in nested tool arguments.

Agents see credentials (in ``.env`` files, command output, pasted logs) and models repeat what
they see. Whatever Soma stores, logs or passes between agents goes through :func:`redact` first,
independent of the constitution's rules, so a badly written policy can never leak a key into the
audit trail. The patterns aim at *recognisable* secrets (vendor prefixes, PEM armour, JWT
structure, Luhn-valid card numbers, ``name=value`` assignments with a secret-sounding name):
false positives on ordinary prose, code, hashes and numbers cost more trust than they buy,
because every masked word makes a transcript harder to audit.

Masks look like ``[REDACTED:aws_access_key]``: the kind stays visible so a reader knows what was
there (and the finding can be reported) without the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

__all__ = ["SECRET_KINDS", "mask", "redact", "redact_value", "secret_key_name"]

T = TypeVar("T")

# Python's regex engine scans fast for a pattern that starts with a literal and slowly for one
# that starts with a class, a look-behind or an alternation (it then tries every position). So
# each detector starts with a literal, is skipped unless that literal occurs in the text (a
# C-level substring test), and checks the character before the match in Python. Keyword
# detectors run on the lower-cased text, which keeps them case-insensitive and literal-led.


@dataclass(frozen=True)
class _Detector:
    kind: str
    gates: tuple[str, ...]  # the detector runs only when one of these occurs in the text
    regex: re.Pattern[str]
    lower: bool = False  # match against the lower-cased text
    not_after: str = ""  # the match must not follow one of these characters
    value: bool = False  # mask only the group named "v" (the value of a name = value pair)

    @property
    def folded(self) -> re.Pattern[str]:
        """The case-insensitive form, for non-ASCII text that cannot be lower-cased in place."""
        return _folded(self.regex.pattern)


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TOKEN_CHARS = _ALNUM + "_-"
_ASSIGNED = (
    r"(?![a-z0-9])[\"']?[ \t]*[:=][ \t]*[\"']?"
    # The value must not look like code (a call, an index, an attribute, a ${VAR} reference or
    # a <placeholder>), which keeps `password = get_password()` readable.
    r"(?P<v>[^\s'\"()\[\]{}<>,;`$]{8,})(?![(\[.\w])"
)
_KEYWORDS = {
    "api": r"api[_-]?key",
    "apikey": r"apikey",
    "secret": r"secret",
    "token": r"token",
    "passw": r"passw(?:or)?d",
    "pwd": r"pwd",
    "credential": r"credentials?",
    "auth": r"auth[_-]?key",
    "access": r"access[_-]?key",
    "private": r"private[_-]?key",
}

_DETECTORS: tuple[_Detector, ...] = (
    _Detector(
        "private_key",
        ("-----BEGIN",),
        re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----"
            # An unterminated block (a truncated paste) is masked to the end of the text.
            r"(?:[\s\S]*?-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----|[\s\S]*\Z)"
        ),
    ),
    _Detector(
        "anthropic_key", ("sk-ant-",), re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}"), False, _TOKEN_CHARS
    ),
    # Real OpenAI keys mix letters and digits; requiring a digit keeps slugs such as
    # "sk-learn-style-names-here" readable.
    _Detector(
        "openai_key",
        ("sk-",),
        re.compile(r"sk-(?=[A-Za-z0-9_-]{0,200}\d)[A-Za-z0-9_-]{20,}"),
        False,
        _TOKEN_CHARS,
    ),
    _Detector(
        "aws_access_key",
        ("AKIA", "ASIA", "ABIA", "ACCA"),
        re.compile(r"A(?:KIA|SIA|BIA|CCA)[0-9A-Z]{16}(?![A-Z0-9])"),
        False,
        _ALNUM,
    ),
    _Detector(
        "aws_secret_key",
        ("secret",),
        re.compile(
            r"secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?(?P<v>[a-z0-9/+]{40})(?![a-z0-9/+])"
        ),
        True,
        value=True,
    ),
    _Detector(
        "github_token", ("gh",), re.compile(r"gh[pousr]_[A-Za-z0-9]{36,}"), False, _ALNUM + "_"
    ),
    _Detector(
        "github_token",
        ("github_pat_",),
        re.compile(r"github_pat_[A-Za-z0-9_]{22,}"),
        False,
        _ALNUM + "_",
    ),
    _Detector(
        "slack_token", ("xox",), re.compile(r"xox[abprs]-[A-Za-z0-9-]{10,}"), False, _ALNUM + "_"
    ),
    _Detector(
        "jwt",
        ("eyJ",),
        re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
        False,
        _TOKEN_CHARS,
    ),
    _Detector(
        "bearer_token",
        ("bearer",),
        re.compile(r"bearer\s+(?P<v>[a-z0-9._~+/-]{16,}=*)"),
        True,
        value=True,
    ),
    *(
        _Detector("secret_assignment", (gate,), re.compile(word + _ASSIGNED), True, value=True)
        for gate, word in _KEYWORDS.items()
    ),
)


def _gate_table(lower: bool) -> dict[str, tuple[int, ...]]:
    table: dict[str, list[int]] = {}
    for index, detector in enumerate(_DETECTORS):
        if detector.lower == lower:
            for gate in detector.gates:
                table.setdefault(gate, []).append(index)
    return {gate: tuple(indexes) for gate, indexes in table.items()}


# Which detectors each literal gate enables; a detector's index is also its priority.
_CASE_GATES = _gate_table(lower=False)
_LOWER_GATES = _gate_table(lower=True)

SECRET_KINDS: tuple[str, ...] = (
    *dict.fromkeys(d.kind for d in _DETECTORS),
    "email",
    "credit_card",
)
"""Every kind a mask can name."""

_EMAIL_DOMAIN = re.compile(r"@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?![A-Za-z0-9_:@-])")
_EMAIL_LOCAL = frozenset(_ALNUM + "._%+-")
_CARD = re.compile(r"\d(?:[ -]?\d){12,18}(?![\d-]|\.\d)")
_DIGITS = "0123456789"

# A standalone 40-character base64 word: an AWS secret access key when it travels next to an
# access key id. Alone it is far too common (hashes, ids) to mask.
_AWS_SECRET_NEAR_KEY = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_HEX = re.compile(r"[0-9a-fA-F]{40}")

_SECRET_KEY_NAME = re.compile(
    r"(?i)(?:[A-Za-z0-9]*[_.-])?(?:api[_-]?key|apikey|secret|secret[_-]?key|token|access[_-]?token"
    r"|auth[_-]?token|refresh[_-]?token|password|passwd|pwd|credentials?|private[_-]?key"
    r"|access[_-]?key|client[_-]?secret)"
)
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[0689]|6(?:011|5|4[4-9]|2)")

# (start, end, kind): the span to replace by the mask of kind.
_Span = tuple[int, int, str]


@lru_cache(maxsize=64)
def _folded(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def mask(kind: str) -> str:
    """The text that replaces a secret of ``kind``."""
    return f"[REDACTED:{kind}]"


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _is_card(candidate: str) -> bool:
    digits = candidate.replace(" ", "").replace("-", "")
    return (
        13 <= len(digits) <= 19
        and _CARD_PREFIX.match(digits) is not None
        and len(set(digits)) > 1
        and _luhn_ok(digits)
    )


def _looks_like_aws_secret(word: str) -> bool:
    return (
        _HEX.fullmatch(word) is None  # a git sha or a hash digest
        and any(c.isdigit() for c in word)
        and any(c.islower() for c in word)
        and any(c.isupper() for c in word)
    )


def _find(text: str) -> list[_Span]:
    """Every secret span in ``text``, overlapping ones included."""
    spans: list[_Span] = []
    # Lower-casing keeps indexes only for ASCII; other text is searched case-insensitively.
    ascii_text = text.isascii()
    lower = text.lower() if ascii_text else text
    chosen: set[int] = set()
    for gate in _CASE_GATES:
        if gate in text:
            chosen.update(_CASE_GATES[gate])
    for gate in _LOWER_GATES:
        if gate in lower or not ascii_text:
            chosen.update(_LOWER_GATES[gate])
    for index in sorted(chosen):
        detector = _DETECTORS[index]
        if detector.lower:
            haystack = lower
            regex = detector.regex if ascii_text else detector.folded
        else:
            haystack, regex = text, detector.regex
        for match in regex.finditer(haystack):
            start = match.start()
            if start and text[start - 1] in detector.not_after:
                continue
            if detector.value:
                spans.append((match.start("v"), match.end("v"), detector.kind))
            else:
                spans.append((start, match.end(), detector.kind))
    if "@" in text:
        spans.extend(_emails(text))
    # Counting digits first skips the (slow, class-led) card scan for text with few digits.
    if len(text) > 4096 or sum(map(text.count, _DIGITS)) >= 13:
        for match in _CARD.finditer(text):
            start = match.start()
            if start and text[start - 1] in "0123456789.-":
                continue
            if _is_card(match.group()):
                spans.append((start, match.end(), "credit_card"))
    return spans


def _emails(text: str) -> list[_Span]:
    spans: list[_Span] = []
    for match in _EMAIL_DOMAIN.finditer(text):
        at = match.start()
        start = at
        while start > 0 and text[start - 1] in _EMAIL_LOCAL and at - start < 65:
            start -= 1
        if start == at or at - start > 64 or (start > 0 and text[start - 1] in _EMAIL_LOCAL):
            continue
        spans.append((start, match.end(), "email"))
    return spans


def redact(text: str) -> tuple[str, list[str]]:
    """Mask every recognised secret in ``text``.

    Returns the masked text and the kinds found (each once, in order of first appearance); the
    text comes back unchanged (the same object) when nothing was found.
    """
    if len(text) < 6:
        return text, []
    spans = _find(text)
    if not spans:
        return text, []
    # Earliest first; at the same start the higher-priority detector (found first) wins,
    # because sort is stable. Overlapping later spans are dropped.
    spans.sort(key=lambda span: span[0])
    parts: list[str] = []
    found: list[str] = []
    position = 0
    for start, end, kind in spans:
        if start < position:
            continue
        parts.append(text[position:start])
        parts.append(mask(kind))
        position = end
        if kind not in found:
            found.append(kind)
    parts.append(text[position:])
    masked = "".join(parts)
    if "aws_access_key" in found:
        before = masked
        masked = _AWS_SECRET_NEAR_KEY.sub(
            lambda m: mask("aws_secret_key") if _looks_like_aws_secret(m.group()) else m.group(),
            masked,
        )
        if masked != before and "aws_secret_key" not in found:
            found.append("aws_secret_key")
    return masked, found


def secret_key_name(name: str) -> bool:
    """Whether a mapping key names a secret (``password``, ``OPENAI_API_KEY``, ``token``...).

    Used for structured arguments, where the value of such a key is a secret however it looks.
    """
    return _SECRET_KEY_NAME.fullmatch(name) is not None


def redact_value(value: T) -> tuple[T, list[str]]:
    """Mask secrets in every string inside nested dicts, lists and tuples.

    String values under a secret-sounding key (see :func:`secret_key_name`) are masked whole
    when they are at least 8 characters long. Containers are copied only where something was
    masked, so an unchanged value comes back as the same object (cheap, and callers can test
    ``result is value``).
    """
    found: list[str] = []
    result = _walk(value, None, found)
    return result, found


def _walk(value: T, key: str | None, found: list[str]) -> T:
    if isinstance(value, str):
        if key is not None and len(value) >= 8 and secret_key_name(key):
            if "secret_assignment" not in found:
                found.append("secret_assignment")
            return mask("secret_assignment")  # type: ignore[return-value]
        masked, kinds = redact(value)
        for kind in kinds:
            if kind not in found:
                found.append(kind)
        return masked  # type: ignore[return-value]
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for k, v in value.items():
            new = _walk(v, k if isinstance(k, str) else None, found)
            changed = changed or new is not v
            out[k] = new
        return out if changed else value  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        items = [_walk(v, key, found) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return type(value)(items) if isinstance(value, tuple) else items  # type: ignore[return-value]
    return value


def map_strings(value: T, func: Callable[[str], str]) -> T:
    """Apply ``func`` to every string inside nested dicts, lists and tuples (copying as needed)."""
    if isinstance(value, str):
        return func(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {k: map_strings(v, func) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        items = [map_strings(v, func) for v in value]
        return type(value)(items) if isinstance(value, tuple) else items  # type: ignore[return-value]
    return value
