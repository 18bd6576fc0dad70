"""Writing outbox events. Call these inside the transaction that makes the change."""

import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from archangel.audit.context import Entry, record
from archangel.db import copy_rows, insert_rows
from archangel.errors import Conflict, InvalidInput, NotFound
from archangel.tracing import current_trace_context
from outbox_app import handlers
from outbox_app.models import OutboxEvent


@dataclass(frozen=True)
class EventSpec:
    provider_id: uuid.UUID | None
    aggregate_id: uuid.UUID
    aggregate_version: int
    operation: str
    payload: dict[str, Any]
    aggregate_type: str = "task"

    @property
    def idempotency_key(self) -> str:
        # Deterministic, so the same change can never be enqueued twice; it also
        # travels to the provider (Todoist X-Request-Id, reference markers).
        return f"{self.aggregate_type}:{self.aggregate_id}:v{self.aggregate_version}:{self.operation}"


def outbox_enqueue_many(*, events: list[EventSpec]) -> list[OutboxEvent]:
    """Insert events in one statement. Must run inside the caller's transaction."""
    if not events:
        return []
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        raise RuntimeError("outbox events must be written in the same transaction as the change they describe")
    trace_context = current_trace_context()
    rows = [
        OutboxEvent(
            id=uuid.uuid4(),
            provider_id=spec.provider_id,
            aggregate_type=spec.aggregate_type,
            aggregate_id=spec.aggregate_id,
            aggregate_version=spec.aggregate_version,
            operation_type=spec.operation,
            payload=spec.payload,
            idempotency_key=spec.idempotency_key,
            trace_context=trace_context,
        )
        for spec in events
    ]
    insert_rows(rows)
    # Wake a drain up once the events are committed (never before: a worker could look
    # before they are visible). Beat drains every few seconds anyway; this only cuts latency.
    transaction.on_commit(request_drain)
    return rows


# Every column of an event row, in the order outbox_copy_many writes them.
_COPY_COLUMNS = (
    "id", "provider_id", "aggregate_type", "aggregate_id", "aggregate_version", "operation_type", "payload",
    "idempotency_key", "status", "retry_count", "scheduled_at", "error_message", "outcome_unknown", "trace_context",
    "created_at", "updated_at",
)  # fmt: skip


def outbox_copy_many(*, events: list[EventSpec], now=None) -> int:
    """``outbox_enqueue_many`` for a bulk import on PostgreSQL: the same rows, written with
    ``COPY`` (``archangel.db.copy_rows``) and no model instances built or returned. Columns left
    out (lease, delivery and coalescing fields) are NULL, as a new event has them. Must run
    inside the caller's transaction; a clash of idempotency keys fails it, as the INSERT would."""
    if not events:
        return 0
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        raise RuntimeError("outbox events must be written in the same transaction as the change they describe")
    now = now or timezone.now()
    trace_context = json.dumps(current_trace_context())
    pending = OutboxEvent.Status.PENDING.value
    rows = [
        (
            uuid.uuid4(),
            spec.provider_id,
            spec.aggregate_type,
            spec.aggregate_id,
            spec.aggregate_version,
            spec.operation,
            json.dumps(spec.payload),
            spec.idempotency_key,
            pending,
            0,
            now,
            "",
            False,
            trace_context,
            now,
            now,
        )
        for spec in events
    ]
    written = copy_rows(OutboxEvent, _COPY_COLUMNS, rows)
    transaction.on_commit(request_drain)  # as outbox_enqueue_many
    return written


def request_drain() -> None:
    """Send one drain wake-up, at most one per OUTBOX_WAKEUP_WINDOW: a burst of 1,000 creates
    queues one message, not 1,000. A lost wake-up costs one beat interval, nothing more."""
    from outbox_app.jobs import send_wakeup

    send_wakeup()


def outbox_enqueue(**kwargs) -> OutboxEvent:
    return outbox_enqueue_many(events=[EventSpec(**kwargs)])[0]


# --- operator actions ------------------------------------------------------------------------

REQUEUEABLE = (OutboxEvent.Status.DEAD, OutboxEvent.Status.FAILED)
EXTERNAL_ID_MAX = 255  # Task.external_id


def _required_text(value, field: str, *, missing: str, limit: int) -> str:
    """``value`` trimmed, or the 400 naming ``field`` when it is not text, blank or too long."""
    value = value.strip() if isinstance(value, str) else ""
    if not value:
        raise InvalidInput({field: [missing]})
    if len(value) > limit:
        raise InvalidInput({field: [f"At most {limit} characters."]})
    return value


def outbox_requeue(*, event_id, assume_not_created: bool = False) -> OutboxEvent:
    """A dead or failed event back to pending, due now, with its attempts reset (the API's
    requeue and the admin action). Anything else is a 409: a delivered event is never sent
    again, and one in flight belongs to its worker.

    ``assume_not_created``: an operator checked the provider and found no task from an earlier
    attempt of this create, so it creates without looking first (the way out of a
    ``lookup_incomplete`` dead letter). Only for creates."""
    with transaction.atomic():
        event = _locked(event_id)
        _require_settleable(event, "requeued")
        if assume_not_created and event.operation_type != OutboxEvent.Operation.CREATE:
            raise InvalidInput(
                {
                    "assume_not_created": [
                        f"Only a create looks for an earlier task; this event is {event.operation_type}."
                    ]
                }
            )
        previous = event.status
        changes = {"status": [previous, "pending"]}
        event.status = OutboxEvent.Status.PENDING
        event.retry_count = 0
        event.scheduled_at = timezone.now()
        event.lease_token = None
        event.locked_until = None
        fields = ["status", "retry_count", "scheduled_at", "lease_token", "locked_until", "updated_at"]
        # Otherwise outcome_unknown stays: an earlier attempt may still have created the task.
        if assume_not_created and event.outcome_unknown:
            event.outcome_unknown = False
            fields.append("outcome_unknown")
            changes["outcome_unknown"] = [True, False]
        event.save(update_fields=fields)
        record([Entry("requeue", "outbox_app.outboxevent", str(event.pk), str(event), changes)])
    transaction.on_commit(request_drain)
    return event


def outbox_adopt(*, event_id, external_id) -> OutboxEvent:
    """Settle a dead or failed create with the task an operator found at the provider (for
    instance one an earlier attempt made, carrying the event's reference marker): the event
    becomes delivered without a request, the task takes that external id, and the task's later
    events go ahead. A task of the same provider already holding that id is a 409."""
    external_id = _required_text(
        external_id, "external_id", missing="The task's id at the provider is required.", limit=EXTERNAL_ID_MAX
    )
    with transaction.atomic():
        event = _locked(event_id)
        _require_settleable(event, "adopted")
        if event.operation_type != OutboxEvent.Operation.CREATE:
            raise Conflict(
                f"Only a create can adopt a task; this event is {event.operation_type}.",
                details={"operation_type": event.operation_type},
            )
        registered = handlers.handlers_for(event.aggregate_type)
        if registered is None:
            raise Conflict(f"Nothing stores external ids for {event.aggregate_type} aggregates.")
        previous = event.status
        now = timezone.now()
        event.status = OutboxEvent.Status.DELIVERED
        event.delivered_at = now
        event.processed_at = now
        event.outcome_unknown = False
        event.lease_token = None
        event.locked_until = None
        event.error_message = f"Adopted by an operator: {external_id}\n{event.error_message}".strip()
        try:
            with transaction.atomic():
                registered.created(event.aggregate_id, event.provider_id, external_id)
        except IntegrityError:
            raise Conflict(
                "Another task of this provider already has this external id.", details={"external_id": external_id}
            ) from None
        event.save(
            update_fields=[
                "status",
                "delivered_at",
                "processed_at",
                "outcome_unknown",
                "lease_token",
                "locked_until",
                "error_message",
                "updated_at",
            ]
        )
        record(
            [
                Entry(
                    "adopt",
                    "outbox_app.outboxevent",
                    str(event.pk),
                    str(event),
                    {"status": [previous, "delivered"], "external_id": [None, external_id]},
                )
            ]
        )
    transaction.on_commit(request_drain)  # the task's later events were waiting for this one
    return event


def _require_settleable(event: OutboxEvent, verb: str) -> None:
    if event.status not in REQUEUEABLE:
        raise Conflict(
            f"Only dead or failed events can be {verb}; this one is {event.status}.",
            details={"status": event.status, "requeueable": list(REQUEUEABLE)},
        )


DISCARD_REASON_MAX = 500


def outbox_discard(*, event_id, reason: str) -> OutboxEvent:
    """Give up on a dead event for good: it is never sent, and the later events of its
    aggregate stop waiting for it. For a change that no longer matters (the task was
    archived since, its provider account closed). The reason is kept on the event and in
    the audit log."""
    why = "Say why the event is discarded (it is kept in the audit log)."
    reason = _required_text(reason, "reason", missing=why, limit=DISCARD_REASON_MAX)
    with transaction.atomic():
        event = _locked(event_id)
        if event.status != OutboxEvent.Status.DEAD:
            raise Conflict(
                f"Only dead events can be discarded; this one is {event.status}.",
                details={"status": event.status},
            )
        event.status = OutboxEvent.Status.DISCARDED
        event.error_message = f"Discarded: {reason}\n{event.error_message}".strip()
        event.save(update_fields=["status", "error_message", "updated_at"])
        record(
            [
                Entry(
                    "discard",
                    "outbox_app.outboxevent",
                    str(event.pk),
                    str(event),
                    {"status": ["dead", "discarded"], "reason": [None, reason]},
                )
            ]
        )
    transaction.on_commit(request_drain)
    return event


def _locked(event_id) -> OutboxEvent:
    try:
        return OutboxEvent.objects.select_for_update().get(pk=event_id)
    except (OutboxEvent.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("No outbox event with this id.") from None
