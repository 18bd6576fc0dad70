"""Writing outbox events. Call these inside the transaction that makes the change."""

import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from archangel.audit.context import Entry, record
from archangel.db import insert_rows
from archangel.errors import Conflict, InvalidInput, NotFound
from archangel.tracing import current_trace_context
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


def request_drain() -> None:
    """Send one drain wake-up, at most one per OUTBOX_WAKEUP_WINDOW: a burst of 1,000 creates
    queues one message, not 1,000. A lost wake-up costs one beat interval, nothing more."""
    from outbox_app.jobs import send_wakeup

    send_wakeup()


def outbox_enqueue(**kwargs) -> OutboxEvent:
    return outbox_enqueue_many(events=[EventSpec(**kwargs)])[0]


# --- operator actions ------------------------------------------------------------------------

REQUEUEABLE = (OutboxEvent.Status.DEAD, OutboxEvent.Status.FAILED)


def outbox_requeue(*, event_id) -> OutboxEvent:
    """A dead or failed event back to pending, due now, with its attempts reset (the API's
    requeue and the admin action). Anything else is a 409: a delivered event is never sent
    again, and one in flight belongs to its worker."""
    with transaction.atomic():
        event = _locked(event_id)
        if event.status not in REQUEUEABLE:
            raise Conflict(
                f"Only dead or failed events can be requeued; this one is {event.status}.",
                details={"status": event.status, "requeueable": list(REQUEUEABLE)},
            )
        now = timezone.now()
        event.status = OutboxEvent.Status.PENDING
        event.retry_count = 0
        event.scheduled_at = now
        event.lease_token = None
        event.locked_until = None
        # outcome_unknown stays: an earlier attempt may still have created the task.
        previous = event.status
        event.save(update_fields=["status", "retry_count", "scheduled_at", "lease_token", "locked_until", "updated_at"])
        record(
            [Entry("requeue", "outbox_app.outboxevent", str(event.pk), str(event), {"status": [previous, "pending"]})]
        )
    transaction.on_commit(request_drain)
    return event


DISCARD_REASON_MAX = 500


def outbox_discard(*, event_id, reason: str) -> OutboxEvent:
    """Give up on a dead event for good: it is never sent, and the later events of its
    aggregate stop waiting for it. For a change that no longer matters (the task was
    archived since, its provider account closed). The reason is kept on the event and in
    the audit log."""
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    if not reason:
        raise InvalidInput({"reason": ["Say why the event is discarded (it is kept in the audit log)."]})
    if len(reason) > DISCARD_REASON_MAX:
        raise InvalidInput({"reason": [f"At most {DISCARD_REASON_MAX} characters."]})
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
