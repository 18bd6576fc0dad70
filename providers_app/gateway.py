"""The one door the outbox uses to reach a provider: budgets, breaker, adapter.

Contract (the outbox drain relies on exactly this):

``reserve(provider, *, urgent=False) -> float``
    0.0 when one request may be sent now (a unit of the credential's rate budget
    is taken and the provider's breaker lets calls through); otherwise the
    number of seconds after which asking again makes sense. Never sleeps.

``deliver(provider, operation, payload, *, idempotency_key, external_id, outcome_unknown_before) -> DeliveryResult``
    Performs one outbox operation (create/update/complete/archive/delete) through
    the adapter, records success/failure on the breaker and 429 hints on the
    budget. ``outcome_unknown_before`` is True when an earlier attempt of this
    event ended without knowing whether it took effect: a create then adopts the
    task it finds by reference instead of creating a second one. Raises
    :class:`providers_app.adapters.base.ProviderError` on failure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryResult:
    external_id: str | None  # set by a create (or adoption); None for other operations
    status_code: int | None = None
    adopted: bool = False  # a create that found the task an earlier attempt made


def reserve(provider, *, urgent: bool = False) -> float:  # pragma: no cover - implemented by the adapters work
    raise NotImplementedError


def deliver(
    provider,
    operation: str,
    payload: dict,
    *,
    idempotency_key: str,
    external_id: str | None,
    outcome_unknown_before: bool = False,
) -> DeliveryResult:  # pragma: no cover - implemented by the adapters work
    raise NotImplementedError
