"""Writing outbox events. Call these inside the transaction that makes the change."""

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from archangel.db import insert_rows
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
        )
        for spec in events
    ]
    insert_rows(rows)
    return rows


def outbox_enqueue(**kwargs) -> OutboxEvent:
    return outbox_enqueue_many(events=[EventSpec(**kwargs)])[0]
