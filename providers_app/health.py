"""Which providers may take new work now. Routing asks here; the breakers feed it."""

from __future__ import annotations

import uuid

from providers_app import breakers
from providers_app.models import Provider

UNAVAILABLE = (Provider.Health.DOWN, Provider.Health.DISABLED)


def unavailable_provider_ids() -> set[uuid.UUID]:
    """Providers that are down, disabled, or whose circuit breaker is open.

    One query and one Redis round trip (MGET of every breaker's state), whatever the
    number of providers: the breaker's mirror into ``health_status`` may lag a moment
    behind the shared state, so both are read.
    """
    rows = list(Provider.objects.values_list("id", "health_status"))
    down = {pid for pid, health in rows if health in UNAVAILABLE}
    states = breakers.states(pid for pid, health in rows if health not in UNAVAILABLE)
    return down | {pid for pid, _ in rows if states.get(str(pid)) == breakers.OPEN}
