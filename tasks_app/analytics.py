"""Analytics: read-only aggregates for ``GET /api/analytics/workload`` and ``/performance``.

Every figure is an aggregate query (GROUP BY, COUNT ... FILTER, SUM, and PostgreSQL's
``percentile_cont`` for percentiles), never a loop over the rows in Python. On SQLite (the
embedded development mode) the percentiles fall back to reading one sorted column.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from django.db import connection
from django.db.models import Count, DateTimeField, DurationField, ExpressionWrapper, F, Q, Sum, Value
from django.db.models.functions import TruncDate
from django.utils import timezone

from outbox_app.models import OutboxEvent
from providers_app.models import Provider
from tasks_app import scoring
from tasks_app.models import Assignee, AssigneeIdentity, RoutingDecision, Task
from tasks_app.status import OPEN

PERCENTILES = (0.5, 0.95)


def _hours(value) -> float:
    return round(float(value or 0), 2)


def _ratio(part, whole) -> float | None:
    return round(part / whole, 4) if whole else None


def _load_columns(now: dt.datetime) -> dict[str, Any]:
    # "SLA at risk": SLA_CRITICAL (80 %) of the client's SLA window used, i.e.
    # created_at <= now - sla_hours * 0.8 h.
    risk_since = ExpressionWrapper(
        Value(now)
        - ExpressionWrapper(F("client__sla_hours") * dt.timedelta(hours=scoring.SLA_CRITICAL), DurationField()),
        output_field=DateTimeField(),
    )
    return {
        "open_tasks": Count("id"),
        "open_effort_hours": Sum("effort_hours"),
        "overdue": Count("id", filter=Q(deadline__lt=now)),
        "sla_at_risk": Count("id", filter=Q(client__sla_hours__isnull=False, created_at__lte=risk_since)),
    }


def workload(*, start: dt.datetime | None = None, end: dt.datetime | None = None) -> dict[str, Any]:
    """Open work per assignee and per provider: open tasks, open effort hours, capacity
    utilization (open effort hours / daily capacity), overdue and SLA-at-risk counts.
    ``start``/``end`` limit it to tasks created in [start, end). Five queries."""
    now = timezone.now()
    tasks = Task.objects.filter(status__in=sorted(OPEN))
    if start is not None:
        tasks = tasks.filter(created_at__gte=start)
    if end is not None:
        tasks = tasks.filter(created_at__lt=end)
    columns = _load_columns(now)
    by_assignee = {row.pop("assignee_id"): row for row in tasks.values("assignee_id").annotate(**columns).order_by()}
    by_provider = {row.pop("provider_id"): row for row in tasks.values("provider_id").annotate(**columns).order_by()}
    empty = {"open_tasks": 0, "open_effort_hours": 0, "overdue": 0, "sla_at_risk": 0}

    def shaped(load: dict, capacity: float | None) -> dict:
        hours = _hours(load["open_effort_hours"])
        return {
            "open_tasks": load["open_tasks"],
            "open_effort_hours": hours,
            "capacity_hours_per_day": _hours(capacity) if capacity is not None else None,
            "utilization": _ratio(hours, float(capacity)) if capacity else None,
            "overdue": load["overdue"],
            "sla_at_risk": load["sla_at_risk"],
        }

    assignees = []
    for aid, name, capacity, active in Assignee.objects.values_list(
        "id", "name", "capacity_hours_per_day", "active"
    ).order_by("name", "id"):
        if not active and aid not in by_assignee:
            continue
        assignees.append(
            {"id": str(aid), "name": name, "active": active, **shaped(by_assignee.get(aid, empty), capacity)}
        )
    if None in by_assignee:
        assignees.append({"id": None, "name": "(unassigned)", "active": None, **shaped(by_assignee[None], None)})

    # A provider's capacity: the daily capacity of the active people with an identity there.
    capacity_by_provider = dict(
        AssigneeIdentity.objects.filter(assignee__active=True)
        .values_list("provider_id")
        .annotate(c=Sum("assignee__capacity_hours_per_day"))
        .order_by()
    )
    providers = [
        {
            "id": str(pid),
            "name": name,
            "health_status": health,
            **shaped(by_provider.get(pid, empty), capacity_by_provider.get(pid)),
        }
        for pid, name, health in Provider.objects.values_list("id", "name", "health_status").order_by("name")
    ]
    if None in by_provider:
        providers.append({"id": None, "name": "(unrouted)", "health_status": None, **shaped(by_provider[None], None)})
    return {"generated_at": now, "assignees": assignees, "providers": providers}


# --- performance ------------------------------------------------------------------------------


def _percentiles(table: str, seconds_sql: str, where_sql: str, params: list) -> dict[str, float | None]:
    """p50/p95 of ``seconds_sql`` over the rows of ``table`` matching ``where_sql``: one
    ``percentile_cont`` query on PostgreSQL; elsewhere the column is read sorted."""
    names = [f"p{round(p * 100)}" for p in PERCENTILES]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Identifiers and expressions are constants of this module; values travel as parameters.
            cursor.execute(
                f"SELECT count(*), percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY {seconds_sql}) "  # noqa: S608
                f"FROM {table} WHERE {where_sql}",
                [list(PERCENTILES), *params],
            )
            count, values = cursor.fetchone()
            values = values or [None] * len(PERCENTILES)
        else:
            cursor.execute(f"SELECT {seconds_sql} AS s FROM {table} WHERE {where_sql} ORDER BY s", params)  # noqa: S608
            column = [row[0] for row in cursor.fetchall()]
            count, values = len(column), [_interpolated(column, p) for p in PERCENTILES]
    return {"count": count, **{n: (round(v, 3) if v is not None else None) for n, v in zip(names, values, strict=True)}}


def _interpolated(ordered: list[float], fraction: float) -> float | None:
    """percentile_cont's definition (linear interpolation between the closest ranks)."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _epoch(expr: str) -> str:
    if connection.vendor == "postgresql":
        return f"EXTRACT(EPOCH FROM ({expr}))"
    return f"(julianday({expr.split(' - ')[0]}) - julianday({expr.split(' - ')[1]})) * 86400.0"


def performance(*, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """Throughput, cycle time, SLA compliance, outbox delivery latency, failure and dead-letter
    rates per provider and routing latency over [start, end)."""
    task_table = Task._meta.db_table
    event_table = OutboxEvent._meta.db_table
    decision_table = RoutingDecision._meta.db_table

    completed = Task.objects.filter(completed_at__gte=start, completed_at__lt=end)
    throughput = [
        {"date": row["day"].isoformat(), "completed": row["n"]}
        for row in completed.annotate(day=TruncDate("completed_at"))
        .values("day")
        .annotate(n=Count("id"))
        .order_by("day")
    ]
    created_per_day = {
        row["day"].isoformat(): row["n"]
        for row in Task.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
        .order_by("day")
    }
    for row in throughput:
        row["created"] = created_per_day.pop(row["date"], 0)
    throughput += [{"date": day, "completed": 0, "created": n} for day, n in created_per_day.items()]
    throughput.sort(key=lambda row: row["date"])

    cycle = _percentiles(
        task_table,
        _epoch("completed_at - created_at"),
        "completed_at >= %s AND completed_at < %s",
        [start, end],
    )
    cycle_hours = {k: (round(v / 3600, 3) if k != "count" and v is not None else v) for k, v in cycle.items()}

    deadline = ExpressionWrapper(
        F("created_at") + ExpressionWrapper(F("client__sla_hours") * dt.timedelta(hours=1), DurationField()),
        output_field=DateTimeField(),
    )
    sla = completed.filter(client__sla_hours__isnull=False).aggregate(
        total=Count("id"), met=Count("id", filter=Q(completed_at__lte=deadline))
    )

    delivery = _percentiles(
        event_table,
        _epoch("processed_at - created_at"),
        "status = %s AND processed_at >= %s AND processed_at < %s",
        [OutboxEvent.Status.DELIVERED, start, end],
    )
    events = OutboxEvent.objects.filter(created_at__gte=start, created_at__lt=end)
    names = dict(Provider.objects.values_list("id", "name"))
    per_provider = []
    for row in (
        events.values("provider_id")
        .annotate(
            events=Count("id"),
            delivered=Count("id", filter=Q(status=OutboxEvent.Status.DELIVERED)),
            retried=Count("id", filter=Q(retry_count__gt=0)),
            failing=Count("id", filter=Q(status=OutboxEvent.Status.FAILED)),
            dead=Count("id", filter=Q(status=OutboxEvent.Status.DEAD)),
        )
        .order_by("provider_id")
    ):
        pid = row.pop("provider_id")
        per_provider.append(
            {
                "provider": str(pid) if pid else None,
                "name": names.get(pid),
                **row,
                # Share of events that needed at least one retry, and share given up (dead letters).
                "failure_rate": _ratio(row["retried"], row["events"]),
                "dead_letter_rate": _ratio(row["dead"], row["events"]),
            }
        )

    routing_latency = _percentiles(decision_table, "duration_ms", "created_at >= %s AND created_at < %s", [start, end])
    over = RoutingDecision.objects.filter(created_at__gte=start, created_at__lt=end, over_capacity=True).count()

    return {
        "from": start,
        "to": end,
        "throughput_per_day": throughput,
        "cycle_time_hours": cycle_hours,
        "sla_compliance": {
            "completed_with_sla": sla["total"],
            "met": sla["met"],
            "rate": _ratio(sla["met"], sla["total"]),
        },
        "outbox_delivery_latency_seconds": delivery,
        "providers": per_provider,
        "routing_decision_ms": {**routing_latency, "over_capacity": over},
    }
