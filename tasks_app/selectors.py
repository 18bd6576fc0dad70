"""Reads of tasks, assignees and routing state, shaped for the pure modules (routing, planner)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db.models import Count, Sum

from providers_app.health import unavailable_provider_ids
from providers_app.models import Provider
from tasks_app import routing
from tasks_app.models import Assignee, AssigneeIdentity, RoutingDecision, Task
from tasks_app.status import OPEN


def routing_inputs() -> routing.RoutingInputs:
    """Providers with health and load, active assignees with identities and open effort, and the
    round-robin cursor: the inputs of a whole batch of routing decisions, in at most six queries
    (one when no provider is configured)."""
    rows = list(Provider.objects.values_list("id", "name", "type", "weight", "health_status"))
    if not rows:
        return routing.RoutingInputs(providers={}, assignees={})
    down = unavailable_provider_ids()
    providers = {
        pid: routing.ProviderState(
            id=pid,
            name=name,
            type=ptype,
            weight=weight,
            unavailable_reason=(
                health if health in (Provider.Health.DOWN, Provider.Health.DISABLED) else "circuit breaker open"
            )
            if pid in down
            else None,
        )
        for pid, name, ptype, weight, health in rows
    }
    for pid, count in (
        Task.objects.filter(status__in=OPEN, provider__isnull=False)
        .values_list("provider_id")
        .annotate(n=Count("id"))
        .order_by()
    ):
        if pid in providers:
            providers[pid].open_tasks = count
    identities: dict[uuid.UUID, set[uuid.UUID]] = {}
    for assignee_id, provider_id in AssigneeIdentity.objects.filter(assignee__active=True).values_list(
        "assignee_id", "provider_id"
    ):
        identities.setdefault(assignee_id, set()).add(provider_id)
    assignees: dict[uuid.UUID, routing.AssigneeState] = {}
    if identities:
        loads = open_hours_by_assignee(identities)
        for aid, name, capacity in Assignee.objects.filter(id__in=identities).values_list(
            "id", "name", "capacity_hours_per_day"
        ):
            assignees[aid] = routing.AssigneeState(
                id=aid,
                name=name,
                capacity_hours=float(capacity),
                open_hours=loads.get(aid, 0.0),
                provider_ids=frozenset(identities[aid]),
            )
    last = None
    if assignees:
        last = (
            RoutingDecision.objects.filter(assignee__isnull=False)
            .order_by("-created_at")
            .values_list("assignee_id", flat=True)
            .first()
        )
    return routing.RoutingInputs(providers=providers, assignees=assignees, last_assignee_id=last)


def open_hours_by_assignee(assignee_ids: Iterable[uuid.UUID] | None = None) -> dict[uuid.UUID, float]:
    """Effort hours of open tasks per assignee, one aggregate query (the partial index
    ``tasks_task_open_assignee`` serves it)."""
    rows = Task.objects.filter(status__in=OPEN, assignee__isnull=False)
    if assignee_ids is not None:
        rows = rows.filter(assignee_id__in=list(assignee_ids))
    return {
        aid: float(total or 0)
        for aid, total in rows.values_list("assignee_id").annotate(h=Sum("effort_hours")).order_by()
    }


def latest_routing(task_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, RoutingDecision]:
    """The latest routing decision of each task, one query."""
    ids = list(task_ids)
    if not ids:
        return {}
    latest: dict[uuid.UUID, RoutingDecision] = {}
    for decision in RoutingDecision.objects.filter(task_id__in=ids).order_by("task_id", "-created_at"):
        latest.setdefault(decision.task_id, decision)
    return latest
