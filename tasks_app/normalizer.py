"""Validate and normalize raw task input before anything is stored.

Pure functions, no ORM: the API (single and bulk), webhooks and imports all pass
through :func:`normalize_task`, so one set of rules decides what a task is.

- Text: surrounding whitespace trimmed, inner runs collapsed (the description
  keeps its line breaks, at most one blank line in a row), control characters
  dropped.
- Deadlines: ISO 8601 date-times or dates. A naive date-time is read as UTC; a
  bare date means the end of that day (23:59:59 UTC). Stored in UTC.
- Priority: 1 low, 2 normal (default), 3 high, 4 urgent; the names are accepted too.
- Effort: hours, 0 to 1,000, two decimals. When missing it is estimated
  (:func:`estimate_effort`) and flagged as estimated.
- Fingerprint: sha256 of the normalized title, the client id and the deadline's
  UTC day; an open task with the same fingerprint is a duplicate.
"""

import datetime as dt
import hashlib
import math
import re
import unicodedata
import uuid
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime

from archangel.errors import InvalidInput
from tasks_app.status import TaskStatus

TITLE_MAX = 500  # Todoist's limit for `content`, the tightest of the three (docs/provider-apis.md §3.3)
DESCRIPTION_MAX = 16_383  # Todoist's limit for `description` (docs/provider-apis.md §3.3)
EFFORT_MAX = Decimal("1000")
PRIORITY_NAMES = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
DEADLINE_MIN = dt.datetime(1970, 1, 2, tzinfo=dt.UTC)
DEADLINE_MAX = dt.datetime(2999, 12, 31, tzinfo=dt.UTC)

# Fields a client may send; read-only fields of the task's JSON are accepted and ignored so
# that a GET → PUT round trip works, anything else is an error (typos must not pass silently).
WRITABLE = ("title", "description", "status", "priority", "effort_hours", "deadline", "assignee", "client", "provider")
READ_ONLY = frozenset(
    {
        "id",
        "external_id",
        "score",
        "score_breakdown",
        "routing",
        "effort_estimated",
        "source",
        "version",
        "last_progress_at",
        "completed_at",
        "created_at",
        "updated_at",
    }
)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_PUNCT = re.compile(r"[^\w\s]")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


class NormalizationError(InvalidInput):
    """Invalid task input; ``fields`` maps each field to its messages."""


_SURROGATES = "Contains characters that are not valid Unicode text (unpaired surrogates)."


def _encodable(value: str) -> bool:
    """JSON can carry lone surrogates (\\ud800) that no database or provider accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_line(value: str) -> str:
    """One line of text: control characters dropped, whitespace collapsed and trimmed."""
    value = _CONTROL.sub("", value).replace("\r", " ").replace("\n", " ")
    return _SPACES.sub(" ", value).strip()


def clean_text(value: str) -> str:
    """Multi-line text: each line cleaned, trailing blank lines trimmed, at most one blank line in a row."""
    value = _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [_SPACES.sub(" ", line).strip() for line in value.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def parse_deadline(value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("Must be an ISO 8601 date-time or date string.")
    text = value.strip()
    if _DATE_ONLY.fullmatch(text):
        try:
            day = parse_date(text)
        except ValueError:
            raise ValueError("Not a valid date.") from None
        parsed = dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC)
    else:
        try:
            parsed = parse_datetime(text)
        except ValueError:
            raise ValueError("Not a valid date-time.") from None
        if parsed is None:
            raise ValueError("Must be an ISO 8601 date-time (2026-12-01T17:00:00Z) or date (2026-12-01).")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        parsed = parsed.astimezone(dt.UTC)
    except OverflowError:  # e.g. year 9999 with a negative offset
        raise ValueError("Must be between 1970 and 2999.") from None
    if not DEADLINE_MIN <= parsed <= DEADLINE_MAX:
        raise ValueError("Must be between 1970 and 2999.")
    return parsed


def parse_priority(value: Any) -> int:
    if isinstance(value, str) and value.strip().lower() in PRIORITY_NAMES:
        return PRIORITY_NAMES[value.strip().lower()]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
        raise ValueError("Must be 1 (low), 2 (normal), 3 (high) or 4 (urgent), or one of those names.")
    return value


def parse_effort(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("Must be a number of hours.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("Must be a finite number of hours.")
    try:
        hours = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("Must be a number of hours.") from None
    if not hours.is_finite():
        raise ValueError("Must be a finite number of hours.")
    if hours < 0:
        raise ValueError("Must not be negative.")
    if hours > EFFORT_MAX:
        raise ValueError(f"Must be at most {EFFORT_MAX} hours.")
    return hours.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def parse_id(value: Any) -> uuid.UUID | None:
    if value is None or value == "":
        return None
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise ValueError("Must be a UUID string.")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid UUID.") from None


def estimate_effort(*, priority: int, description: str) -> Decimal:
    """Hours a task probably takes when nobody said.

    One hour, plus a quarter of an hour per 50 words of description (longer
    descriptions describe bigger jobs), plus half an hour for high and urgent
    work (it tends to come with coordination); rounded to a quarter hour,
    between 0.5 and 8 hours (a day's work: anything larger should be split).
    """
    words = len(description.split())
    hours = 1.0 + 0.25 * (words / 50) + (0.5 if priority >= 3 else 0.0)
    hours = min(8.0, max(0.5, round(hours * 4) / 4))
    return Decimal(str(hours)).quantize(Decimal("0.01"))


def title_key(title: str) -> str:
    """The title as de-duplication sees it: case, accents' forms, punctuation and spacing ignored."""
    text = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(_PUNCT.sub(" ", text).split())


def fingerprint(*, title: str, client_id: uuid.UUID | None, deadline: dt.datetime | None) -> str:
    day = deadline.astimezone(dt.UTC).date().isoformat() if deadline else ""
    raw = "\x1f".join((title_key(title), str(client_id or ""), day))
    return hashlib.sha256(raw.encode()).hexdigest()


def normalize_task(raw: Any, *, partial: bool = False) -> dict[str, Any]:
    """Validate ``raw`` and return the normalized values of the fields it carries.

    With ``partial`` (PATCH) only the fields present are returned and none is
    required. Raises :class:`NormalizationError` naming every bad field.
    """
    if not isinstance(raw, Mapping):
        raise NormalizationError({"non_field_errors": ["Expected a JSON object."]})
    errors: dict[str, list[str]] = {}
    out: dict[str, Any] = {}

    for key in raw:
        if key not in WRITABLE and key not in READ_ONLY:
            errors[str(key)] = ["Unknown field."]

    if "title" in raw:
        value = raw["title"]
        if not isinstance(value, str):
            errors["title"] = ["Must be a string."]
        elif not _encodable(value):
            errors["title"] = [_SURROGATES]
        else:
            title = clean_line(value)
            if not title:
                errors["title"] = ["This field may not be blank."]
            elif len(title) > TITLE_MAX:
                errors["title"] = [f"Ensure this field has no more than {TITLE_MAX} characters."]
            else:
                out["title"] = title
    elif not partial:
        errors["title"] = ["This field is required."]

    if "description" in raw:
        value = raw["description"]
        if value is None:
            out["description"] = ""
        elif not isinstance(value, str):
            errors["description"] = ["Must be a string."]
        elif not _encodable(value):
            errors["description"] = [_SURROGATES]
        else:
            description = clean_text(value)
            if len(description) > DESCRIPTION_MAX:
                errors["description"] = [f"Ensure this field has no more than {DESCRIPTION_MAX} characters."]
            else:
                out["description"] = description

    if "status" in raw:
        value = raw["status"]
        if value not in TaskStatus.values:
            errors["status"] = [f"Must be one of: {', '.join(TaskStatus.values)}."]
        else:
            out["status"] = value

    for name, parser in (
        ("priority", parse_priority),
        ("effort_hours", parse_effort),
        ("deadline", parse_deadline),
        ("assignee", parse_id),
        ("client", parse_id),
        ("provider", parse_id),
    ):
        if name in raw:
            if name == "priority" and raw[name] is None:
                errors[name] = ["This field may not be null."]
                continue
            try:
                out[name] = parser(raw[name])
            except ValueError as exc:
                errors[name] = [str(exc)]

    if errors:
        raise NormalizationError(errors)
    return out
