"""Fewer provider requests for the same effects: coalescing and provider batches.

The drain (``outbox_app/drain.py``) calls three hooks on each claimed batch; everything
else about delivery (the claim, the fencing token, backoff, dead letters, attempts) stays
the drain's.

**Coalescing** (``coalesce`` before delivery, ``settle`` after recording). A claim holds
only the first undelivered event of each aggregate, so the events queued behind it wait.
When that first event is a create or an update and the events right behind it are
updates to the same provider, they can be folded in: the update payloads are full states
(``tasks_app.services.task_payload``), so sending the first event's operation with the
LAST state has the effect of sending them all in order. The first event (the carrier)
keeps its idempotency key (a create's reference marker stays its own); the followers are
taken under the carrier's fencing token in the same short transaction, and when the
carrier is recorded as delivered they are marked delivered too, with ``carried_by``
pointing at it and no attempt of their own (no request was sent for them). When the
carrier is not delivered, they go back to ``pending`` behind it. The run stops at the
first complete, archive or delete (folding across one would change the effect: an update
after a reopen, a create that skips its close), at a change of provider, and at anything
not waiting to be sent. A carrier whose earlier attempt may have taken effect
(``outcome_unknown``) is never extended: a create would then adopt the task that attempt
made and drop the later state, and Todoist drops a repeated request id whatever its body.

Safety with concurrent drains: nobody else can claim the followers while the carrier is
unsettled (the claim skips events with an earlier unsettled one), and they are locked
(``FOR UPDATE``, in aggregate and version order) and updated only while still due. If this
worker dies, the lease on carrier and followers expires and the reclaim makes them all
claimable again, the carrier with ``outcome_unknown`` (so it is not extended next time).

**Provider batches** (``start``, in the drain's pool). Due Todoist events of one account go out as Sync API
requests of at most 100 commands (``gateway.deliver_batch``; docs/provider-apis.md §3.2):
one ``reserve`` per request, one result per command mapped back to its event, each event
recorded by the drain exactly as if it had been sent alone (retry, dead, 429 deferral,
attempt row). A claim holds at most one event per aggregate, so a batch never holds two
events of one task and per-task order is the claim's. Todoist's Sync API has a limit of its
own besides the request limit (v9: 1,000 partial syncs per 15 minutes, UNCONFIRMED for v1,
docs/provider-apis.md §3.6); it is no higher than the request budget a sync request is taken
from, so keeping to that budget keeps to both (the sandbox enforces both). Command uuids derive from the
events' idempotency keys, so a retried event repeats its command and Todoist drops it if
it was done (§3.8). What cannot go in a batch takes the per-event path: a create whose
outcome is unknown (it first looks for its task by reference), events without a provider,
with a disabled one, or without the external id a change needs, and a lone event.
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections import defaultdict
from concurrent.futures import Future

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from archangel import metrics
from archangel.tracing import span_from_context
from outbox_app.models import OutboxEvent
from providers_app.adapters.base import AuthError, BatchItem, PermanentError, ProviderError, RateLimited

logger = logging.getLogger(__name__)

Status = OutboxEvent.Status
Operation = OutboxEvent.Operation
DUE = (Status.PENDING, Status.FAILED)
# Operations that may absorb the updates queued behind them.
CARRIERS = (Operation.CREATE, Operation.UPDATE)


# --- coalescing -------------------------------------------------------------------------------------


def coalesce(events: list[OutboxEvent], token: uuid.UUID, *, now=None) -> int:
    """Fold the updates queued behind each claimed create/update into it; returns how many.

    A carrier's ``payload`` becomes the last follower's (in memory only: the stored
    payloads stay as written) and ``event.carries`` lists the followers' ids.
    """
    if not getattr(settings, "OUTBOX_COALESCING", True):
        return 0
    carriers = {
        (e.aggregate_type, e.aggregate_id): e
        for e in events
        if e.operation_type in CARRIERS and e.provider_id and not e.outcome_unknown
    }
    if not carriers:
        return 0
    now = now or timezone.now()
    taken: dict[uuid.UUID, list[OutboxEvent]] = {}
    with transaction.atomic():
        # Every later event of these aggregates, locked in one order (no two lockers can wait on
        # each other). Rows that are not due stop the run, so nothing is folded across them.
        later = (
            OutboxEvent.objects.filter(
                aggregate_type__in={t for t, _ in carriers}, aggregate_id__in={a for _, a in carriers}
            )
            .exclude(status__in=(Status.DELIVERED, Status.DISCARDED))
            .order_by("aggregate_type", "aggregate_id", "aggregate_version")
            .select_for_update(of=("self",))
            .only(
                "id",
                "aggregate_type",
                "aggregate_id",
                "aggregate_version",
                "operation_type",
                "status",
                "provider_id",
                "payload",
            )
        )
        runs: dict[tuple, list[OutboxEvent]] = defaultdict(list)
        stopped: set[tuple] = set()
        for row in later:
            key = (row.aggregate_type, row.aggregate_id)
            carrier = carriers.get(key)
            if carrier is None or key in stopped or row.aggregate_version <= carrier.aggregate_version:
                continue
            if row.status in DUE and row.operation_type == Operation.UPDATE and row.provider_id == carrier.provider_id:
                runs[key].append(row)
            else:
                stopped.add(key)
        ids = [row.id for run in runs.values() for row in run]
        if not ids:
            return 0
        # The followers share their carriers' lease (one claim gives all its events the same one).
        lease = max((c.locked_until for c in carriers.values() if c.locked_until), default=None)
        OutboxEvent.objects.filter(id__in=ids, status__in=DUE).update(
            status=Status.PROCESSING, lease_token=token, locked_until=lease, updated_at=now
        )
        for key, run in runs.items():
            taken[carriers[key].id] = run
    for key, run in runs.items():
        carrier = carriers[key]
        carrier.carries = [row.id for row in run]
        carrier.payload = run[-1].payload
    return sum(len(run) for run in taken.values())


def settle(pairs, statuses, token: uuid.UUID, *, now=None) -> int:
    """After the drain recorded its results (same transaction): a delivered carrier's followers
    are delivered with ``carried_by``; any other outcome puts them back to ``pending`` behind
    it. Conditioned on the token like every result write. Returns the followers delivered."""
    now = now or timezone.now()
    delivered = 0
    for (event, _result), status in zip(pairs, statuses, strict=True):
        followers = getattr(event, "carries", None)
        if not followers:
            continue
        mine = OutboxEvent.objects.filter(id__in=followers, lease_token=token, status=Status.PROCESSING)
        if status == Status.DELIVERED:
            n = mine.update(
                status=Status.DELIVERED,
                carried_by=event.id,
                delivered_at=now,
                processed_at=now,
                error_message="",
                lease_token=None,
                locked_until=None,
                updated_at=now,
            )
            delivered += n
            provider_type = event.provider.type if event.provider else "other"
            metrics.count_outbox_delivery(provider_type, str(Status.DELIVERED), n)
        else:
            mine.update(status=Status.PENDING, lease_token=None, locked_until=None, updated_at=now)
    return delivered


# --- provider batches -----------------------------------------------------------------------------


def start(events: list[OutboxEvent], external_ids: dict, deadline: float, pool=None) -> dict:
    """Start delivering the events that can share provider requests; returns ``{event id: Future
    or Result}`` for them (one pool task per request when a pool is given, else done inline).
    Events not in the answer are for the per-event path."""
    chunks = plan(events, external_ids)
    out: dict = {}
    for chunk in chunks:
        if pool is None:
            for event, result in zip(chunk, _deliver_chunk(chunk, external_ids, deadline), strict=True):
                out[event.id] = result
            continue
        futures = [Future() for _ in chunk]
        for event, future in zip(chunk, futures, strict=True):
            out[event.id] = future
        pool.submit(contextvars.copy_context().run, _resolve, chunk, futures, external_ids, deadline)
    return out


def _resolve(chunk, futures, external_ids, deadline) -> None:
    try:
        results = _deliver_chunk(chunk, external_ids, deadline)
    except BaseException as exc:  # never leave the drain waiting on a future nobody will set
        for future in futures:
            future.set_exception(exc)
        raise
    for future, result in zip(futures, results, strict=True):
        future.set_result(result)


def plan(events: list[OutboxEvent], external_ids: dict) -> list[list[OutboxEvent]]:
    """The provider requests these events can share: groups of 2 to ``batch_size`` events of one
    account whose provider has a batch endpoint. Everything else takes the per-event path."""
    from outbox_app import drain

    if not getattr(settings, "OUTBOX_BATCHING", True) or len(events) < 2:
        return []
    gateway = drain._gateway()
    if not hasattr(gateway, "deliver_batch"):
        return []
    groups: dict[object, list[OutboxEvent]] = defaultdict(list)
    sizes: dict[object, int] = {}
    for event in events:
        provider = event.provider
        if provider is None or provider.health_status == provider.Health.DISABLED:
            continue
        if provider.pk not in sizes:
            sizes[provider.pk] = gateway.batch_size(provider)
        external_id = external_ids.get(event.id)
        plain = (event.operation_type == Operation.CREATE and not event.outcome_unknown) or (
            event.operation_type != Operation.CREATE and external_id
        )
        if sizes[provider.pk] > 1 and plain:
            groups[provider.pk].append(event)
    chunks = []
    for provider_pk, group in groups.items():
        size = sizes[provider_pk]
        chunks += [c for c in (group[i : i + size] for i in range(0, len(group), size)) if len(c) > 1]
    return chunks


def _deliver_chunk(chunk, external_ids, deadline) -> list:
    """One provider request for ``chunk``; one drain Result per event, in order. Never raises."""
    from outbox_app.drain import RATE_LIMITED_DEFAULT_WAIT, RETRY_AFTER_CAP, Result, _attempt, _error_text, _gateway

    gateway = _gateway()

    provider = chunk[0].provider
    if time.monotonic() > deadline:
        return [Result("defer", wait=0.0, attempted=False) for e in chunk]
    urgent = any(isinstance(p, int) and p >= 4 for p in ((e.payload or {}).get("priority") or 0 for e in chunk))
    try:
        wait = float(gateway.reserve(provider, urgent=urgent))  # one request, one unit of budget
    except Exception as exc:  # a limiter failure must not lose the events
        logger.exception("reserve failed for provider %s", provider.name)
        return [Result("retry", error=_error_text(exc), attempted=False) for e in chunk]
    if wait > 0:
        return [Result("defer", wait=wait, attempted=False) for e in chunk]
    items = [
        BatchItem(e.operation_type, e.payload, idempotency_key=e.idempotency_key, external_id=external_ids.get(e.id))
        for e in chunk
    ]
    started_at = timezone.now()
    t0 = time.perf_counter()

    def result_for(outcome, duration_ms) -> Result:
        if not isinstance(outcome, ProviderError):
            return Result(
                "delivered",
                started_at=started_at,
                duration_ms=duration_ms,
                status_code=outcome.status_code,
                external_id=outcome.external_id,
            )
        if isinstance(outcome, RateLimited):
            wait = min(RETRY_AFTER_CAP, outcome.retry_after if outcome.retry_after and outcome.retry_after > 0 else 0.0)
            return Result(
                "rate_limited",
                started_at=started_at,
                duration_ms=duration_ms,
                status_code=outcome.status_code,
                error=_error_text(outcome),
                wait=wait or RATE_LIMITED_DEFAULT_WAIT,
            )
        return Result(
            "retry" if outcome.retryable else "dead",
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=outcome.status_code,
            error=_error_text(outcome),
            outcome_unknown=bool(outcome.outcome_unknown),
        )

    first = chunk[0]
    try:
        with span_from_context(
            "outbox.deliver_batch",
            first.trace_context,
            {"outbox.events": len(chunk), "provider.type": provider.type},
        ):
            outcomes = gateway.deliver_batch(provider, items)
    except ProviderError as exc:
        duration_ms = round((time.perf_counter() - t0) * 1000)
        if isinstance(exc, PermanentError) and not isinstance(exc, AuthError):
            # The request as a whole was refused (a malformed or oversized batch): that says
            # nothing about any one event, so each goes on its own and gets its own answer.
            logger.warning("%s refused a batch of %d (%s); sending them one by one", provider.name, len(chunk), exc)
            return [_attempt(e, external_ids.get(e.id), deadline) for e in chunk]
        return [result_for(exc, duration_ms) for e in chunk]
    except Exception as exc:  # a bug must not lose the events; the request may have gone out
        logger.exception("unexpected error delivering a batch to provider %s", provider.name)
        duration_ms = round((time.perf_counter() - t0) * 1000)
        return [Result("retry", error=_error_text(exc), outcome_unknown=True) for e in chunk]
    duration_ms = round((time.perf_counter() - t0) * 1000)
    return [result_for(o, duration_ms) for o in outcomes]
