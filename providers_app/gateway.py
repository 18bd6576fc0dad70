"""The one door the outbox uses to reach a provider: budgets, breaker, adapter.

Contract (the outbox drain relies on exactly this):

``reserve(provider, *, urgent=False) -> float``
    0.0 when one request may be sent now (a unit of the credential's rate budget
    is taken and the provider's breaker lets calls through); otherwise the
    number of seconds after which asking again makes sense. Never sleeps.

``deliver(provider, operation, payload, *, idempotency_key, external_id, outcome_unknown_before, first_claimed_at)``
    Performs one outbox operation (create/update/complete/archive/delete) through
    the adapter, records success/failure on the breaker and 429 hints on the
    budget. ``outcome_unknown_before`` is True when an earlier attempt of this
    event ended without knowing whether it took effect: a create then adopts the
    task it finds by reference instead of creating a second one; ``first_claimed_at``
    (when the event was first claimed) bounds that search to tasks changed since. Raises
    :class:`providers_app.adapters.base.ProviderError` on failure.

``batch_size(provider) -> int``
    How many operations one request to this provider may carry (0: it has no batch endpoint).

``deliver_batch(provider, items) -> list[DeliveryResult | ProviderError]``
    Up to ``batch_size`` operations (:class:`BatchItem`) in ONE request, which costs one
    ``reserve``: one result or error per item, in order. Raises a ProviderError when the
    request as a whole failed. A delete whose task is already gone is a success, as in
    ``deliver``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from archangel.metrics import count_rate_limit_wait, observe_provider_call
from providers_app import breakers, ratelimit
from providers_app.adapters import get_adapter
from providers_app.adapters.base import BatchItem, NotFound, PermanentError, ProviderError, RateLimited
from providers_app.http import last_status

logger = logging.getLogger(__name__)

OPERATIONS = ("create", "update", "complete", "archive", "delete")
# Trello says which of its two limits a 429 hit (docs/provider-apis.md §2.6).
TRELLO_429_SCOPES = {"API_TOKEN_LIMIT_EXCEEDED": "token", "API_KEY_LIMIT_EXCEEDED": "key"}


@dataclass(frozen=True)
class DeliveryResult:
    external_id: str | None  # set by a create (or adoption); None for other operations
    status_code: int | None = None
    adopted: bool = False  # a create that found the task an earlier attempt made


def reserve(provider, *, urgent: bool = False) -> float:
    """Ask the breaker, then the budget. Nothing is taken when the answer is a wait.

    With Redis the common case (breaker closed, budget left) is one round trip: the budget
    script reads the breaker's state too, and only a breaker that is not closed costs more.
    """
    if breakers.shared(provider):
        wait = ratelimit.take(provider, urgent=urgent, unless_breaker=breakers.state_key(provider.pk))
        if wait is not None:
            breakers.observed_closed(provider)
            if wait > 0:
                count_rate_limit_wait(provider.type, wait)
            return wait
    wait = breakers.wait_seconds(provider)
    if wait > 0:
        observe_provider_call(provider.type, "deliver", "circuit_open", 0.0)
        return wait
    wait = ratelimit.take(provider, urgent=urgent)
    if wait > 0:
        breakers.release_probe(provider)  # a probe slot we may hold goes back unused
        count_rate_limit_wait(provider.type, wait)
    return wait


def _penalize(provider, exc: RateLimited) -> None:
    scope = None
    if provider.type == "trello" and isinstance(exc.body, dict):
        scope = TRELLO_429_SCOPES.get(exc.body.get("error"))
    if exc.retry_after:
        ratelimit.penalize(provider, exc.retry_after, scope=scope)


def deliver(
    provider,
    operation: str,
    payload: dict,
    *,
    idempotency_key: str,
    external_id: str | None,
    outcome_unknown_before: bool = False,
    first_claimed_at: datetime | None = None,
) -> DeliveryResult:
    """One outbox operation through the adapter; see the module docstring for the contract."""
    if operation not in OPERATIONS:
        raise PermanentError(f"unknown outbox operation {operation!r}; expected one of {', '.join(OPERATIONS)}")
    external_id = external_id or payload.get("external_id") or None
    adapter = get_adapter(provider)
    try:
        result = _dispatch(
            adapter,
            provider,
            operation,
            payload,
            idempotency_key,
            external_id,
            outcome_unknown_before,
            first_claimed_at,
        )
    except NotFound as exc:
        if operation == "delete":
            # Already gone: deleting twice has the effect of deleting once (docs/reliability.md).
            breakers.record_success(provider)
            return DeliveryResult(external_id=None, status_code=exc.status_code)
        breakers.record_failure(provider, exc)
        raise
    except ProviderError as exc:
        if isinstance(exc, RateLimited) and exc.status_code == 429:
            _penalize(provider, exc)  # the provider's own 429, not our budget running dry
        breakers.record_failure(provider, exc)
        raise
    breakers.record_success(provider)
    return result


def batch_size(provider) -> int:
    adapter = get_adapter(provider)
    return int(getattr(adapter, "SYNC_MAX_COMMANDS", 0)) if hasattr(adapter, "sync_batch") else 0


def deliver_batch(provider, items: list[BatchItem]) -> list[DeliveryResult | ProviderError]:
    """Several outbox operations in one provider request; see the module docstring."""
    adapter = get_adapter(provider)
    try:
        outcomes = adapter.sync_batch(items)
    except ProviderError as exc:
        if isinstance(exc, RateLimited) and exc.status_code == 429:
            _penalize(provider, exc)
        breakers.record_failure(provider, exc)
        raise
    # The request was answered: the provider is up, whatever single commands said.
    breakers.record_success(provider)
    results: list[DeliveryResult | ProviderError] = []
    for item, outcome in zip(items, outcomes, strict=True):
        error = outcome.error
        if error is None or (isinstance(error, NotFound) and item.operation == "delete"):
            results.append(DeliveryResult(external_id=outcome.external_id, status_code=outcome.status_code))
            continue
        if isinstance(error, RateLimited) and error.retry_after:
            _penalize(provider, error)
        results.append(error)
    return results


def _dispatch(
    adapter, provider, operation, payload, idempotency_key, external_id, outcome_unknown_before, first_claimed_at
):
    if operation == "create":
        if outcome_unknown_before:
            # Every request of the lookup needs its own unit of budget (taken as urgent: it
            # is the cheapest way to avoid a duplicate). Without one, wait like any 429.
            def charge() -> None:
                wait = ratelimit.take(provider, urgent=True)
                if wait > 0:
                    raise RateLimited(
                        f"no rate budget left to look for the task of {idempotency_key}", retry_after=wait
                    )

            charge()
            found = adapter.find_by_reference(
                payload, idempotency_key=idempotency_key, changed_since=first_claimed_at, charge=charge
            )
            if found is not None and found.external_id:
                logger.info("adopted %s task %s made by an earlier attempt", provider.type, found.external_id)
                return DeliveryResult(external_id=found.external_id, status_code=last_status(), adopted=True)
        created = adapter.create(payload, idempotency_key=idempotency_key)
        return DeliveryResult(external_id=created.external_id, status_code=last_status())
    if not external_id:
        if operation == "delete":
            return DeliveryResult(external_id=None)  # never created there: nothing to delete
        raise PermanentError(
            f"cannot {operation} a task that has no id at {provider.type}: its create was never delivered"
        )
    if operation == "update":
        adapter.update(external_id, payload, idempotency_key=idempotency_key)
    elif operation == "complete":
        adapter.complete(external_id, payload, idempotency_key=idempotency_key)
    elif operation == "archive":
        adapter.archive(external_id, payload, idempotency_key=idempotency_key)
    else:
        adapter.delete(external_id, idempotency_key=idempotency_key)
    return DeliveryResult(external_id=None, status_code=last_status())
