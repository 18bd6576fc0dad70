"""Which providers may take new work now. Routing asks here; the breakers feed it."""

from __future__ import annotations

import uuid

from providers_app.models import Provider

UNAVAILABLE = (Provider.Health.DOWN, Provider.Health.DISABLED)


def unavailable_provider_ids() -> set[uuid.UUID]:
    """Providers that are down, disabled, or whose circuit breaker is open."""
    return set(Provider.objects.filter(health_status__in=UNAVAILABLE).values_list("id", flat=True))
