"""Structured logs: stdlib ``logging`` and ``structlog`` rendered by one structlog pipeline.

Every record, whoever logged it (Soma, uvicorn, temporalio, a library), goes through the same
processors: level, logger, ISO timestamp, the current span's ``trace_id``/``span_id`` (so a log
line leads to its trace), secret redaction, then a renderer (``SOMA_LOG_FORMAT``: ``json`` for
one JSON object per line, ``console`` for people). Redaction is the last step before rendering,
after exceptions are formatted, so a secret inside a traceback is masked as well.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from soma.settings import Settings

MASK = "***"

# Keys whose values are secrets whatever they look like. `token` only as a whole word or a
# suffix (`access_token`), so counters such as `input_tokens` or `max_tokens` stay readable.
_SECRET_KEY = re.compile(
    r"(secret|passw(or)?d|authorization|credential|cookie|api[_-]?key|private[_-]?key)"
    r"|(^|[_-])token$",
    re.IGNORECASE,
)
# Secrets recognised by their shape anywhere in a message.
_SECRET_VALUES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Soma API keys: the key id stays (it names the key, harmlessly), the secret goes.
    (re.compile(r"\b(soma_[0-9a-zA-Z]+_)[A-Za-z0-9_-]{8,}"), rf"\g<1>{MASK}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), rf"\g<1> {MASK}"),
    (
        re.compile(
            r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|authorization|"
            r"access[_-]?key|client[_-]?secret)(\"?\s*[=:]\s*\"?)([^\s\"',;&]+)"
        ),
        rf"\g<1>\g<2>{MASK}",
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), f"sk-{MASK}"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), f"gh_{MASK}"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), f"xox-{MASK}"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), f"AKIA{MASK}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), f"jwt:{MASK}"),
)
_HANDLER_MARK = "_soma_handler"


def redact_text(text: str) -> str:
    """``text`` with every secret-shaped substring masked."""
    for pattern, replacement in _SECRET_VALUES:
        text = pattern.sub(replacement, text)
    return text


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 5:
        return value
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and _SECRET_KEY.search(k) else _redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    return value


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask secrets by key name (``token``, ``password``, ``authorization``…) and by shape
    (``soma_<id>_<secret>`` keys, ``Bearer …``, provider keys) in every field."""
    for key, value in event_dict.items():
        if key.startswith("_"):
            continue
        if _SECRET_KEY.search(key) and value is not None:
            event_dict[key] = MASK
        else:
            event_dict[key] = _redact(value)
    return event_dict


def add_trace_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The current span's ids, as OpenTelemetry backends print them (hex)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Route all logging through structlog at ``settings.log_level`` to ``stream`` (stderr).

    Calling it again replaces the handler it installed before (tests, or a CLI command that
    reconfigures); handlers that others attached to the root logger are left alone.
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=stream is None and sys.stderr.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    """A structlog logger (key-value events) that renders like every other record."""
    return structlog.stdlib.get_logger(name)
