"""The outbox drain: deliver due events to their providers, each exactly once in effect.

PostgreSQL is the source of truth and Celery messages are only wake-ups
(docs/reliability.md). One drain pass:

1. **Reclaim** events whose lease expired (their worker crashed or hung): back to
   ``failed``, due now, with ``outcome_unknown`` set (the lost attempt may have taken
   effect, so a create first looks for the task it may have made) and one attempt
   counted, so an event that kills its worker every time ends dead instead of looping.
2. **Claim** a batch of due events with ``SELECT ... FOR UPDATE SKIP LOCKED`` in a short
   transaction: only events whose aggregate has no earlier undelivered event (pending,
   in flight, failed-waiting or dead), so one task's create → update → archive reach the
   provider in that order, while other tasks never wait behind it. They become
   ``processing`` with ``locked_until = now + OUTBOX_LEASE_SECONDS`` and a fresh fencing
   token (``lease_token``, one per claim). Commit: no lock is held from here on.
3. **Deliver** each event (overlapping provider latency in a small thread pool; a
   batch holds at most one event per aggregate, so this cannot reorder a task's events):
   ``gateway.reserve`` first (rate budget and breaker; a wait puts the event back to
   ``pending`` without counting an attempt), then ``gateway.deliver`` with the
   aggregate's CURRENT external id.
4. **Record** the batch's results together (:func:`record_batch`): one
   ``UPDATE ... FROM unnest(...) WHERE id = v.id AND lease_token = %s`` for all of them, the
   delivered creates' external ids on their aggregates (``outbox_app/handlers.py``) and one
   INSERT of the attempt rows, in one transaction. A worker whose lease expired and was
   reclaimed updates 0 rows for that event and its result is dropped (recorded as a
   ``stale`` attempt). While a batch is being recorded, the next one is already claimed
   and in flight (a pipeline one batch deep).

Decisions:

- A **dead** event blocks the later events of its aggregate until an operator requeues
  it or discards it: delivering v3 after v2 failed for good can corrupt the remote task
  (an update sent to a task whose create never happened, an archive overtaken). Other
  aggregates are unaffected.
- An event with **no provider** (the task was never routed) has nowhere to go: it is
  ``discarded`` with that reason (a later routing enqueues its own create). A provider
  cannot be deleted while it has events (the foreign key protects it). A **disabled**
  provider's events wait (deferred, not counted) until it is enabled again.
- A non-create event whose aggregate has **no external id** (its create was discarded or
  never made) is dead at once: there is nothing at the provider to change.
- Failures: retryable → ``failed`` with a jittered exponential backoff, dead after
  ``OUTBOX_MAX_ATTEMPTS`` failed attempts; permanent → dead at once; a 429
  (``RateLimited``) → rescheduled by its ``retry_after`` and never counted, so no event
  dies of rate limiting. An unexpected exception counts as a retryable failure whose
  outcome is unknown.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from archangel import metrics
from archangel.logging import bind_log_context
from archangel.tracing import span_from_context
from outbox_app import batching, handlers
from outbox_app.backoff import backoff_delay
from outbox_app.models import DeliveryAttempt, OutboxEvent
from providers_app.adapters.base import ProviderError, RateLimited

logger = logging.getLogger(__name__)

Status = OutboxEvent.Status
Outcome = DeliveryAttempt.Outcome
DUE = (Status.PENDING, Status.FAILED)
# Statuses that no longer hold back the later events of their aggregate.
SETTLED = (Status.DELIVERED, Status.DISCARDED)
# Seconds a disabled provider's events wait before they are looked at again.
DISABLED_PROVIDER_WAIT = 60.0
# A 429 without a usable hint waits this long (docs/provider-apis.md: Trello's window is 10 s).
RATE_LIMITED_DEFAULT_WAIT = 10.0
RETRY_AFTER_CAP = 3600.0
ERROR_MAX = 2000
WORKER = f"{socket.gethostname()}:{os.getpid()}"


def _gateway():
    # The one door to the providers (providers_app/gateway.py). OUTBOX_GATEWAY names another
    # module with the same two functions: the integration tests' fake provider door.
    return import_module(getattr(settings, "OUTBOX_GATEWAY", "providers_app.gateway"))


@dataclass
class Result:
    """What became of one claimed event; computed with no database lock held."""

    kind: str  # delivered | retry | dead | rate_limited | defer | discard
    started_at: object = None
    duration_ms: int = 0
    status_code: int | None = None
    error: str = ""
    wait: float = 0.0  # defer / rate_limited: seconds until the event is due again
    external_id: str | None = None
    outcome_unknown: bool = False
    attempted: bool = True  # a request was (or may have been) sent: an attempt row is written


@dataclass
class DrainCounts:
    delivered: int = 0
    retried: int = 0
    deferred: int = 0
    dead: int = 0
    discarded: int = 0
    stale: int = 0
    reclaimed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "retried": self.retried,
            "deferred": self.deferred,
            "dead": self.dead,
            "discarded": self.discarded,
            "stale": self.stale,
            "reclaimed": self.reclaimed,
        }


# --- reclaim and claim -------------------------------------------------------------------------


def reclaim_expired(*, now=None, limit: int = 500) -> int:
    """Make events whose lease expired claimable again; returns how many.

    The old token is cleared, so if the lost worker was merely slow its late result
    write touches 0 rows. The attempt counts: a poison event that crashes its worker
    every time must end dead, not loop forever.
    """
    now = now or timezone.now()
    max_attempts = settings.OUTBOX_MAX_ATTEMPTS
    with transaction.atomic():
        ids = list(
            OutboxEvent.objects.filter(status=Status.PROCESSING, locked_until__lt=now)
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return 0
        OutboxEvent.objects.filter(id__in=ids, status=Status.PROCESSING, locked_until__lt=now).update(
            status=Case(When(retry_count__gte=max_attempts - 1, then=Value(Status.DEAD)), default=Value(Status.FAILED)),
            retry_count=F("retry_count") + 1,
            outcome_unknown=True,
            lease_token=None,
            locked_until=None,
            scheduled_at=now,
            processed_at=now,
            error_message="The worker delivering this event was lost (its lease expired); the outcome is unknown.",
            updated_at=now,
        )
    logger.warning("reclaimed %d outbox event(s) whose lease expired", len(ids))
    return len(ids)


def claim(*, limit: int, now=None, lease_seconds: int | None = None) -> tuple[uuid.UUID, list[OutboxEvent]]:
    """Claim up to ``limit`` due events (at most one per aggregate) under a new fencing token.

    On SQLite there is no ``SKIP LOCKED`` (Django leaves ``FOR UPDATE`` out) but SQLite
    serializes writers, and the UPDATE re-checks the status, so two claimers still never
    get the same row: the rows claimed are read back by their token.
    """
    now = now or timezone.now()
    lease = timedelta(seconds=lease_seconds or settings.OUTBOX_LEASE_SECONDS)
    token = uuid.uuid4()
    earlier_unsettled = OutboxEvent.objects.filter(
        aggregate_type=OuterRef("aggregate_type"),
        aggregate_id=OuterRef("aggregate_id"),
        aggregate_version__lt=OuterRef("aggregate_version"),
    ).exclude(status__in=SETTLED)
    with transaction.atomic():
        # Served by the partial index outbox_event_due (scheduled_at WHERE status IN due)
        # and, for the NOT EXISTS, the unique (aggregate_type, aggregate_id, version) index.
        # SKIP LOCKED: concurrent drainers take disjoint rows instead of queueing on locks.
        ids = list(
            OutboxEvent.objects.filter(status__in=DUE, scheduled_at__lte=now)
            .filter(~Exists(earlier_unsettled))
            .order_by("scheduled_at")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return token, []
        OutboxEvent.objects.filter(id__in=ids, status__in=DUE).update(
            status=Status.PROCESSING,
            locked_until=now + lease,
            lease_token=token,
            first_claimed_at=Coalesce(F("first_claimed_at"), Value(now)),
            updated_at=now,
        )
    events = list(
        OutboxEvent.objects.filter(id__in=ids, lease_token=token).select_related("provider").order_by("scheduled_at")
    )
    return token, events


def _current_external_ids(events: list[OutboxEvent]) -> dict[uuid.UUID, str | None]:
    """Each event's aggregate's CURRENT external id (one query per aggregate type).

    Read after the claim, which is delivery time in the sense that matters: an event is
    only claimed once every earlier event of its aggregate is delivered, and a create
    stores its external id in the same transaction that marks it delivered.
    """
    out: dict[uuid.UUID, str | None] = {}
    by_type: dict[str, list[OutboxEvent]] = {}
    for event in events:
        by_type.setdefault(event.aggregate_type, []).append(event)
    for aggregate_type, group in by_type.items():
        registered = handlers.handlers_for(aggregate_type)
        current = registered.external_id([e.aggregate_id for e in group]) if registered else {}
        for event in group:
            out[event.id] = current.get(event.aggregate_id) or (event.payload or {}).get("external_id")
    return out


# --- delivery (no database lock held) -------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    text = f"{code}: {exc}" if code else f"{type(exc).__name__}: {exc}"
    return text[:ERROR_MAX]


def _attempt(event: OutboxEvent, external_id: str | None, deadline: float) -> Result:
    """Reserve budget and deliver one event; never raises."""
    provider = event.provider
    if provider is None:
        return Result("discard", error="No provider: the task was never routed, nothing to deliver.", attempted=False)
    if provider.health_status == provider.Health.DISABLED:
        return Result("defer", wait=DISABLED_PROVIDER_WAIT, attempted=False)
    if time.monotonic() > deadline:
        # The batch ran long (slow provider): hand the rest back rather than outlive the lease.
        return Result("defer", wait=0.0, attempted=False)
    if event.operation_type == OutboxEvent.Operation.DELETE and not external_id:
        # Never created there: deleting it is already done (and costs no request).
        return Result("delivered", attempted=False)
    if event.operation_type != OutboxEvent.Operation.CREATE and not external_id:
        return Result("dead", error="No external id: the task's create was never delivered.", attempted=False)
    gateway = _gateway()
    priority = (event.payload or {}).get("priority") or 0
    try:
        wait = float(gateway.reserve(provider, urgent=isinstance(priority, int) and priority >= 4))
    except Exception as exc:  # a limiter failure must not lose the event
        logger.exception("reserve failed for provider %s", provider.name)
        return Result("retry", error=_error_text(exc), attempted=False)
    if wait > 0:
        # The gateway counts the wait in archangel_rate_limit_waits; not a failure, not an attempt.
        return Result("defer", wait=wait, attempted=False)

    started_at = timezone.now()
    t0 = time.perf_counter()

    def done(**kwargs) -> Result:
        return Result(started_at=started_at, duration_ms=round((time.perf_counter() - t0) * 1000), **kwargs)

    try:
        with span_from_context(
            f"outbox.deliver {event.operation_type}",
            event.trace_context,
            {"outbox.event_id": event.id, "provider.type": provider.type, "outbox.operation": event.operation_type},
        ):
            delivered = gateway.deliver(
                provider,
                event.operation_type,
                event.payload,
                idempotency_key=event.idempotency_key,
                external_id=external_id,
                outcome_unknown_before=event.outcome_unknown,
                first_claimed_at=event.first_claimed_at,
            )
    except RateLimited as exc:
        wait = min(RETRY_AFTER_CAP, exc.retry_after if exc.retry_after and exc.retry_after > 0 else 0.0)
        return done(
            kind="rate_limited",
            status_code=exc.status_code,
            error=_error_text(exc),
            wait=wait or RATE_LIMITED_DEFAULT_WAIT,
        )
    except ProviderError as exc:
        return done(
            kind="retry" if exc.retryable else "dead",
            status_code=exc.status_code,
            error=_error_text(exc),
            outcome_unknown=bool(exc.outcome_unknown),
        )
    except Exception as exc:  # a bug in one delivery must not stop the others
        logger.exception("unexpected error delivering outbox event %s", event.id)
        return done(kind="retry", error=_error_text(exc), outcome_unknown=True)
    return done(
        kind="delivered",
        status_code=delivered.status_code,
        external_id=delivered.external_id or external_id,
    )


# --- recording (conditional on the fencing token) -----------------------------------------------


def _fields_for(event: OutboxEvent, result: Result, now) -> dict:
    base = {"lease_token": None, "locked_until": None, "updated_at": now}
    if result.attempted:
        base["processed_at"] = now
        base["last_status_code"] = result.status_code
    if result.kind == "delivered":
        return {**base, "status": Status.DELIVERED, "delivered_at": now, "error_message": "", "outcome_unknown": False}
    if result.kind in ("defer", "rate_limited"):
        fields = {**base, "status": Status.PENDING, "scheduled_at": now + timedelta(seconds=result.wait)}
        if result.kind == "rate_limited":
            fields["error_message"] = result.error
        return fields
    if result.kind == "discard":
        return {**base, "status": Status.DISCARDED, "error_message": result.error}
    unknown = {"outcome_unknown": True} if result.outcome_unknown else {}
    attempts = event.retry_count + 1
    if result.kind == "retry" and attempts < settings.OUTBOX_MAX_ATTEMPTS:
        delay = backoff_delay(
            attempts, base=settings.OUTBOX_BACKOFF_BASE_SECONDS, cap=settings.OUTBOX_BACKOFF_CAP_SECONDS
        )
        return {
            **base,
            **unknown,
            "status": Status.FAILED,
            "retry_count": attempts,
            "scheduled_at": now + timedelta(seconds=delay),
            "error_message": result.error,
        }
    error = result.error
    if result.kind == "retry":
        error = f"Gave up after {attempts} attempts. Last error: {result.error}"
    return {**base, **unknown, "status": Status.DEAD, "retry_count": attempts, "error_message": error[:ERROR_MAX]}


_KIND_OUTCOME = {
    "delivered": Outcome.DELIVERED,
    "retry": Outcome.RETRY,
    "dead": Outcome.DEAD,
    "rate_limited": Outcome.DEFERRED,
}


def _outcome(result: Result, fields: dict, written: bool) -> str | None:
    """The attempt row's outcome for one result (None: no request was sent, no row)."""
    if not written:
        return Outcome.STALE if result.attempted else None
    if not result.attempted:
        return None
    if result.kind == "retry" and fields["status"] == Status.DEAD:
        return Outcome.DEAD
    return _KIND_OUTCOME.get(result.kind)


def record(event: OutboxEvent, token: uuid.UUID, result: Result, *, now=None) -> str:
    """Write one result if this worker still holds the event's lease; returns the status written
    (or ``"stale"`` when the lease was lost and the result dropped)."""
    return record_batch([(event, result)], token, now=now)[0]


def record_batch(pairs: list[tuple[OutboxEvent, Result]], token: uuid.UUID, *, now=None) -> list[str]:
    """Write the results of one claim (all under ``token``) in one transaction; returns, per
    pair, the status written or ``"stale"``.

    On PostgreSQL this is a fixed number of statements whatever the batch size: one
    ``UPDATE ... FROM unnest(...)`` conditioned on the fencing token (``RETURNING`` says which
    rows this worker still owned), the aggregates' external ids of the delivered creates, and
    one INSERT of the attempt rows. If that fails (e.g. an aggregate refuses an external id),
    the batch is written again one event at a time, each in its own savepoint, so one bad
    result cannot hold back the others: the event whose write fails stays ``processing`` until
    its lease expires and is then reclaimed with ``outcome_unknown`` (a create is adopted, not
    repeated).
    """
    if not pairs:
        return []
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        try:
            statuses = _retry_lock_conflicts(_record_set_atomic, pairs, token, now)
        except DatabaseError:
            logger.exception("recording a batch of %d outbox results at once failed; one at a time", len(pairs))
        else:
            _log_stale(pairs, statuses)
            return statuses
    statuses = []
    with transaction.atomic():
        for event, result in pairs:
            with bind_log_context(outbox_event_id=event.id, aggregate_id=event.aggregate_id):
                try:
                    statuses.append(_retry_lock_conflicts(_record_one_atomic, event, token, result, now))
                except DatabaseError:
                    logger.exception("could not record the result of outbox event %s", event.id)
                    statuses.append("unrecorded")
    _log_stale(pairs, statuses)
    return statuses


# A result is known once the provider answered: losing its write to a lock conflict would leave
# the event to its lease, and a create reclaimed minutes later must then find its task by marker
# among everything created since (a busy list can bury it: the 10-minute sustained run did).
# PostgreSQL rolls back the loser of a deadlock or serialization failure and says to retry.
LOCK_CONFLICT_RETRIES = 4


def _is_lock_conflict(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc
    return isinstance(cause, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)


def _retry_lock_conflicts(write, *args):
    for attempt in range(LOCK_CONFLICT_RETRIES + 1):
        try:
            return write(*args)
        except DatabaseError as exc:
            if attempt == LOCK_CONFLICT_RETRIES or not _is_lock_conflict(exc):
                raise
            conflict = type(exc.__cause__).__name__
            logger.warning("an outbox result write lost a lock conflict (%s); writing it again", conflict)
            time.sleep(random.uniform(0.005, 0.05 * (attempt + 1)))


def _record_set_atomic(pairs, token, now) -> list[str]:
    with transaction.atomic():
        return _record_set(pairs, token, now)


def _record_one_atomic(event, token, result, now) -> str:
    with transaction.atomic():
        return _record_one(event, token, result, now)


def _log_stale(pairs, statuses) -> None:
    for (event, _result), status in zip(pairs, statuses, strict=True):
        if status == "stale":
            logger.warning("outbox event %s: lease lost before the result was recorded; result dropped", event.id)


def _record_one(event: OutboxEvent, token: uuid.UUID, result: Result, now) -> str:
    fields = _fields_for(event, result, now)
    written = OutboxEvent.objects.filter(id=event.id, lease_token=token, status=Status.PROCESSING).update(**fields)
    if written and result.kind == "delivered" and event.operation_type == OutboxEvent.Operation.CREATE:
        registered = handlers.handlers_for(event.aggregate_type)
        if registered and result.external_id:
            registered.created(event.aggregate_id, event.provider_id, result.external_id)
    outcome = _outcome(result, fields, bool(written))
    if outcome:
        DeliveryAttempt.objects.create(
            event_id=event.id,
            started_at=result.started_at or now,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            outcome=outcome,
            error=result.error,
            worker=WORKER,
        )
    return fields["status"] if written else "stale"


# Every column a result may write. A result that leaves a column alone passes NULL for it and
# the COALESCE keeps the row's value; processed_at and last_status_code follow ``attempted``.
_RECORD_SQL = """
UPDATE outbox_app_outboxevent AS e SET
    status = v.status,
    lease_token = NULL,
    locked_until = NULL,
    updated_at = %(now)s,
    processed_at = CASE WHEN v.attempted THEN %(now)s ELSE e.processed_at END,
    last_status_code = CASE WHEN v.attempted THEN v.status_code ELSE e.last_status_code END,
    delivered_at = COALESCE(v.delivered_at, e.delivered_at),
    scheduled_at = COALESCE(v.scheduled_at, e.scheduled_at),
    error_message = COALESCE(v.error_message, e.error_message),
    outcome_unknown = COALESCE(v.outcome_unknown, e.outcome_unknown),
    retry_count = COALESCE(v.retry_count, e.retry_count)
FROM unnest(%(id)s::uuid[], %(status)s::varchar[], %(attempted)s::boolean[], %(status_code)s::integer[],
            %(delivered_at)s::timestamptz[], %(scheduled_at)s::timestamptz[], %(error_message)s::text[],
            %(outcome_unknown)s::boolean[], %(retry_count)s::integer[])
    AS v(id, status, attempted, status_code, delivered_at, scheduled_at, error_message, outcome_unknown, retry_count)
WHERE e.id = v.id AND e.lease_token = %(token)s AND e.status = 'processing'
RETURNING e.id
"""

_ATTEMPTS_SQL = """
INSERT INTO outbox_app_deliveryattempt
    (event_id, started_at, duration_ms, status_code, outcome, error, worker, created_at, updated_at)
SELECT v.*, %(worker)s, %(now)s, %(now)s
FROM unnest(%(event_id)s::uuid[], %(started_at)s::timestamptz[], %(duration_ms)s::integer[],
            %(status_code)s::integer[], %(outcome)s::varchar[], %(error)s::text[]) AS v
"""


def _record_set(pairs: list[tuple[OutboxEvent, Result]], token: uuid.UUID, now) -> list[str]:
    all_fields = [_fields_for(event, result, now) for event, result in pairs]
    params = {
        "now": now,
        "token": token,
        "id": [event.id for event, _ in pairs],
        "status": [f["status"] for f in all_fields],
        "attempted": [result.attempted for _, result in pairs],
        "status_code": [result.status_code for _, result in pairs],
    }
    for column in ("delivered_at", "scheduled_at", "error_message", "outcome_unknown", "retry_count"):
        params[column] = [f.get(column) for f in all_fields]
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_SQL, params)
        written = {row[0] for row in cursor.fetchall()}
        created: dict[str, list[tuple]] = {}
        attempts = []
        for (event, result), fields in zip(pairs, all_fields, strict=True):
            mine = event.id in written
            create = event.operation_type == OutboxEvent.Operation.CREATE
            if mine and result.kind == "delivered" and create and result.external_id:
                created.setdefault(event.aggregate_type, []).append(
                    (event.aggregate_id, event.provider_id, result.external_id)
                )
            outcome = _outcome(result, fields, mine)
            if outcome:
                attempts.append((event.id, result.started_at or now, result.duration_ms, result.status_code,
                                 outcome, result.error))  # fmt: skip
        for aggregate_type, rows in created.items():
            registered = handlers.handlers_for(aggregate_type)
            if registered is None:
                continue
            if registered.created_many is not None:
                registered.created_many(rows)
            else:
                for aggregate_id, provider_id, external_id in rows:
                    registered.created(aggregate_id, provider_id, external_id)
        if attempts:
            columns = list(zip(*attempts, strict=True))
            cursor.execute(
                _ATTEMPTS_SQL,
                {
                    "worker": WORKER,
                    "now": now,
                    **dict(zip(("event_id", "started_at", "duration_ms", "status_code", "outcome", "error"),
                               map(list, columns), strict=True)),
                },
            )  # fmt: skip
    return [
        fields["status"] if event.id in written else "stale"
        for (event, _), fields in zip(pairs, all_fields, strict=True)
    ]


# --- the drain -------------------------------------------------------------------------------------

_pool_lock = threading.Lock()
_pool: dict[str, object] = {"pid": None, "executor": None, "size": 0}


def _executor(size: int) -> ThreadPoolExecutor:
    # One pool per process, created lazily (a pool made before Celery's prefork fork would
    # have no threads in the child).
    with _pool_lock:
        if _pool["pid"] != os.getpid() or _pool["size"] != size:
            _pool.update(pid=os.getpid(), size=size, executor=ThreadPoolExecutor(size, thread_name_prefix="outbox"))
        return _pool["executor"]


@dataclass
class _Batch:
    """One claim on its way: its deliveries running in the pool while the drain does other work."""

    token: uuid.UUID
    events: list[OutboxEvent]
    results: list  # a Future per event, or its Result when delivered inline


def _start_batch(events: list[OutboxEvent], token: uuid.UUID, threads: int) -> _Batch:
    """Start delivering a claimed batch; returns at once when a pool does the calls."""
    # Quota savers (outbox_app/batching.py): updates queued behind a claimed event ride along with it.
    batching.coalesce(events, token)
    external_ids = _current_external_ids(events)
    # Start no new delivery after half the lease: the rest go back to pending.
    deadline = time.monotonic() + settings.OUTBOX_LEASE_SECONDS / 2
    # Events that can share a provider request (Todoist's Sync API) go in batches, one pool task each.
    shared = batching.start(events, external_ids, deadline, _executor(threads) if threads > 1 else None)

    def one(event: OutboxEvent) -> Result:
        with bind_log_context(outbox_event_id=event.id, aggregate_id=event.aggregate_id):
            return _attempt(event, external_ids.get(event.id), deadline)

    if threads > 1 and len(events) > 1:
        pool = _executor(threads)
        # Each call runs in a copy of this context, so log fields (the Celery task id) follow it.
        return _Batch(
            token,
            events,
            [shared[e.id] if e.id in shared else pool.submit(contextvars.copy_context().run, one, e) for e in events],
        )
    return _Batch(token, events, [shared[e.id] if e.id in shared else one(e) for e in events])


def _finish_batch(batch: _Batch, counts: DrainCounts) -> int:
    """Wait for a batch's provider calls, record their results; returns how many were deferred.

    No transaction is open during the calls; the results are written together
    (:func:`record_batch`). A crash before that commit loses the batch's results only: the
    leases expire and the events are reclaimed with outcome_unknown, so a create adopts what
    it made instead of making it twice.
    """
    results = [r.result() if isinstance(r, Future) else r for r in batch.results]
    pairs = list(zip(batch.events, results, strict=True))
    with transaction.atomic():  # coalesced events settle with their carrier, in the same commit
        statuses = record_batch(pairs, batch.token)
        counts.delivered += batching.settle(pairs, statuses, batch.token)
    before = counts.deferred
    for (event, result), status in zip(pairs, statuses, strict=True):
        _count(counts, event, result, status)
    return counts.deferred - before


def _count(counts: DrainCounts, event: OutboxEvent, result: Result, status: str) -> None:
    provider_type = event.provider.type if event.provider else "other"
    if status == "unrecorded":
        return  # its write failed; the lease runs out and the event is reclaimed
    if status == "stale":
        counts.stale += 1
    elif status == Status.DELIVERED:
        counts.delivered += 1
    elif status == Status.FAILED:
        counts.retried += 1
    elif status == Status.PENDING:
        counts.deferred += 1
    elif status == Status.DEAD:
        counts.dead += 1
        logger.error("outbox event %s is dead: %s", event.id, result.error)
    elif status == Status.DISCARDED:
        counts.discarded += 1
    metrics.count_outbox_delivery(provider_type, "stale" if status == "stale" else str(status))


def drain(*, batch_size: int | None = None, max_seconds: float | None = None, threads: int | None = None) -> dict:
    """Deliver due events until none is due or ``max_seconds`` have passed (checked between
    batches); returns the counts {delivered, retried, deferred, dead, discarded, stale, reclaimed}.

    Safe to run any number of times concurrently, in any number of processes.
    """
    batch_size = batch_size or settings.OUTBOX_BATCH_SIZE
    max_seconds = settings.OUTBOX_DRAIN_MAX_SECONDS if max_seconds is None else max_seconds
    threads = threads or settings.OUTBOX_DELIVERY_THREADS
    counts = DrainCounts()
    stop = time.monotonic() + max_seconds
    counts.reclaimed += reclaim_expired()
    # A pipeline one batch deep: the next batch is claimed and its calls started before the
    # previous batch's results are written, so the pool never idles while the drain talks to
    # PostgreSQL. Order per task holds: the next claim skips every task whose earlier event
    # is still in flight (processing), exactly as another worker's claim would.
    pipelined = threads > 1
    in_flight: _Batch | None = None
    first, stopping = True, False
    while True:
        if in_flight is not None and not pipelined:
            # Delivered inline already: nothing to overlap, write it before claiming again.
            stopping = _finish_batch(in_flight, counts) == len(in_flight.events) or stopping
            in_flight = None
        started = None
        if not stopping and (first or time.monotonic() < stop):
            first = False
            token, events = claim(limit=batch_size)
            if events:
                started = _start_batch(events, token, threads)
            elif in_flight is None:
                stopping = True  # nothing due, nothing in flight (else: claim again after it)
        else:
            stopping = True  # out of time: finish what is in flight, claim nothing more
        if in_flight is not None and _finish_batch(in_flight, counts) == len(in_flight.events):
            # Every event had to wait (budgets spent, breakers open): claiming again now would
            # only spin; the next wake-up or beat tick resumes.
            stopping = True
        in_flight = started
        if in_flight is None and stopping:
            break
    result = counts.as_dict()
    if any(result.values()):
        logger.info("outbox drain: %s", result)
    return result
