"""Reads of a provider's live state: its breaker, its rate budgets, its last error.

Serves ``GET /api/providers/{id}/health``, the provider part of ``GET /api/health``
and the usage predictions. Nothing here returns a secret: budgets are named by
scope and a short hash of the credential.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from providers_app import breakers, crypto, ratelimit
from providers_app.adapters import get_adapter
from providers_app.adapters.base import ProviderError
from providers_app.models import Provider


def budget_rows(provider: Provider) -> list[dict[str, Any]]:
    """Each rate budget of the provider's credentials, with a forecast of when it runs out."""
    now = datetime.now(UTC)
    rows = []
    for usage in ratelimit.usage(provider):
        limit = usage.limit
        remaining = max(0, limit.usable - usage.used)
        rate = usage.recent_rate
        # At a steady rate r a sliding window holds r * window requests: below the usable
        # budget it never runs out; above it, what is left lasts remaining / r seconds.
        if usage.blocked_for > 0:
            runs_out_in = 0.0
        elif rate <= 0 or rate * limit.window < limit.usable:
            runs_out_in = None
        else:
            runs_out_in = round(remaining / rate, 1)
        rows.append(
            {
                "scope": limit.scope,
                "credential": limit.credential[:8],
                "limit": limit.limit,
                "usable": limit.usable,
                "window_seconds": limit.window,
                "used": usage.used,
                "remaining": remaining,
                "blocked_for_seconds": round(usage.blocked_for, 1),
                "recent_rate_per_second": round(rate, 4),
                "runs_out_in_seconds": runs_out_in,
                "runs_out_at": (now + timedelta(seconds=runs_out_in)).isoformat() if runs_out_in is not None else None,
            }
        )
    return rows


def live_check(provider: Provider) -> dict[str, Any]:
    """Run the adapter's cheap health call, within the provider's rate budget."""
    wait = ratelimit.take(provider, urgent=True)
    if wait > 0:
        return {"ok": None, "skipped": f"rate budget spent; next unit in {round(wait, 1)} s"}
    started = time.perf_counter()
    try:
        get_adapter(provider).health_check()
    except ProviderError as exc:
        return {
            "ok": False,
            "code": exc.code,
            "status_code": exc.status_code,
            "error": exc.message[:500],
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        }
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def provider_health(provider: Provider, *, check: bool = False) -> dict[str, Any]:
    try:
        budgets = budget_rows(provider)
    except crypto.DecryptionError:
        # Its secrets no longer decrypt with the configured keys: say so instead of failing.
        budgets = []
        check = False
    body: dict[str, Any] = {
        "id": provider.pk,
        "name": provider.name,
        "type": provider.type,
        "health_status": provider.health_status,
        "breaker": breakers.state(provider),
        "budgets": budgets,
        "last_error": breakers.last_error(provider),
        "checked_at": datetime.now(UTC),
    }
    if check:
        body["check"] = live_check(provider)
    return body


def breaker_summary() -> dict[str, dict[str, str]]:
    """Per provider name: type, health_status and breaker state. One query and one Redis round trip."""
    rows = list(Provider.objects.order_by("name").values_list("id", "name", "type", "health_status"))
    states = breakers.states(pid for pid, *_ in rows)
    return {
        name: {"type": type_, "health_status": health, "breaker": states.get(str(pid), breakers.CLOSED)}
        for pid, name, type_, health in rows
    }
