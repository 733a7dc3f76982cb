"""Billing periods: calendar months in UTC, named ``YYYY-MM``."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from soma.errors import SomaError

# Years 1970-2999: wide enough for any invoice, narrow enough that every bound is a datetime.
MONTH_PATTERN = r"^(19[7-9]\d|2\d{3})-(0[1-9]|1[0-2])$"
_MONTH = re.compile(MONTH_PATTERN)


def month_of(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of a ``YYYY-MM`` month in UTC."""
    match = _MONTH.fullmatch(month)
    if match is None:
        raise SomaError(f"invalid month {month!r}", hint="write it as YYYY-MM, e.g. 2026-11")
    year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, end
