"""Writes to tasks, assignees and clients. Every entry point (API, admin, webhooks,
commands, jobs) calls these, so the rules live in one place.

A task change and its outbox event are written in one transaction: either both
exist or neither does.
"""

import contextlib
import datetime as dt
import gc
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Count
from django.db.models.base import ModelState
from django.utils import timezone

from archangel import metrics
from archangel.db import LeadSkipped, copy_objs, copy_rows, insert_rows, is_retryable_conflict, one_statement
from archangel.errors import Conflict, InvalidInput, NotFound
from outbox_app.models import OutboxEvent
from outbox_app.services import EventSpec, outbox_copy_many, outbox_enqueue_many
from providers_app.health import set_health
from providers_app.models import Provider
from tasks_app import normalizer, routing, scoring, selectors
from tasks_app.models import Assignee, AssigneeIdentity, Client, RoutingDecision, Task
from tasks_app.normalizer import NormalizationError
from tasks_app.status import CLOSED, INITIAL, OPEN, TaskStatus, allowed_targets, can_transition

# Fields whose change a provider can see; the outbox payload carries them.
SYNCED_FIELDS = ("title", "description", "status", "priority", "effort_hours", "deadline", "assignee_id")


@dataclass
class ItemResult:
    """The outcome of one item of a (bulk) create."""

    index: int
    status: str  # "created" | "duplicate" | "error"
    task: Task | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)


# --- payloads ------------------------------------------------------------------------------


def task_payload(task: Task, *, assignee_external_id: str | None) -> dict[str, Any]:
    """The provider-neutral state of a task as an outbox event carries it (full state, so
    delivering an update twice has the same effect as once)."""
    return {
        "task_id": str(task.id),
        "version": task.version,
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "priority": task.priority,
        "effort_hours": float(task.effort_hours) if task.effort_hours is not None else None,
        "deadline": task.deadline.isoformat() if task.deadline else None,
        "assignee_id": str(task.assignee_id) if task.assignee_id else None,
        "assignee_external_id": assignee_external_id,
        "external_id": task.external_id,
    }


def _identities(pairs: Iterable[tuple[uuid.UUID | None, uuid.UUID | None]]) -> dict[tuple, str]:
    """(assignee id, provider id) -> the assignee's user id at that provider, in one query."""
    pairs = {(a, p) for a, p in pairs if a and p}
    if not pairs:
        return {}
    rows = AssigneeIdentity.objects.filter(
        assignee_id__in={a for a, _ in pairs}, provider_id__in={p for _, p in pairs}
    ).values_list("assignee_id", "provider_id", "external_user_id")
    return {(a, p): ext for a, p, ext in rows}


def _operation_for(old_status: str | None, new_status: str) -> str:
    if old_status is None:
        return OutboxEvent.Operation.CREATE
    if new_status != old_status and new_status == TaskStatus.ARCHIVED:
        return OutboxEvent.Operation.ARCHIVE
    if new_status != old_status and new_status == TaskStatus.COMPLETED:
        return OutboxEvent.Operation.COMPLETE
    return OutboxEvent.Operation.UPDATE


def _events_for(changes: list[tuple[Task, str | None]]) -> list[EventSpec]:
    """One outbox event per (task, status before the change) pair."""
    ids = _identities((task.assignee_id, task.provider_id) for task, _ in changes)
    return [
        EventSpec(
            provider_id=task.provider_id,
            aggregate_id=task.id,
            aggregate_version=task.version,
            operation=_operation_for(old_status, task.status),
            payload=task_payload(task, assignee_external_id=ids.get((task.assignee_id, task.provider_id))),
        )
        for task, old_status in changes
    ]


# --- references ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientInfo:
    importance: Any
    sla_hours: int | None
    preferred_provider_id: uuid.UUID | None


def _check_references(
    items: list[tuple[int, dict]], client_info: dict | None = None
) -> dict[int, dict[str, list[str]]]:
    """Look up every assignee, client and provider id the items name, three queries at most.
    ``client_info``, when given, is filled with the :class:`ClientInfo` of every client found."""
    wanted = {name: {d[name] for _, d in items if d.get(name)} for name in ("assignee", "client", "provider")}
    found: dict[str, dict] = {"assignee": {}, "client": {}, "provider": {}}
    if wanted["assignee"]:
        found["assignee"] = dict(Assignee.objects.filter(id__in=wanted["assignee"]).values_list("id", "active"))
    if wanted["client"]:
        # What scoring and routing need of the client comes with the existence check.
        clients = Client.objects.filter(id__in=wanted["client"]).values_list(
            "id", "importance", "sla_hours", "preferred_provider_id"
        )
        found["client"] = {row[0]: ClientInfo(*row[1:]) for row in clients}
    if wanted["provider"]:
        found["provider"] = dict(Provider.objects.filter(id__in=wanted["provider"]).values_list("id", "health_status"))
    errors: dict[int, dict[str, list[str]]] = {}
    for index, data in items:
        for name in ("assignee", "client", "provider"):
            value = data.get(name)
            if not value:
                continue
            if value not in found[name]:
                errors.setdefault(index, {})[name] = [f"No {name} with id {value}."]
            elif name == "assignee" and not found[name][value]:
                errors.setdefault(index, {})[name] = ["This assignee is inactive."]
            elif name == "provider" and found[name][value] == Provider.Health.DISABLED:
                errors.setdefault(index, {})[name] = ["This provider is disabled."]
    if client_info is not None:
        client_info.update(found["client"])
    return errors


# --- scoring ---------------------------------------------------------------------------------


def score_input(task: Task, client: ClientInfo | Client | None) -> scoring.ScoreInput:
    return scoring.ScoreInput(
        created_at=task.created_at,
        deadline=task.deadline,
        priority=task.priority,
        effort_hours=float(task.effort_hours) if task.effort_hours is not None else None,
        client_importance=float(client.importance) if client is not None else None,
        client_sla_hours=client.sla_hours if client is not None else None,
        last_progress_at=task.last_progress_at,
    )


def _score(task: Task, client: ClientInfo | Client | None, now: dt.datetime) -> None:
    task.score, task.score_breakdown = scoring.score(score_input(task, client), now, settings.SCORE_WEIGHTS)


# --- create --------------------------------------------------------------------------------


def _new_task(data: dict, *, source: str, now: dt.datetime, client: ClientInfo | None = None) -> Task:
    assignee = data.get("assignee")
    status = data.get("status") or (TaskStatus.ASSIGNED if assignee else TaskStatus.PENDING)
    priority = data.get("priority", Task.Priority.NORMAL)
    description = data.get("description", "")
    effort = data.get("effort_hours")
    task = Task(
        id=uuid.uuid4(),
        title=data["title"],
        description=description,
        status=status,
        priority=priority,
        effort_hours=effort
        if effort is not None
        else normalizer.estimate_effort(priority=priority, description=description),
        effort_estimated=effort is None,
        deadline=data.get("deadline"),
        assignee_id=assignee,
        client_id=data.get("client"),
        provider_id=data.get("provider"),
        source=source,
        last_progress_at=now if status not in (TaskStatus.PENDING, TaskStatus.ASSIGNED) else None,
        created_at=now,
        updated_at=now,
    )
    task.fingerprint = normalizer.fingerprint(title=task.title, client_id=task.client_id, deadline=task.deadline)
    _score(task, client, now)
    return task


def _initial_status_errors(data: dict) -> dict[str, list[str]] | None:
    status = data.get("status")
    if status is not None and status not in INITIAL:
        return {"status": [f"A new task must start as one of: {', '.join(sorted(INITIAL))}."]}
    if status == TaskStatus.ASSIGNED and not data.get("assignee"):
        return {"status": ["An assigned task needs an assignee."]}
    return None


def task_bulk_create(*, items: list[Any], source: str = Task.Source.API) -> list[ItemResult]:
    """Create many tasks in one transaction, each with its outbox event.

    Every item gets a result: ``created``, ``duplicate`` (an open task with the
    same fingerprint exists, or an earlier item of this batch is the same task)
    or ``error`` with its field errors. Invalid items do not stop valid ones.
    """
    results: dict[int, ItemResult] = {}
    valid: list[tuple[int, dict]] = []
    for index, raw in enumerate(items):
        try:
            data = normalizer.normalize_task(raw)
        except NormalizationError as exc:
            results[index] = ItemResult(index, "error", errors=exc.fields)
            continue
        errors = _initial_status_errors(data)
        if errors:
            results[index] = ItemResult(index, "error", errors=errors)
        else:
            valid.append((index, data))

    clients: dict[uuid.UUID, ClientInfo] = {}
    for index, errors in _check_references(valid, clients).items():
        results[index] = ItemResult(index, "error", errors=errors)
    now = timezone.now()
    valid = [(index, data) for index, data in valid if index not in results]
    copying = _copies(len(valid))
    with _collector_paused() if copying else contextlib.nullcontext():
        created = _create_valid(valid, results, clients, source=source, now=now, copying=copying)
    for index, task in created:
        results[index] = ItemResult(index, "created", task=task)
    # After the transaction: an attempt that was rolled back and retried never counts twice.
    metrics.count_tasks_created(source, len(created))
    metrics.count_tasks_deduplicated(sum(1 for r in results.values() if r.status == "duplicate"))
    return [results[i] for i in range(len(items))]


def _create_valid(valid, results, clients, *, source, now, copying) -> list[tuple[int, Task]]:
    """Build, route and insert the valid items (by COPY when ``copying``); the created ones."""
    if copying:
        scores: dict[tuple, tuple] = {}
        candidates = [
            (index, _new_task_fast(data, source=source, now=now, client=clients.get(data.get("client")), scores=scores))
            for index, data in valid
        ]
    else:
        candidates = [
            (index, _new_task(data, source=source, now=now, client=clients.get(data.get("client"))))
            for index, data in valid
        ]
    decisions = _route_new([task for _, task in candidates], clients, now=now, row=_decision_tuple if copying else None)

    # A row skipped as a duplicate whose twin closed before we could read it, a twin a
    # concurrent request committed after the COPY path looked (COPY cannot skip a row), or a
    # deadlock with a concurrent request: undo this attempt and run it again.
    for attempt in range(3):
        try:
            with transaction.atomic():
                if copying:
                    created = _insert_copied(candidates, results, decisions, now=now)
                else:
                    created = _insert_new(candidates, results, decisions)
            break
        except (IntegrityError, OperationalError) as exc:
            if attempt == 2 or (isinstance(exc, OperationalError) and not is_retryable_conflict(exc)):
                raise
            if copying:
                # Concurrent imports of the same tasks: the INSERT path's ON CONFLICT waits for
                # and skips their rows itself, where another COPY could lose to them again.
                copying = False
                decisions = {task_id: _decision_from_tuple(row) for task_id, row in decisions.items()}
    return created


def _first_of_each_fingerprint(
    candidates: list[tuple[int, Task]],
) -> tuple[dict[str, tuple[int, Task]], list[tuple[int, str]]]:
    """The first candidate of each fingerprint (by fingerprint) and the later ones as
    ``(index, fingerprint)``: an import that names a task twice creates it once."""
    first: dict[str, tuple[int, Task]] = {}
    repeats: list[tuple[int, str]] = []
    for index, task in candidates:
        if task.fingerprint in first:
            repeats.append((index, task.fingerprint))
        else:
            first[task.fingerprint] = (index, task)
    return first, repeats


def _insert_new(
    candidates: list[tuple[int, Task]], results: dict[int, ItemResult], decisions: dict[uuid.UUID, RoutingDecision]
) -> list[tuple[int, Task]]:
    """Insert the candidates that are not duplicates, with their outbox events.

    The partial unique index on open fingerprints decides what is a duplicate:
    rows it refuses are skipped by ``ON CONFLICT DO NOTHING`` (waiting, under
    concurrency, for the other transaction to commit) and answered with their twin.
    """
    first, repeats = _first_of_each_fingerprint(candidates)
    # Inserted in fingerprint order: two requests that share tasks then wait for each
    # other's rows in the same order and cannot deadlock.
    ordered = sorted((task for _, task in first.values()), key=lambda task: task.fingerprint)
    # The rows that go with a few new tasks (audit entries, outbox events, routing decisions)
    # travel as one statement at the end of this block: one round trip, not three.
    with one_statement():
        return _insert_with_rows(first, repeats, ordered, results, decisions)


def _insert_with_rows(first, repeats, ordered, results, decisions) -> list[tuple[int, Task]]:
    written = insert_rows(ordered, skip_conflicts=True)
    skipped = {task.fingerprint for _, task in first.values() if task.pk not in written}
    twins: dict[str, Task] = {}
    if skipped:
        twins = {t.fingerprint: t for t in Task.objects.filter(fingerprint__in=skipped).exclude(status__in=CLOSED)}
        if skipped - set(twins):
            # The twin closed between our insert and this read (or another unique
            # constraint refused the row): undo this attempt and try again.
            raise IntegrityError("a skipped task has no open twin")
    created: list[tuple[int, Task]] = []
    for index, task in first.values():
        if task.pk in written:
            created.append((index, task))
        else:
            results[index] = ItemResult(index, "duplicate", task=twins[task.fingerprint])
    for index, fingerprint in repeats:
        original = first[fingerprint][1]
        results[index] = ItemResult(index, "duplicate", task=original if original.pk in written else twins[fingerprint])
    outbox_enqueue_many(events=_events_for([(task, None) for _, task in created]))
    insert_rows([decisions[task.id] for _, task in created if task.id in decisions])
    for _, task in created:
        task._routing = decisions.get(task.id)  # the API shows it without reading it back
    return created


# --- bulk: the COPY path ------------------------------------------------------------------------
#
# A bulk import on PostgreSQL writes its tasks, their outbox events and routing decisions with
# COPY (``archangel.db.copy_rows``), and builds no model instance through ``Model.__init__``: on
# a 1,000-task import, three instances per task (signals, field descriptors) and the column arrays
# of ``insert_rows`` were most of the request's CPU. Same rows, same results, same transaction
# as the INSERT path above, which single creates, small batches and SQLite keep
# (tests/api/test_bulk_copy.py holds the two equal).

# Candidates above which a bulk create on PostgreSQL takes the COPY path; at or below it, one
# INSERT per table (deferred into one statement for a single create) costs less.
COPY_MIN_ROWS = 20


def _copies(n: int) -> bool:
    return n > COPY_MIN_ROWS and transaction.get_connection().vendor == "postgresql"


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one bulk import. Its tens of thousands of
    new objects (instances, payloads, rows) all live until the import ends, and each pass of
    the collector walked all of them again: a sixth of the import's CPU, for no garbage
    (measured in-process, docs/benchmarks.md "Bulk"). Reference counting still frees
    everything as usual. Process-wide, so never longer than the import itself: the import that
    paused it resumes it, and one that found it paused (a concurrent import) leaves it alone."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


# What _new_task_fast does not set: each remaining field's default, read once from the model.
_task_defaults: dict[str, Any] | None = None
_FAST_FIELDS = frozenset(
    {"id", "title", "description", "status", "priority", "effort_hours", "effort_estimated", "deadline",
     "assignee_id", "client_id", "provider_id", "source", "last_progress_at", "created_at", "updated_at",
     "fingerprint", "score", "score_breakdown"}
)  # fmt: skip


def _defaults() -> dict[str, Any]:
    global _task_defaults
    if _task_defaults is None:
        rest = [f for f in Task._meta.concrete_fields if f.attname not in _FAST_FIELDS]
        # Shared by every instance: a callable default (a fresh dict, say) would need a call per task.
        assert not any(f.has_default() and callable(f.default) for f in rest), "set it in _new_task_fast"
        _task_defaults = {f.attname: f.get_default() for f in rest}
    return _task_defaults


def _new_task_fast(
    data: dict, *, source: str, now: dt.datetime, client: ClientInfo | None, scores: dict[tuple, tuple]
) -> Task:
    """``_new_task`` for the COPY path: the same values, in an instance made without
    ``Model.__init__`` (its attributes set at once), created and updated at ``now``, the instant
    it is scored at. No ``post_init``: its one receiver, the audit's snapshot, is taken when the
    insert is announced (``rows_inserted``), as it must be after routing. ``scores`` keeps the
    score of each distinct input: the tasks of an import mostly share one (priority, no deadline)."""
    assignee = data.get("assignee")
    status = data.get("status") or (TaskStatus.ASSIGNED if assignee else TaskStatus.PENDING)
    priority = data.get("priority", Task.Priority.NORMAL)
    description = data.get("description", "")
    effort = data.get("effort_hours")
    title = data["title"]
    client_id = data.get("client")
    deadline = data.get("deadline")
    effort_hours = (
        effort if effort is not None else normalizer.estimate_effort(priority=priority, description=description)
    )
    last_progress_at = now if status not in (TaskStatus.PENDING, TaskStatus.ASSIGNED) else None
    task = Task.__new__(Task)
    task.__dict__.update(_defaults())
    task.__dict__.update(
        _state=ModelState(),
        id=uuid.uuid4(),
        title=title,
        description=description,
        status=status,
        priority=priority,
        effort_hours=effort_hours,
        effort_estimated=effort is None,
        deadline=deadline,
        assignee_id=assignee,
        client_id=client_id,
        provider_id=data.get("provider"),
        source=source,
        last_progress_at=last_progress_at,
        created_at=now,
        updated_at=now,
        fingerprint=normalizer.fingerprint(title=title, client_id=client_id, deadline=deadline),
    )
    # Everything score_input reads, created_at being now for all.
    key = (deadline, priority, effort_hours, client, last_progress_at)
    scored = scores.get(key)
    if scored is None:
        scored = scores[key] = scoring.score(score_input(task, client), now, settings.SCORE_WEIGHTS)
    task.score, breakdown = scored
    task.score_breakdown = dict(breakdown)
    return task


# RoutingDecision's columns, in the order _decision_tuple gives them.
_DECISION_COLUMNS = (
    "id", "task_id", "provider_id", "assignee_id", "trigger", "chose_provider", "reason", "candidates",
    "margin_hours", "over_capacity", "duration_ms", "created_at", "updated_at",
)  # fmt: skip


def _decision_tuple(task: Task, decision: routing.Decision, seconds: float, at: dt.datetime) -> tuple:
    """``_decision_row`` as the row COPY writes: created at ``at`` (``now`` plus a microsecond per
    task, so the round-robin cursor, the latest decision with an assignee, follows the batch)."""
    return (
        uuid.uuid4(), task.id, decision.provider_id, decision.assignee_id, "create", decision.chose_provider,
        decision.reason[:500], json.dumps(decision.candidates), decision.margin_hours, decision.over_capacity,
        round(seconds * 1000, 3), at, at,
    )  # fmt: skip


def _decision_from_tuple(row: tuple) -> RoutingDecision:
    values = dict(zip(_DECISION_COLUMNS, row, strict=True))
    values["candidates"] = json.loads(values["candidates"])
    return RoutingDecision(**values)


def _open_twins(fingerprints: list[str]) -> dict[str, Task]:
    """The open task of each fingerprint that has one: one look-up by the open-fingerprint
    index, and a read of whole tasks only for the (usually no) duplicates found."""
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            "SELECT id FROM tasks_app_task WHERE fingerprint = ANY(%s) AND NOT (status = ANY(%s))",
            [fingerprints, sorted(CLOSED)],
        )
        ids = [row[0] for row in cursor.fetchall()]
    return {t.fingerprint: t for t in Task.objects.filter(pk__in=ids)} if ids else {}


def _insert_copied(
    candidates: list[tuple[int, Task]], results: dict[int, ItemResult], decisions: dict[uuid.UUID, tuple], *, now
) -> list[tuple[int, Task]]:
    """``_insert_new`` with COPY. COPY cannot skip a row, so the open twins are looked up first
    and left out; a twin committed by a concurrent request after that look-up makes the COPY
    fail on the open-fingerprint index (after waiting for that request, as the INSERT's ``ON
    CONFLICT`` waits), and the caller runs the attempt again, through ``_insert_new``. The tasks
    carry no ``_routing`` (the bulk answer shows ids only; a serializer reads the decision back)."""
    first, repeats = _first_of_each_fingerprint(candidates)
    twins = _open_twins(list(first))
    # Written in fingerprint order: two imports that share tasks wait for each other's rows in
    # the same order and cannot deadlock (as _insert_new).
    new = sorted((task for _, task in first.values() if task.fingerprint not in twins), key=attrgetter("fingerprint"))
    copy_objs(new)
    created: list[tuple[int, Task]] = []
    for index, task in first.values():
        if task.fingerprint in twins:
            results[index] = ItemResult(index, "duplicate", task=twins[task.fingerprint])
        else:
            created.append((index, task))
    for index, fingerprint in repeats:
        results[index] = ItemResult(index, "duplicate", task=twins.get(fingerprint) or first[fingerprint][1])
    outbox_copy_many(events=_events_for([(task, None) for _, task in created]), now=now)
    copy_rows(RoutingDecision, _DECISION_COLUMNS, [decisions[task.id] for _, task in created if task.id in decisions])
    return created


# --- routing -----------------------------------------------------------------------------------


def _route_new(tasks: list[Task], clients: dict[uuid.UUID, ClientInfo], *, now: dt.datetime, row=None) -> dict:
    """Give every task without a provider or an assignee both (``tasks_app/routing.py``), in
    place; returns the unsaved :class:`RoutingDecision` of each routed task by task id (or what
    ``row`` makes of it: the COPY path's plain tuples, ``_decision_tuple``).

    The inputs (providers, health, load, people) are read once for the whole batch and
    updated as each task is routed, so a bulk request spreads its own work too.
    """
    todo = [task for task in tasks if task.provider_id is None or task.assignee_id is None]
    if not todo:
        return {}
    started = time.perf_counter()
    inputs = selectors.routing_inputs()
    load_share = (time.perf_counter() - started) / len(todo)
    decisions: dict[uuid.UUID, RoutingDecision] = {}
    routed: dict[str, int] = {}
    for i, task in enumerate(todo):
        t0 = time.perf_counter()
        client = clients.get(task.client_id)
        chose_provider = task.provider_id is None
        decision = routing.decide(
            routing.Request(
                effort_hours=float(task.effort_hours or 0),
                provider_id=task.provider_id,
                assignee_id=task.assignee_id,
                preferred_provider_id=client.preferred_provider_id if client else None,
            ),
            inputs,
        )
        _apply_decision(task, decision)
        seconds = time.perf_counter() - t0 + load_share
        metrics.observe_routing_seconds(seconds)
        decisions[task.id] = (row or _decision_row)(task, decision, seconds, now + dt.timedelta(microseconds=i))
        if chose_provider and decision.provider_id in inputs.providers:
            provider_type = inputs.providers[decision.provider_id].type
            routed[provider_type] = routed.get(provider_type, 0) + 1
    for provider_type, n in routed.items():
        metrics.count_tasks_routed(provider_type, n)
    return decisions


def _apply_decision(task: Task, decision: routing.Decision) -> None:
    task.provider_id = decision.provider_id
    if task.assignee_id is None and decision.assignee_id is not None:
        task.assignee_id = decision.assignee_id
        if task.status == TaskStatus.PENDING:
            task.status = TaskStatus.ASSIGNED


def _decision_row(
    task: Task, decision: routing.Decision, seconds: float, at: dt.datetime, trigger: str = "create"
) -> RoutingDecision:
    return RoutingDecision(
        id=uuid.uuid4(),
        task_id=task.id,
        provider_id=decision.provider_id,
        assignee_id=decision.assignee_id,
        trigger=trigger,
        chose_provider=decision.chose_provider,
        reason=decision.reason[:500],
        candidates=decision.candidates,
        margin_hours=decision.margin_hours,
        over_capacity=decision.over_capacity,
        duration_ms=round(seconds * 1000, 3),
        created_at=at,
        updated_at=at,
    )


def routing_preview(*, data: Any) -> dict[str, Any]:
    """The decision ``POST /api/tasks`` would make for this body, without writing anything."""
    normalized = normalizer.normalize_task(data)
    clients: dict[uuid.UUID, ClientInfo] = {}
    errors = _check_references([(0, normalized)], clients)
    if errors:
        raise InvalidInput(errors[0])
    now = timezone.now()
    task = _new_task(normalized, source=Task.Source.API, now=now, client=clients.get(normalized.get("client")))
    started = time.perf_counter()
    inputs = selectors.routing_inputs()
    client = clients.get(task.client_id)
    decision = routing.decide(
        routing.Request(
            effort_hours=float(task.effort_hours or 0),
            provider_id=task.provider_id,
            assignee_id=task.assignee_id,
            preferred_provider_id=client.preferred_provider_id if client else None,
        ),
        inputs,
    )
    return {
        **decision.as_dict(),
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "effort_hours": float(task.effort_hours) if task.effort_hours is not None else None,
        "score": task.score,
    }


def task_create(*, data: Any, source: str = Task.Source.API) -> tuple[Task, bool]:
    """Create one task (or find its open duplicate). Returns ``(task, created)``.

    The rules and rows of one item of :func:`task_bulk_create` (tests/api/test_create_one_statement.py
    holds the two equal), written the cheapest way a single row allows: the task, its audit
    entry, its outbox event and its routing decision as one statement, in which the task row
    leads and the others are written only if it is (``archangel.db.one_statement``). When the
    task's open fingerprint is taken (a duplicate), nothing is written and the open twin is read.
    """
    try:
        normalized = normalizer.normalize_task(data)
    except NormalizationError as exc:
        raise NormalizationError(exc.fields) from None
    errors = _initial_status_errors(normalized)
    if errors:
        raise NormalizationError(errors)
    clients: dict[uuid.UUID, ClientInfo] = {}
    errors_by_item = _check_references([(0, normalized)], clients)
    if errors_by_item:
        raise NormalizationError(errors_by_item[0])
    now = timezone.now()
    task = _new_task(normalized, source=source, now=now, client=clients.get(normalized.get("client")))
    decision = _route_new([task], clients, now=now).get(task.id)

    # As in task_bulk_create: a duplicate whose twin closed before we could read it, or a
    # deadlock with a concurrent request, runs the attempt again.
    twin = None
    for attempt in range(3):
        try:
            if _insert_one(task, decision):
                break
            twin = Task.objects.filter(fingerprint=task.fingerprint).exclude(status__in=CLOSED).first()
            if twin is not None:
                break
            raise IntegrityError("a skipped task has no open twin")
        except (IntegrityError, OperationalError) as exc:
            if attempt == 2 or (isinstance(exc, OperationalError) and not is_retryable_conflict(exc)):
                raise
    # After the transaction: an attempt that was rolled back and retried never counts twice.
    metrics.count_tasks_created(source, 0 if twin else 1)
    metrics.count_tasks_deduplicated(1 if twin else 0)
    return (twin, False) if twin else (task, True)


def _insert_one(task: Task, decision: RoutingDecision | None) -> bool:
    """Write a new task with its audit entry, outbox event and routing decision, in one
    transaction; False (nothing written) when an open task has its fingerprint."""
    try:
        # Nothing runs in the transaction after the statement: it can be the whole transaction.
        with transaction.atomic(), one_statement(ends_transaction=True):
            # The partial unique index on open fingerprints skips the row of a duplicate (after
            # waiting, under concurrency, for the transaction that holds its twin to end).
            if not insert_rows([task], skip_conflicts=True, lead=True):
                return False  # not PostgreSQL: the insert ran now and was skipped
            outbox_enqueue_many(events=_events_for([(task, None)]))
            if decision is not None:
                insert_rows([decision])
    except LeadSkipped:
        return False
    task._routing = decision  # the API shows it without reading it back
    return True


# --- update and archive ------------------------------------------------------------------------


def _locked_task(task_id: Any) -> Task:
    # Row lock: concurrent updates of one task apply one after the other, and each
    # gets its own version (the order its outbox events are delivered in).
    try:
        return Task.objects.select_for_update().get(pk=task_id)
    except (Task.DoesNotExist, ValueError, DjangoValidationError):
        raise NotFound("No task with this id.") from None


def task_update(*, task_id: Any, data: Any, partial: bool) -> Task:
    """Apply a PUT (``partial=False``: title required) or PATCH to a task.

    Fields a PUT leaves out keep their values (DRF's convention). Status changes
    follow the transition table; setting an assignee on a pending task makes it
    assigned, removing it from an assigned task makes it pending. A change that
    changes nothing writes nothing; a change no provider can see (the client, say)
    writes the task but no outbox event.
    """
    changes = normalizer.normalize_task(data, partial=partial)
    with transaction.atomic():
        task = _locked_task(task_id)
        if task.status == TaskStatus.ARCHIVED:
            raise Conflict("An archived task cannot be changed.", details={"status": task.status, "allowed": []})
        if "provider" in changes and changes["provider"] != task.provider_id:
            raise InvalidInput({"provider": ["Cannot be changed after creation; reroute the task instead."]})
        # Only references that change are checked, so sending a task back as it was read
        # works even if its assignee has been deactivated since.
        new_refs = {
            k: changes[k] for k in ("assignee", "client") if k in changes and changes[k] != getattr(task, f"{k}_id")
        }
        ref_errors = _check_references([(0, new_refs)])
        if ref_errors:
            raise InvalidInput(ref_errors[0])
        return _save_changes(task, changes)


def task_archive(*, task_id: Any) -> Task:
    """Archive a task (DELETE /api/tasks/{id}): the row stays. Archiving twice is a no-op."""
    with transaction.atomic():
        task = _locked_task(task_id)
        if task.status == TaskStatus.ARCHIVED:
            return task
        return _save_changes(task, {"status": TaskStatus.ARCHIVED})


def _save_changes(task: Task, changes: dict[str, Any]) -> Task:
    old_status = task.status
    changed = _apply_changes(task, changes)
    if not changed:
        return task
    task.version += 1
    # Any change rescores (the clock moved too); the beat job keeps untouched tasks current.
    _score(task, task.client if task.client_id else None, timezone.now())
    try:
        with transaction.atomic():
            task.save()
    except IntegrityError:
        twin = Task.objects.filter(fingerprint=task.fingerprint).exclude(status__in=CLOSED).exclude(pk=task.pk).first()
        if twin is None:
            raise
        raise Conflict(
            "An open task with the same title, client and deadline day already exists.",
            details={"duplicate_of": str(twin.pk)},
        ) from None
    if changed & set(SYNCED_FIELDS):
        outbox_enqueue_many(events=_events_for([(task, old_status)]))
    return task


def _apply_changes(task: Task, changes: dict[str, Any], *, remote: bool = False) -> set[str]:
    """Set the changed fields on ``task`` (not saved); return their names.

    ``remote``: the change already happened at the provider (a webhook or a pull), so it
    is a fact to record, not a request to check against the transition table.
    """
    now = timezone.now()
    changed: set[str] = set()

    def put(name: str, value: Any) -> None:
        if getattr(task, name) != value:
            setattr(task, name, value)
            changed.add(name)

    for name in ("title", "description", "priority", "deadline"):
        if name in changes:
            put(name, changes[name])
    if "client" in changes:
        put("client_id", changes["client"])
    if "assignee" in changes:
        put("assignee_id", changes["assignee"])

    target = changes.get("status", task.status)
    if "status" not in changes and "assignee_id" in changed:
        # Assigning a pending task assigns it; unassigning an assigned task puts it back.
        if task.assignee_id and task.status == TaskStatus.PENDING:
            target = TaskStatus.ASSIGNED
        elif not task.assignee_id and task.status == TaskStatus.ASSIGNED:
            target = TaskStatus.PENDING
    if target != task.status:
        if not remote and not can_transition(task.status, target):
            raise Conflict(
                f"Cannot move a task from {task.status} to {target}.",
                details={"status": task.status, "allowed": allowed_targets(task.status)},
            )
        put("status", target)
        if target == TaskStatus.COMPLETED:
            task.completed_at = now
        elif target != TaskStatus.ARCHIVED:
            task.completed_at = None  # reopened; archiving keeps the completion on record
        if target != TaskStatus.ARCHIVED:
            task.last_progress_at = now
    if task.status == TaskStatus.ASSIGNED and not task.assignee_id and remote:
        put("status", TaskStatus.PENDING)
    elif task.status == TaskStatus.ASSIGNED and not task.assignee_id:
        raise InvalidInput({"status": ["An assigned task needs an assignee."]})

    if "effort_hours" in changes and changes["effort_hours"] is not None:
        put("effort_hours", changes["effort_hours"])
        put("effort_estimated", False)
    elif changes.get("effort_hours", 0) is None or (task.effort_estimated and changed & {"description", "priority"}):
        put("effort_hours", normalizer.estimate_effort(priority=task.priority, description=task.description))
        put("effort_estimated", True)

    if changed & {"title", "client_id", "deadline"}:
        task.fingerprint = normalizer.fingerprint(title=task.title, client_id=task.client_id, deadline=task.deadline)
    return changed


# --- assignees and clients -------------------------------------------------------------------


def assignee_save(*, assignee: Assignee | None, data: dict[str, Any]) -> Assignee:
    """Create (``assignee=None``) or update an assignee; ``identities``, when given,
    replaces the person's provider identities ([{provider, external_user_id}])."""
    data = dict(data)
    identities = data.pop("identities", None)
    with transaction.atomic():
        if assignee is None:
            assignee = Assignee.objects.create(**data)
        else:
            for name, value in data.items():
                setattr(assignee, name, value)
            assignee.save()
        if identities is not None:
            assignee.identities.all().delete()
            AssigneeIdentity.objects.bulk_create(
                AssigneeIdentity(
                    assignee=assignee, provider_id=item["provider"].pk, external_user_id=item["external_user_id"]
                )
                for item in identities
            )
    return assignee


def _delete_unless_open_tasks(obj: Assignee | Client, label: str) -> None:
    open_count = obj.tasks.exclude(status__in=CLOSED).count()
    if open_count:
        raise Conflict(
            f"This {label} has {open_count} open task(s); reassign or close them first"
            + (", or deactivate the assignee instead." if label == "assignee" else "."),
            details={"open_tasks": open_count},
        )
    obj.delete()  # closed tasks keep their history with the reference cleared (SET_NULL)


def assignee_delete(*, assignee: Assignee) -> None:
    _delete_unless_open_tasks(assignee, "assignee")


def client_delete(*, client: Client) -> None:
    _delete_unless_open_tasks(client, "client")


# --- bulk rescoring ----------------------------------------------------------------------------

RESCORE_BATCH = 5000


def tasks_rescore_open(*, now: dt.datetime | None = None, batch_size: int = RESCORE_BATCH) -> int:
    """Recompute the score of every open task (time alone moves urgency, freshness, SLA
    pressure and progress); returns how many rows changed.

    Keyset batches of ``batch_size`` tasks, each batch its own short transaction, so the job
    never holds many row locks at once. A row is only written when its score or breakdown
    changed, and only if its ``version`` is still the one read: a task changed meanwhile was
    already rescored by ``task_update`` and is left alone. ``updated_at`` and ``version`` are
    not touched: a new score is not a change a provider sees.

    On PostgreSQL each batch is one statement that computes the formula in SQL
    (``scoring.sql_factors``, the Python formula expressed operation for operation and held
    equal to it by a test) and updates the rows in place: nothing is read into Python. Reading
    100,000 tasks out, scoring them in Python and writing them back took ten times as long as
    reading them. Elsewhere (SQLite in development) the rows are scored in Python.
    """
    now = now or timezone.now()
    if transaction.get_connection().vendor == "postgresql":
        return _rescore_in_sql(now, batch_size)
    return _rescore_in_python(now, batch_size)


def _rescore_in_python(now: dt.datetime, batch_size: int) -> int:
    weights = settings.SCORE_WEIGHTS
    last_id = None
    changed = 0
    columns = (
        "id", "version", "created_at", "deadline", "priority", "effort_hours", "last_progress_at",
        "client__importance", "client__sla_hours",
    )  # fmt: skip
    while True:
        rows = Task.objects.exclude(status__in=CLOSED).order_by("id")
        if last_id is not None:
            rows = rows.filter(id__gt=last_id)
        batch = list(rows.values_list(*columns)[:batch_size])
        if not batch:
            return changed
        last_id = batch[-1][0]
        updates = []
        for task_id, version, created_at, deadline, priority, effort, progress, importance, sla in batch:
            value, breakdown = scoring.score(
                scoring.ScoreInput(
                    created_at=created_at,
                    deadline=deadline,
                    priority=priority,
                    effort_hours=float(effort) if effort is not None else None,
                    client_importance=float(importance) if importance is not None else None,
                    client_sla_hours=sla,
                    last_progress_at=progress,
                ),
                now,
                weights,
            )
            updates.append((task_id, version, value, breakdown))
        changed += _write_scores(updates)


def rescore_sql(*, first: bool = False) -> str:
    """One batch of ``_rescore_in_sql``: the next ``%(limit)s`` open tasks after ``%(after)s`` (by
    id; from the lowest when ``first``) scored at ``%(now)s`` and written where they changed;
    returns the batch's last id and the number of rows written."""
    after = "TRUE" if first else "t.id > %(after)s::uuid"
    factors = scoring.sql_factors(now="%(now)s::timestamptz", task="t", client="c")
    score, breakdown = scoring.sql_score(factors="f", weights="w")
    weights = ", ".join(f"%({name})s::float8 AS {name}" for name in scoring.FACTORS)
    closed = ", ".join(f"'{status}'" for status in sorted(CLOSED))
    # Built from this module's constants and scoring's; every value travels as a parameter.
    batch = (
        "SELECT t.id, t.version, "  # noqa: S608
        + ", ".join(f"{expr} AS {name}" for name, expr in factors.items())
        + " FROM tasks_app_task t LEFT JOIN tasks_app_client c ON c.id = t.client_id"
        f" WHERE t.status NOT IN ({closed}) AND {after} ORDER BY t.id LIMIT %(limit)s"
    )
    return (
        f"WITH batch AS ({batch}), scored AS ("  # noqa: S608
        f"  SELECT f.id, f.version, {score} AS score, {breakdown} AS breakdown"
        f"  FROM batch f CROSS JOIN (SELECT {weights}) w"
        "), written AS ("
        "  UPDATE tasks_app_task AS t SET score = s.score, score_breakdown = s.breakdown FROM scored s"
        # The id range lets the join read only this batch's rows by primary key, not the table.
        f"  WHERE t.id = s.id AND {after} AND t.id <= (SELECT id FROM batch ORDER BY id DESC LIMIT 1)"
        "  AND t.version = s.version"
        "  AND (t.score IS DISTINCT FROM s.score OR t.score_breakdown IS DISTINCT FROM s.breakdown)"
        "  RETURNING 1"
        ") SELECT (SELECT id FROM batch ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM written)"
    )


def _rescore_in_sql(now: dt.datetime, batch_size: int) -> int:
    first, following = rescore_sql(first=True), rescore_sql()
    params: dict[str, Any] = {"now": now, "limit": batch_size, **settings.SCORE_WEIGHTS}
    after = None
    changed = 0
    connection = transaction.get_connection()
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(first if after is None else following, {**params, "after": after})
            last, written = cursor.fetchone()
        if last is None:
            return changed
        after, changed = last, changed + written


def _write_scores(updates: list[tuple[uuid.UUID, int, float, dict]]) -> int:
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        # Portable path (SQLite in development): per-row conditional updates in one transaction.
        count = 0
        with transaction.atomic():
            for task_id, version, value, breakdown in updates:
                count += Task.objects.filter(id=task_id, version=version).update(score=value, score_breakdown=breakdown)
        return count
    import json

    sql = (
        "UPDATE tasks_app_task AS t SET score = v.score, score_breakdown = v.breakdown "
        "FROM unnest(%s::uuid[], %s::int[], %s::float8[], %s::jsonb[]) AS v(id, version, score, breakdown) "
        "WHERE t.id = v.id AND t.version = v.version "
        "AND (t.score IS DISTINCT FROM v.score OR t.score_breakdown IS DISTINCT FROM v.breakdown)"
    )
    params = [
        [u[0] for u in updates],
        [u[1] for u in updates],
        [u[2] for u in updates],
        [json.dumps(u[3]) for u in updates],
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# --- provider down ------------------------------------------------------------------------------

MOVE_BATCH = 200
_MOVABLE_EVENTS = [OutboxEvent.Status.PENDING, OutboxEvent.Status.FAILED]


def provider_went_down(*, provider_id: Any, policy: str | None = None) -> dict[str, Any]:
    """A provider went down (``POST /api/events/provider-down``, or the circuit breaker
    opening: the breaker code marks the provider down and then calls this). Safe to call
    again: everything it does is conditional on the current state.

    The provider is marked ``down`` (unless disabled), so new tasks route around it at once.
    Its undelivered tasks then follow ``policy`` (default ``ARCHANGEL_PROVIDER_DOWN_POLICY``):

    - ``wait``: nothing moves; their outbox events wait (retrying with backoff) until the
      provider is back.
    - ``move``: a task moves to another available provider when all of these hold: routing
      chose its provider (a provider fixed by the caller is kept), it has no external id,
      and its create event is still ``pending`` or ``failed`` and not claimed by a drain
      worker (we lock the task's undelivered events with ``SKIP LOCKED``; any locked or in
      flight, the task waits). Its pending/failed events are re-pointed to the new provider
      (same versions, same idempotency keys, so the outbox still sends one create per
      provider, in version order) with the assignee's user id at the new provider. The task
      keeps its assignee if that person has an identity on an available provider; otherwise
      it is routed to someone who has, through the normal update path (a new version and
      its update event). Each move stores a RoutingDecision (trigger ``provider_down``).

    Caveat: a ``failed`` create whose last attempt had an unknown outcome (a timeout) may
    exist at the old provider; moving it can leave an orphan there (docs/reliability.md).
    """
    policy = policy or settings.ARCHANGEL["PROVIDER_DOWN_POLICY"]
    if policy not in ("wait", "move"):
        raise InvalidInput({"policy": ["Must be wait or move."]})
    try:
        provider = Provider.objects.get(pk=provider_id)
    except (Provider.DoesNotExist, ValueError, DjangoValidationError):
        raise InvalidInput({"provider": [f"No provider with id {provider_id}."]}) from None
    set_health(
        Provider.objects.filter(pk=provider.pk, health_status__in=[Provider.Health.ACTIVE, Provider.Health.DEGRADED]),
        Provider.Health.DOWN,
        updated_at=timezone.now(),
    )
    return _apply_down_policy(provider, policy)


def providers_down_reroute() -> list[dict[str, Any]]:
    """Beat job: with the ``move`` policy, move the undelivered tasks of every provider that is
    unavailable now (down, disabled, or its circuit breaker open; ``unavailable_provider_ids``).
    This is how a breaker opening reaches the policy: providers_app cannot call tasks_app
    (dependency direction), so this job looks every minute. With ``wait`` it does nothing."""
    if settings.ARCHANGEL["PROVIDER_DOWN_POLICY"] != "move":
        return []
    from providers_app.health import unavailable_provider_ids

    return [_apply_down_policy(p, "move") for p in Provider.objects.filter(pk__in=unavailable_provider_ids())]


def _apply_down_policy(provider: Provider, policy: str) -> dict[str, Any]:
    undelivered = Task.objects.filter(provider_id=provider.pk, external_id__isnull=True, status__in=sorted(OPEN))
    moved = 0
    if policy == "move":
        candidates = list(
            undelivered.filter(routing_decisions__provider_id=provider.pk, routing_decisions__chose_provider=True)
            .order_by("id")
            .values_list("id", flat=True)
            .distinct()
        )
        for start in range(0, len(candidates), MOVE_BATCH):
            moved += _move_tasks(provider.pk, candidates[start : start + MOVE_BATCH])
    return {"provider": str(provider.pk), "policy": policy, "moved": moved, "waiting": undelivered.count()}


def _move_tasks(provider_id: uuid.UUID, task_ids: list[uuid.UUID]) -> int:
    with transaction.atomic():
        # Events first, then tasks: the drain locks in that order too, so we cannot deadlock with it.
        events = list(
            OutboxEvent.objects.select_for_update(skip_locked=True)
            .filter(aggregate_type="task", aggregate_id__in=task_ids, provider_id=provider_id)
            .order_by("aggregate_id", "aggregate_version")
        )
        by_task: dict[uuid.UUID, list[OutboxEvent]] = {}
        for event in events:
            by_task.setdefault(event.aggregate_id, []).append(event)
        movable = [
            tid
            for tid, evs in by_task.items()
            if evs[0].operation_type == OutboxEvent.Operation.CREATE and all(e.status in _MOVABLE_EVENTS for e in evs)
        ]
        # A task with an event we could not lock (a worker holds it) has fewer events here than in
        # the table: it waits.
        counts = dict(
            OutboxEvent.objects.filter(aggregate_type="task", aggregate_id__in=movable)
            .values_list("aggregate_id")
            .annotate(n=Count("id"))
            .order_by()
        )
        movable = [tid for tid in movable if counts.get(tid) == len(by_task[tid])]
        if not movable:
            return 0
        tasks = list(
            Task.objects.select_for_update()
            .filter(pk__in=movable, provider_id=provider_id, external_id__isnull=True)
            .order_by("id")
        )
        inputs = selectors.routing_inputs()
        now = timezone.now()
        decisions = []
        moved = 0
        for i, task in enumerate(tasks):
            t0 = time.perf_counter()
            effort = float(task.effort_hours or 0)
            keep = inputs.assignees.get(task.assignee_id) if task.assignee_id else None
            if keep is not None and not any(
                pid != provider_id and not p.unavailable_reason and p.weight > 0
                for pid, p in inputs.providers.items()
                if pid in keep.provider_ids
            ):
                keep = None
            if keep is not None:
                keep.open_hours -= effort  # counted already; decide() adds it back
            decision = routing.decide(
                routing.Request(
                    effort_hours=effort,
                    assignee_id=keep.id if keep else None,
                    exclude_provider_ids=frozenset({provider_id}),
                ),
                inputs,
            )
            if decision.provider_id is None:
                continue  # nowhere to go: it waits
            identities = dict(
                AssigneeIdentity.objects.filter(provider_id=decision.provider_id).values_list(
                    "assignee_id", "external_user_id"
                )
            )
            for event in by_task[task.id]:
                assignee = event.payload.get("assignee_id")
                event.provider_id = decision.provider_id
                event.updated_at = now
                event.payload["assignee_external_id"] = identities.get(uuid.UUID(assignee)) if assignee else None
            OutboxEvent.objects.bulk_update(by_task[task.id], ["provider", "payload", "updated_at"])
            task.provider_id = decision.provider_id
            if decision.assignee_id != task.assignee_id:
                _save_changes(task, {"assignee": decision.assignee_id})
            else:
                task.save(update_fields=["provider", "updated_at"])
            seconds = time.perf_counter() - t0
            decisions.append(
                _decision_row(task, decision, seconds, now + dt.timedelta(microseconds=i), trigger="provider_down")
            )
            moved += 1
        insert_rows(decisions)
        return moved
