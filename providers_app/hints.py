"""How long a provider asked us to wait: parsing the hints of a 429 answer.

Pure module. Every parser returns seconds from now (a float) or None, and never
raises: a hint is advice, and junk in a header must not turn a retryable 429 into
a crash. Results are bounded to [0, MAX_HINT_SECONDS] so a bogus date far in the
future cannot park a provider's events for a year.

The hints each provider sends (docs/provider-apis.md):

- ``Retry-After``: seconds or an HTTP date (RFC 9110 §10.2.3). Todoist sends
  seconds (§3.6); docs/reliability.md asks to parse both forms and cap them.
- ClickUp: ``X-RateLimit-Reset`` is a Unix timestamp in epoch seconds and
  ``X-RateLimit-Remaining`` the requests left (§1.6). Some clients see it in
  milliseconds, so a value that only makes sense as milliseconds is read as such.
- Todoist: ``error_extra.retry_after`` (seconds) in the JSON body of the 429 (§3.6).
- Trello sends no documented hint (§2.6); the adapter falls back to its window (10 s).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

# An hour: longer than any documented window (Todoist's is 15 minutes).
MAX_HINT_SECONDS = 3600.0


def _bounded(seconds: float | None) -> float | None:
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_HINT_SECONDS)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str | bytes):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        text = text.strip()
        if not text or len(text) > 32:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def parse_retry_after(value: Any, *, now: float | None = None) -> float | None:
    """``Retry-After``: delay-seconds or an HTTP date; seconds from ``now``."""
    number = _number(value)
    if number is not None:
        return _bounded(number) if number >= 0 else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:  # RFC 9110 dates are always GMT; a naive one is junk
        return None
    now = time.time() if now is None else now
    return _bounded(when.timestamp() - now)


def parse_reset_epoch(value: Any, *, now: float | None = None) -> float | None:
    """ClickUp ``X-RateLimit-Reset``: when the window reopens, in epoch seconds (or milliseconds)."""
    number = _number(value)
    if number is None or number <= 0:
        return None
    if number > 1e11:  # later than year 5138 in seconds: it must be milliseconds
        number /= 1000.0
    now = time.time() if now is None else now
    return _bounded(number - now)


def todoist_body_retry_after(body: Any) -> float | None:
    """Todoist's ``{"error_extra": {"retry_after": 66}}``."""
    if not isinstance(body, Mapping):
        return None
    extra = body.get("error_extra")
    if not isinstance(extra, Mapping):
        return None
    number = _number(extra.get("retry_after"))
    return _bounded(number) if number is not None and number >= 0 else None


def retry_after_from(headers: Mapping[str, Any] | None, body: Any = None, *, now: float | None = None) -> float | None:
    """The longest wait any hint of a 429 asks for, or None when it carries none.

    The longest, not the first: obeying the most cautious hint costs a few seconds,
    ignoring it costs another 429 (and Trello blocks a key that collects too many).
    """
    now = time.time() if now is None else now
    headers = headers or {}

    def header(name: str) -> Any:
        # requests' headers are case-insensitive; a plain dict in tests may not be.
        value = headers.get(name)
        if value is None:
            lowered = name.lower()
            for key, item in headers.items():
                if str(key).lower() == lowered:
                    return item
        return value

    hints = [
        parse_retry_after(header("Retry-After"), now=now),
        parse_reset_epoch(header("X-RateLimit-Reset"), now=now),
        todoist_body_retry_after(body),
    ]
    found = [hint for hint in hints if hint is not None]
    return max(found) if found else None
