"""The ops dashboard on the admin index: what an operator checks first.

Every figure comes from an aggregate query served by an index (the outbox's
partial "due" index and its (status, created_at) index, the tasks' open-work
indexes), so the page costs the same with a million delivered events as with
ten. Breaker states come from Redis in one round trip; budgets from the
rate limiter's usage script.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.utils import timezone

from outbox_app.models import OutboxEvent
from outbox_app.selectors import UNDELIVERED, outbox_backlog
from providers_app.models import Provider
from tasks_app.models import Assignee, Task
from tasks_app.status import CLOSED

BACKLOG_CAP = 100_000
CHART_WIDTH = 240


def _bars(rows: list[dict], value: str, label: str, *, limit: float | None = None) -> list[dict]:
    """Rows with a ``bar`` width in pixels for a server-rendered SVG bar chart."""
    top = max([float(r[value] or 0) for r in rows] + [limit or 0, 1e-9])
    for row in rows:
        row["bar"] = round(CHART_WIDTH * float(row[value] or 0) / top)
        row["label"] = row[label]
    return rows


def outbox_by_provider() -> list[dict]:
    counts = (
        OutboxEvent.objects.filter(status__in=[*UNDELIVERED, OutboxEvent.Status.DEAD])
        .values("provider__name", "status")
        .annotate(n=Count("id"))
    )
    table: dict[str, dict] = {}
    for row in counts:
        name = row["provider__name"] or "(no provider)"
        entry = table.setdefault(name, {"provider": name, "pending": 0, "failed": 0, "processing": 0, "dead": 0})
        entry[row["status"]] = row["n"]
    rows = sorted(table.values(), key=lambda r: r["provider"])
    for row in rows:
        row["backlog"] = row["pending"] + row["failed"] + row["processing"]
    return _bars(rows, "backlog", "provider")


def budget_left(provider: Provider) -> str:
    """The scarcest of the provider's rate budgets, as "remaining/usable per window"."""
    from providers_app import status
    from providers_app.crypto import DecryptionError

    try:
        rows = status.budget_rows(provider)
    except DecryptionError:
        return "secrets unreadable"
    if not rows:
        return ""
    row = min(rows, key=lambda r: r["remaining"] / max(r["usable"], 1))
    text = f"{row['remaining']}/{row['usable']} per {row['window_seconds']:g} s"
    return text + (f", blocked {row['blocked_for_seconds']:g} s" if row["blocked_for_seconds"] else "")


def providers() -> list[dict]:
    """Health, breaker state (one Redis round trip for all) and the scarcest budget of each provider."""
    from providers_app import breakers

    objects = list(Provider.objects.order_by("name"))
    states = breakers.states(p.id for p in objects)
    return [
        {
            "id": p.id,
            "name": p.name,
            "type": p.get_type_display(),
            "health": p.health_status,
            "breaker": states.get(str(p.id), ""),
            "budget": budget_left(p),
        }
        for p in objects
    ]


def workload(today: dt.date) -> list[dict]:
    """Open effort per active assignee against a day's capacity, with overdue counts."""
    now = timezone.now()
    open_work = ~Q(tasks__status__in=CLOSED)
    rows = list(
        Assignee.objects.filter(active=True)
        .annotate(
            open_tasks=Count("tasks", filter=open_work),
            open_hours=Sum("tasks__effort_hours", filter=open_work),
            overdue=Count("tasks", filter=open_work & Q(tasks__deadline__lt=now)),
        )
        .values("name", "capacity_hours_per_day", "open_tasks", "open_hours", "overdue")
        .order_by("name")
    )
    for row in rows:
        capacity = row["capacity_hours_per_day"] or Decimal(0)
        hours = row["open_hours"] or Decimal(0)
        row["open_hours"] = float(hours)
        row["utilization"] = round(float(hours / capacity) * 100) if capacity else None
    return _bars(rows, "open_hours", "name")


def recent_failures(limit: int = 10) -> list[OutboxEvent]:
    return list(
        OutboxEvent.objects.filter(status__in=[OutboxEvent.Status.FAILED, OutboxEvent.Status.DEAD])
        .select_related("provider")
        .order_by("-updated_at")[:limit]
    )


def dashboard_context() -> dict:
    backlog = outbox_backlog(cap=BACKLOG_CAP)
    open_tasks = Task.objects.exclude(status__in=CLOSED)
    return {
        "backlog": backlog,
        "backlog_cap": BACKLOG_CAP,
        "outbox_by_provider": outbox_by_provider(),
        "providers": providers(),
        "workload": workload(timezone.localdate()),
        "failures": recent_failures(),
        "open_tasks": open_tasks[:BACKLOG_CAP].count(),
        "overdue_tasks": open_tasks.filter(deadline__lt=timezone.now())[:BACKLOG_CAP].count(),
        "chart_width": CHART_WIDTH,
    }
