"""Reads of the outbox."""

from django.utils import timezone

from outbox_app.models import OutboxEvent

UNDELIVERED = [OutboxEvent.Status.PENDING, OutboxEvent.Status.FAILED, OutboxEvent.Status.PROCESSING]


def outbox_backlog(*, cap: int | None = None) -> dict:
    """Undelivered events by status, dead letters, and the age of the oldest undelivered event.

    With ``cap`` each count stops at ``cap`` (``capped`` says so), so a health check
    costs the same with a backlog of a million rows as with ten. Every query here is
    served by the (status, created_at) index.
    """
    by_status: dict[str, int] = {}
    oldest = None
    for status in [*UNDELIVERED, OutboxEvent.Status.DEAD]:
        rows = OutboxEvent.objects.filter(status=status)
        by_status[status] = rows[:cap].count() if cap else rows.count()
        if status in UNDELIVERED and by_status[status]:
            first = rows.order_by("created_at").values_list("created_at", flat=True).first()
            oldest = first if oldest is None or (first and first < oldest) else oldest
    return {
        "by_status": by_status,
        "backlog": sum(by_status[s] for s in UNDELIVERED),
        "dead": by_status[OutboxEvent.Status.DEAD],
        "capped": bool(cap) and any(n >= cap for n in by_status.values()),
        "oldest_pending_age_seconds": round((timezone.now() - oldest).total_seconds(), 1) if oldest else None,
    }
