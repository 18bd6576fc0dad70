"""What the three HTTP adapters share: the reference marker and payload conversions."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from providers_app import metadata
from providers_app.adapters.base import Adapter, LookupIncomplete, PermanentError, ProviderError, TransientError
from providers_app.http import HttpResult, ProviderHttp

logger = logging.getLogger(__name__)

# Every task we create carries this line in its description, so a create whose first attempt
# ended with an unknown outcome can find the task it may have made (docs/reliability.md,
# "Idempotency at the provider"). The key is the outbox event's idempotency key.
MARKER_PREFIX = "archangel-ref: "
# Metadata reads (collaborators, projects) stop after this many pages.
MAX_LOOKUP_PAGES = 10
# A reference lookup reads the tasks changed since the event's first claim, less this much:
# the provider stamps dates by its own clock, which may run behind ours.
LOOKUP_CLOCK_SKEW = timedelta(minutes=10)
# Without a first claim (an event claimed before first_claimed_at existed): this far back.
LOOKUP_FALLBACK_WINDOW = timedelta(days=14)


def marker(idempotency_key: str) -> str:
    return f"{MARKER_PREFIX}{idempotency_key}"


def with_marker(description: str | None, idempotency_key: str) -> str:
    """The description followed by the marker on a line of its own."""
    description = (description or "").rstrip()
    return f"{description}\n\n{marker(idempotency_key)}" if description else marker(idempotency_key)


def has_marker(text: Any, idempotency_key: str) -> bool:
    if not isinstance(text, str) or MARKER_PREFIX not in text:
        return False
    wanted = marker(idempotency_key)
    # Line by line, so key "…:v1:create" never matches "…:v1:create-2"; providers may add
    # markup around lines (ClickUp's markdown_description), hence strip().
    return any(line.strip().strip("*_`") == wanted for line in text.splitlines())


def lookup_since(changed_since: datetime | None) -> datetime:
    """The oldest change a reference lookup must read (see LOOKUP_CLOCK_SKEW)."""
    if changed_since is None:
        return datetime.now(UTC) - LOOKUP_FALLBACK_WINDOW
    return changed_since - LOOKUP_CLOCK_SKEW


class LookupRequests:
    """Counts the requests of one reference lookup.

    The first request was paid for by the gateway's reservation; each later one is charged
    (``charge`` raises RateLimited when the budget is spent: the event waits and the lookup
    starts again later). The cap (``OUTBOX_REFERENCE_LOOKUP_MAX_PAGES``) keeps one lookup
    below a rate window, so it can finish once budget returns; past it the lookup gives up
    with LookupIncomplete instead of answering "not there" without having looked.
    """

    def __init__(self, idempotency_key: str, what: str, charge: Callable[[], None] | None) -> None:
        self.idempotency_key = idempotency_key
        self.what = what
        self.charge = charge
        self.limit = settings.OUTBOX_REFERENCE_LOOKUP_MAX_PAGES
        self.sent = 0

    def next(self) -> None:
        if self.sent >= self.limit:
            raise LookupIncomplete(
                f"Could not rule out that an earlier attempt created this task: more than {self.limit} "
                f"pages of {self.what} changed since its first attempt. Look there for a task whose "
                f"description ends with '{marker(self.idempotency_key)}'. If there is one, adopt it "
                "(POST /api/outbox/{id}/adopt with its id); if there is none, requeue this event with "
                '{"assume_not_created": true}.'
            )
        if self.sent and self.charge is not None:
            self.charge()
        self.sent += 1


def strip_marker(text: str) -> str:
    lines = [line for line in text.splitlines() if not line.strip().startswith(MARKER_PREFIX)]
    return "\n".join(lines).rstrip()


def deadline_utc(payload: dict[str, Any]) -> datetime | None:
    """The payload's deadline as an aware UTC datetime (a naive one is taken as UTC)."""
    raw = payload.get("deadline")
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def effort_minutes(payload: dict[str, Any]) -> int | None:
    hours = payload.get("effort_hours")
    if hours is None or isinstance(hours, bool):
        return None
    try:
        minutes = float(hours) * 60
    except (TypeError, ValueError):
        return None
    if not math.isfinite(minutes) or minutes <= 0:
        return None
    return max(1, round(minutes))


def priority(payload: dict[str, Any]) -> int | None:
    """Our priority, 1 low … 4 urgent, or None when missing or out of range."""
    value = payload.get("priority")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
        return None
    return value


def as_dict(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class HttpAdapter(Adapter):
    """An adapter whose provider speaks HTTP through :class:`ProviderHttp`."""

    http: ProviderHttp

    def __init__(self, config: dict[str, Any], *, account_key: str = "") -> None:
        self.config = dict(config)
        self.account_key = account_key or self.type

    def _metadata(self, kind: str, scope: str, fetch: Callable[[], Any]) -> Any:
        """Cached provider metadata of this account (providers_app/metadata.py)."""
        return metadata.get(self.account_key, kind, scope, fetch)

    def _send_fresh(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        body: dict[str, Any],
        stale: Callable[[ProviderError], bool],
        refresh: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> HttpResult:
        """Send a write; when the provider refuses it with a 4xx that says a value we took from
        metadata (or configuration) is stale, drop the cached metadata, rebuild the body with
        fresh metadata (``refresh``) and send it once more. A 4xx had no effect, so sending
        again is safe; if fresh metadata changes nothing, the original error stands."""
        try:
            return self.http.request(method, path, operation=operation, json_body=body)
        except PermanentError as exc:
            if not stale(exc):
                raise
            metadata.invalidate(self.account_key)
            fixed = refresh(dict(body))
            if fixed == body:
                raise
            logger.warning(
                "%s %s refused a stale value (%s); retrying once with fresh metadata", self.type, operation, exc
            )
            return self.http.request(method, path, operation=operation, json_body=fixed)

    def _created_id(self, result: HttpResult, operation: str = "create") -> str:
        """The id of the object a create answered with. A 2xx without one means we cannot
        tell what was made: retry, and look for the marker first."""
        external_id = as_dict(result.data).get("id")
        if isinstance(external_id, int) and not isinstance(external_id, bool):
            external_id = str(external_id)
        if not isinstance(external_id, str) or not external_id:
            raise TransientError(
                f"{self.type} {operation} answered {result.status_code} without an id; its outcome is unknown",
                status_code=result.status_code,
                outcome_unknown=True,
            )
        return external_id
