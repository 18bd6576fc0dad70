"""Reads of the outbox."""

from django.db.models import Count, Min
from django.utils import timezone

from outbox_app.models import OutboxEvent

UNDELIVERED = [OutboxEvent.Status.PENDING, OutboxEvent.Status.FAILED, OutboxEvent.Status.PROCESSING]


def outbox_backlog() -> dict:
    """Undelivered events by status, dead letters, and the age of the oldest undelivered event."""
    rows = (
        OutboxEvent.objects.filter(status__in=[*UNDELIVERED, OutboxEvent.Status.DEAD])
        .values("status")
        .annotate(n=Count("id"), oldest=Min("created_at"))
        .order_by()
    )
    by_status = dict.fromkeys([*UNDELIVERED, OutboxEvent.Status.DEAD], 0)
    oldest = None
    for row in rows:
        by_status[row["status"]] = row["n"]
        if row["status"] in UNDELIVERED and (oldest is None or row["oldest"] < oldest):
            oldest = row["oldest"]
    return {
        "by_status": by_status,
        "backlog": sum(by_status[s] for s in UNDELIVERED),
        "dead": by_status[OutboxEvent.Status.DEAD],
        "oldest_pending_age_seconds": round((timezone.now() - oldest).total_seconds(), 1) if oldest else None,
    }
