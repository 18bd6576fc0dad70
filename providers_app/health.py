"""Which providers may take new work now. Routing asks here; the breakers feed it."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.dispatch import Signal

from providers_app import breakers
from providers_app.models import Provider

# Sent after set_health changed providers' health with a queryset update (which sends no post_save):
# routing's copy of the provider rows listens (tasks_app.selectors, "Provider rows").
health_changed = Signal()


def set_health(providers: QuerySet, health: str, **fields) -> int:
    """``providers.update(health_status=health, ...)``, announced by ``health_changed``; how many changed."""
    changed = providers.update(health_status=health, **fields)
    if changed:
        health_changed.send(sender=Provider)
    return changed


UNAVAILABLE = (Provider.Health.DOWN, Provider.Health.DISABLED)


def unavailable_provider_ids(rows: list[tuple[uuid.UUID, str]] | None = None) -> set[uuid.UUID]:
    """Providers that are disabled, down, or whose circuit breaker is open.

    One query and one Redis round trip (every breaker's state and opening time), whatever
    the number of providers. The breaker decides where it has an opinion: while open and
    within its reset time the provider is unavailable; once that time has passed it is
    available again although still marked ``down``, because only a new call can probe it and
    close the breaker (otherwise an idle provider, avoided by routing, would stay down for
    ever). Without an open breaker, ``down`` (set by a provider-down event) and ``disabled``
    (an operator's decision) hold.

    ``rows``: the providers' ``(id, health_status)`` when the caller has just read them (no query then).
    """
    if rows is None:
        rows = list(Provider.objects.values_list("id", "health_status"))
    holding = breakers.holding_back(pid for pid, health in rows if health != Provider.Health.DISABLED)
    unavailable = set()
    for pid, health in rows:
        verdict = holding.get(str(pid))
        if health == Provider.Health.DISABLED or verdict is True or (verdict is None and health in UNAVAILABLE):
            unavailable.add(pid)
    return unavailable
