"""Usage predictions (issue 4 §6): each provider credential's rate budget, the rate it is
spent at, when it runs out at that rate, and the outbox backlog that will wait for it.

Lives in outbox_app because it joins the providers' budgets (providers_app) with the
outbox backlog, and outbox_app is the app allowed to know both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from outbox_app.models import OutboxEvent
from providers_app import breakers
from providers_app.models import Provider
from providers_app.status import budget_rows

# Counting stops here, so the endpoint costs the same with a backlog of a million events.
BACKLOG_CAP = 10_000
WAITING = (OutboxEvent.Status.PENDING, OutboxEvent.Status.FAILED)


def _backlog(provider_id) -> dict[str, Any]:
    counts = {
        status: OutboxEvent.objects.filter(provider_id=provider_id, status=status)[:BACKLOG_CAP].count()
        for status in WAITING
    }
    return {**counts, "total": sum(counts.values()), "capped": any(n >= BACKLOG_CAP for n in counts.values())}


def usage_predictions() -> dict[str, Any]:
    providers = list(Provider.objects.order_by("name"))
    states = breakers.states(p.pk for p in providers)
    rows = []
    for provider in providers:
        try:
            budgets = budget_rows(provider)
        except Exception as exc:  # noqa: BLE001 - e.g. secrets that no longer decrypt: say so, list the rest
            budgets, error = [], f"budgets unavailable: {type(exc).__name__}"
        else:
            error = None
        backlog = _backlog(provider.pk)
        soonest = min((b["runs_out_in_seconds"] for b in budgets if b["runs_out_in_seconds"] is not None), default=None)
        rows.append(
            {
                "id": provider.pk,
                "name": provider.name,
                "type": provider.type,
                "health_status": provider.health_status,
                "breaker": states.get(str(provider.pk), breakers.CLOSED),
                "budgets": budgets,
                "runs_out_in_seconds": soonest,
                "backlog": backlog,
                "error": error,
            }
        )
    return {"generated_at": datetime.now(UTC), "providers": rows}
