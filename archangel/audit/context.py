"""Who is acting, and writing audit entries.

The actor is found at write time from a context variable: the HTTP request
(its authenticated user, set by DRF or the admin's session), or an explicit
``acting_as(...)`` block for jobs, webhooks and commands. Writes are part of
the caller's transaction, so a rolled-back change leaves no entry.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import decimal
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from archangel.logging import MASK, log_context, mask_value

_request: contextvars.ContextVar[Any] = contextvars.ContextVar("audit_request", default=None)
_actor: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("audit_actor", default=None)


@contextlib.contextmanager
def acting_as(actor: str, source: str) -> Iterator[None]:
    """Attribute the writes inside the block to ``actor`` (e.g. ``job:outbox_drain``) via ``source``."""
    token = _actor.set((actor, source))
    try:
        yield
    finally:
        _actor.reset(token)


def push_actor(actor: str, source: str) -> contextvars.Token:
    """``acting_as`` for code that cannot use a with-block (Celery's prerun/postrun signals)."""
    return _actor.set((actor, source))


def pop_actor(token: contextvars.Token) -> None:
    _actor.reset(token)


class AuditRequestMiddleware:
    """Remembers the request so writes made while serving it name its user."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


def current_actor() -> tuple[str, str]:
    explicit = _actor.get()
    if explicit is not None:
        return explicit
    request = _request.get()
    if request is None:
        return "system", "system"
    source = "admin" if request.path.startswith("/admin/") else "api"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.get_username()}", source
    return "anonymous", source


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    return str(value)


def masked(field: str, value: Any, *, secret_fields: Iterable[str] = ()) -> Any:
    if field in secret_fields:
        return MASK if value else value
    return mask_value(field, _jsonable(value))


@dataclass(frozen=True)
class Entry:
    action: str
    object_type: str
    object_id: str
    object_repr: str = ""
    changes: dict[str, Any] | None = None


def record(entries: list[Entry]) -> None:
    """Write ``entries`` for the current actor, in one statement."""
    if not entries:
        return
    from django.db import connection

    from archangel.audit.models import AuditEntry

    actor, source = current_actor()
    request_id = str(log_context().get("request_id", ""))[:64]
    if connection.vendor == "postgresql":
        if len(entries) > 20:
            _insert_unnest(entries, actor[:150], source, request_id)
        else:
            _insert_values(entries, actor[:150], source, request_id)
        return
    rows = [
        AuditEntry(
            actor=actor[:150],
            source=source,
            action=entry.action,
            object_type=entry.object_type,
            object_id=entry.object_id,
            object_repr=entry.object_repr[:200],
            changes=entry.changes or {},
            request_id=request_id,
        )
        for entry in entries
    ]
    if len(rows) == 1:
        rows[0].save(force_insert=True)
    else:
        AuditEntry.objects.bulk_create(rows, batch_size=1000)


_COLUMNS = "at, actor, source, action, object_type, object_id, object_repr, changes, request_id"


def _insert_values(entries: list[Entry], actor: str, source: str, request_id: str) -> None:
    """A few entries (one per single create or update) as one plain INSERT: the ORM's
    ``save()`` compiled a statement for every entry, a tenth of a single create's CPU."""
    import json

    from django.db import connection
    from django.utils import timezone

    now = timezone.now()
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)"] * len(entries))
    params: list[Any] = []
    for e in entries:
        params += [
            now, actor, source, e.action, e.object_type, e.object_id, e.object_repr[:200],
            json.dumps(e.changes or {}, cls=DjangoJSONEncoder), request_id,
        ]  # fmt: skip
    from archangel.db import defer

    sql = f"INSERT INTO audit_auditentry ({_COLUMNS}) VALUES {rows}"  # noqa: S608
    if defer(sql, params):  # sent with the rest of a single create (archangel.db.one_statement)
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _insert_unnest(entries: list[Entry], actor: str, source: str, request_id: str) -> None:
    """A bulk import's entries as one INSERT of column arrays (the ORM's bulk_create spent more
    time building a statement of ~10,000 placeholders than the database spent inserting)."""
    import json

    from django.db import connection
    from django.utils import timezone

    now = timezone.now()
    from archangel.db import _server_binding_cursor

    # Server-side binding with binary arrays, as archangel.db.insert_rows does.
    sql = (
        "INSERT INTO audit_auditentry (at, actor, source, action, object_type, object_id, object_repr, changes, "
        "request_id) SELECT %s, %s, %s, *, %s FROM unnest(%b::varchar[], %b::varchar[], %b::varchar[], "
        "%b::varchar[], %b::jsonb[])"
    )
    params = [
        now,
        actor,
        source,
        request_id,
        [e.action for e in entries],
        [e.object_type for e in entries],
        [e.object_id for e in entries],
        [e.object_repr[:200] for e in entries],
        [json.dumps(e.changes or {}, cls=DjangoJSONEncoder) for e in entries],
    ]
    connection.ensure_connection()
    raw = _server_binding_cursor(connection)
    try:
        with connection.wrap_database_errors:
            raw.execute(sql, params)
    finally:
        raw.close()
