"""Reads of tasks, assignees and routing state, shaped for the pure modules (routing, planner)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Sum
from django.db.models.signals import post_delete, post_save

from archangel.db import rows_inserted
from providers_app.health import health_changed, unavailable_provider_ids
from providers_app.models import Provider
from tasks_app import routing
from tasks_app.models import AssigneeIdentity, RoutingDecision, Task
from tasks_app.status import OPEN

logger = logging.getLogger(__name__)


def routing_inputs() -> routing.RoutingInputs:
    """Providers with health and load, active assignees with identities and open effort, and the
    round-robin cursor: the inputs of a whole batch of routing decisions. Two queries (none when
    no provider is configured), plus the provider rows when this process's copy is older than
    ``ROUTING_LOAD_TTL_MS`` ("Provider rows" below) and the two open-load aggregates when its copy
    is older than twice that ("Open load")."""
    rows = provider_rows.read()
    if not rows:
        return routing.RoutingInputs(providers={}, assignees={})
    down = unavailable_provider_ids([(pid, health) for pid, _, _, _, health in rows])
    provider_load, assignee_load = open_load.read()
    providers = {
        pid: routing.ProviderState(
            id=pid,
            name=name,
            type=ptype,
            weight=weight,
            open_tasks=provider_load.get(pid, 0),
            unavailable_reason=(
                health if health in (Provider.Health.DOWN, Provider.Health.DISABLED) else "circuit breaker open"
            )
            if pid in down
            else None,
        )
        for pid, name, ptype, weight, health in rows
    }
    people: dict[uuid.UUID, tuple[str, float, set[uuid.UUID]]] = {}
    for assignee_id, provider_id, name, capacity in AssigneeIdentity.objects.filter(assignee__active=True).values_list(
        "assignee_id", "provider_id", "assignee__name", "assignee__capacity_hours_per_day"
    ):
        people.setdefault(assignee_id, (name, float(capacity), set()))[2].add(provider_id)
    assignees = {
        aid: routing.AssigneeState(
            id=aid,
            name=name,
            capacity_hours=capacity,
            open_hours=assignee_load.get(aid, 0.0),
            provider_ids=frozenset(provider_ids),
        )
        for aid, (name, capacity, provider_ids) in people.items()
    }
    last = None
    if assignees:
        last = (
            RoutingDecision.objects.filter(assignee__isnull=False)
            .order_by("-created_at")
            .values_list("assignee_id", flat=True)
            .first()
        )
    return routing.RoutingInputs(providers=providers, assignees=assignees, last_assignee_id=last)


# --- Provider rows ---------------------------------------------------------------------------------


class ProviderRows:
    """This process's copy of the provider rows routing reads for every create: ``(id, name, type,
    weight, health_status)`` of each provider.

    Providers change seldom (an operator's edit, a breaker's health mirror), yet reading them was
    a round trip of its own in every ``POST /api/tasks``, one of three. The copy is read again
    once it is ``ROUTING_LOAD_TTL_MS`` old (1 s by default), so another process's change reaches
    routing within that time, as other processes' load does ("Open load"). A change made in
    this process drops the copy at once and again when it commits: a save or delete of a
    provider (``post_save``/``post_delete``) or a health update (``providers_app.health``,
    ``health_changed``). A read made inside a transaction that has written anything is never
    kept, and neither is one under way while a change commits. With a TTL of 0 nothing is kept.

    Whether a provider's circuit breaker is open is not part of the copy: it is read from Redis
    for each decision (``unavailable_provider_ids``).

    What it costs: for up to one TTL, another process may route to a provider as it was, not as an
    operator has just changed it (a new weight, disabled). A provider deleted in the admin (only one
    no task refers to can be) may be chosen in that second by another process, whose creates then
    fail on the foreign key and answer 500 without writing anything, until that process reads the
    rows again (at most one TTL): a client's retry after that routes afresh.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[tuple[uuid.UUID, str, str, int, str]] = []
        self._taken: float | None = None  # time.monotonic() when the kept rows were read
        self._generation = 0  # moved by forget(): a read started before it is not kept

    def read(self) -> list[tuple[uuid.UUID, str, str, int, str]]:
        ttl = settings.ARCHANGEL["ROUTING_LOAD_TTL_MS"] / 1000
        with self._lock:
            if self._taken is not None and time.monotonic() - self._taken < ttl:
                return self._rows
            generation = self._generation
        started = time.monotonic()
        rows = _providers()
        if ttl > 0 and _sees_only_committed_rows():
            with self._lock:
                # Not when a change committed meanwhile, nor over a newer read kept meanwhile.
                if generation == self._generation and (self._taken is None or self._taken < started):
                    self._rows, self._taken = rows, started
        return rows

    def forget(self, *args, **kwargs) -> None:
        with self._lock:
            self._taken = None
            self._generation += 1


provider_rows = ProviderRows()


def _provider_changed(sender, **kwargs) -> None:
    provider_rows.forget()  # this transaction's own reads see the change at once
    transaction.on_commit(provider_rows.forget)  # and no read under way keeps what it replaced


def _providers() -> list[tuple[uuid.UUID, str, str, int, str]]:
    """``(id, name, type, weight, health_status)`` of every provider. Plain SQL: this runs for
    every create whose process has no fresh copy, and compiling the ORM query cost more than
    running it."""
    table = Provider._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, name, type, weight, health_status FROM {table}")  # noqa: S608
        rows = cursor.fetchall()
    if connection.vendor != "postgresql":  # SQLite hands back the UUID as text
        rows = [(uuid.UUID(str(pid)), *rest) for pid, *rest in rows]
    return rows


def open_tasks_by_provider() -> dict[uuid.UUID, int]:
    """Open tasks per provider, one aggregate query (the partial index ``tasks_task_open_provider``)."""
    return dict(
        Task.objects.filter(status__in=OPEN, provider__isnull=False)
        .values_list("provider_id")
        .annotate(n=Count("id"))
        .order_by()
    )


def open_hours_by_assignee(assignee_ids: Iterable[uuid.UUID] | None = None) -> dict[uuid.UUID, float]:
    """Effort hours of open tasks per assignee, one aggregate query (the partial index
    ``tasks_task_open_assignee`` serves it)."""
    rows = Task.objects.filter(status__in=OPEN, assignee__isnull=False)
    if assignee_ids is not None:
        rows = rows.filter(assignee_id__in=list(assignee_ids))
    return {
        aid: float(total or 0)
        for aid, total in rows.values_list("assignee_id").annotate(h=Sum("effort_hours")).order_by()
    }


# --- Open load -------------------------------------------------------------------------------------


class OpenLoad:
    """This process's copy of the open load routing balances on: open tasks per provider and open
    effort hours per assignee.

    Why a copy: the exact figures are two aggregates over every open task (about 100 ms at
    50,000 open tasks on the reference machine), and paying them on every ``POST /api/tasks``
    was most of a single create's routing. Why not counters kept in a table: every create would
    update the same few provider rows and hold their row locks until it commits, serializing
    concurrent creates (and a 1,000-task import would hold them for the whole import), and
    every write path (updates, webhooks, the admin) would have to keep them right.

    How it stays right:

    - the aggregates are read again once the copy is ``ROUTING_LOAD_TTL_MS`` old (1 s by
      default, at most 2 s), so anything done elsewhere (other processes' creates, updates,
      completions) reaches routing within that time plus one read of the aggregates, and never
      later than twice the TTL;
    - that read is off the request path: a decision that finds the copy older than the TTL but
      younger than twice the TTL uses it and starts one background thread that reads the
      aggregates again (never two at once in a process); only a decision that finds no copy, or
      one older than twice the TTL (a refresh failed or is stuck), reads them itself. At 30,000-50,000
      open tasks the read takes tens of ms, and every create that landed on it paid it;
    - tasks this process inserts are added to the copy when their transaction commits
      (``archangel.db.rows_inserted``), so a burst of creates in one process spreads its work
      at once, as a bulk request does within itself;
    - any other save or delete of a task in this process (an update, a completion, a move)
      drops the copy when it commits, so the next decision reads the aggregates again; a read
      already under way when it commits is not kept;
    - a read made inside a transaction that has written anything is never kept: it may count
      that transaction's own uncommitted work. (A transaction that has only read, such as the
      one around an ``Idempotency-Key`` request before its create, has no transaction id yet:
      PostgreSQL's ``txid_current_if_assigned()`` says so, and its read is kept.) The
      background read runs on its own connection, outside any transaction.

    What it costs: a decision may miss up to one TTL (and one read) of other processes' work,
    so two processes creating at once can both pick the same least-loaded person for that
    second. A create this process commits while a read is under way may be counted once in the
    copy or, if that read's snapshot predates it, missed until the next read. Routing is a
    balancing heuristic and every decision records the loads it saw.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: float | None = None  # time.monotonic() when the kept aggregates were started
        self._providers: dict[uuid.UUID, int] = {}
        self._assignees: dict[uuid.UUID, float] = {}
        self._generation = 0  # moved by forget(): a read started before it is not kept
        self._refresher: threading.Thread | None = None

    def read(self) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, float]]:
        """``(open tasks by provider, open hours by assignee)``: copies the caller may change."""
        ttl = settings.ARCHANGEL["ROUTING_LOAD_TTL_MS"] / 1000
        with self._lock:
            if self._taken is not None:
                age = time.monotonic() - self._taken
                if age < 2 * ttl:
                    if age >= ttl:
                        self._start_refresh()
                    return dict(self._providers), dict(self._assignees)
            generation = self._generation
        started = time.monotonic()
        providers = open_tasks_by_provider()
        assignees = open_hours_by_assignee()
        if ttl > 0 and _sees_only_committed_rows():
            self._keep(generation, started, providers, assignees)
        return dict(providers), dict(assignees)

    def _keep(self, generation: int, started: float, providers: dict, assignees: dict) -> None:
        with self._lock:
            if generation != self._generation:
                return  # a write of this process committed during the read
            if self._taken is not None and self._taken > started:
                return  # a newer read is already kept
            self._taken, self._providers, self._assignees = started, providers, assignees

    def _start_refresh(self) -> None:
        """Read the aggregates in a background thread unless one is already reading (lock held)."""
        if self._refresher is not None:
            return
        thread = threading.Thread(target=self._refresh, args=(self._generation,), name="open-load-refresh", daemon=True)
        self._refresher = thread
        thread.start()

    def _refresh(self, generation: int) -> None:
        try:
            started = time.monotonic()
            providers = open_tasks_by_provider()
            assignees = open_hours_by_assignee()
            self._keep(generation, started, providers, assignees)
        except Exception:
            # The copy stays as it is; past twice the TTL a decision reads the aggregates itself.
            logger.exception("open load: background read failed")
        finally:
            connection.close()  # this thread's own connection
            with self._lock:
                self._refresher = None

    def wait(self, timeout: float = 10.0) -> None:
        """Wait for a background read under way, if any (tests, shutdown)."""
        thread = self._refresher
        if thread is not None:
            thread.join(timeout)

    def add(self, tasks: Iterable[Task]) -> None:
        """Count newly committed tasks in the kept copy."""
        with self._lock:
            if self._taken is None:
                return
            for task in tasks:
                if task.status not in OPEN:
                    continue
                if task.provider_id is not None:
                    self._providers[task.provider_id] = self._providers.get(task.provider_id, 0) + 1
                if task.assignee_id is not None:
                    hours = float(task.effort_hours or 0)
                    self._assignees[task.assignee_id] = self._assignees.get(task.assignee_id, 0.0) + hours

    def forget(self) -> None:
        with self._lock:
            self._taken = None
            self._generation += 1


def _sees_only_committed_rows() -> bool:
    """Whether a read now sees committed rows only: outside a transaction, or inside one that
    has written nothing yet (on PostgreSQL, no transaction id assigned)."""
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        return True
    if conn.vendor != "postgresql":
        return False
    with conn.cursor() as cursor:
        cursor.execute("SELECT txid_current_if_assigned() IS NULL")
        return bool(cursor.fetchone()[0])


open_load = OpenLoad()

# Fields whose change moves a task's load; a save that names only others keeps the copy.
_LOAD_FIELDS = frozenset({"status", "provider", "provider_id", "assignee", "assignee_id", "effort_hours"})


def _task_inserted(sender, objs, **kwargs) -> None:
    tasks = list(objs)
    transaction.on_commit(lambda: open_load.add(tasks))


def _task_changed(sender, instance, update_fields=None, **kwargs) -> None:
    if update_fields is not None and not (set(update_fields) & _LOAD_FIELDS):
        return
    transaction.on_commit(open_load.forget)


def connect_signals() -> None:
    rows_inserted.connect(_task_inserted, sender=Task, dispatch_uid="tasks_app.open_load.inserted")
    post_save.connect(_task_changed, sender=Task, dispatch_uid="tasks_app.open_load.saved")
    post_delete.connect(_task_changed, sender=Task, dispatch_uid="tasks_app.open_load.deleted")
    post_save.connect(_provider_changed, sender=Provider, dispatch_uid="tasks_app.provider_rows.saved")
    post_delete.connect(_provider_changed, sender=Provider, dispatch_uid="tasks_app.provider_rows.deleted")
    health_changed.connect(_provider_changed, dispatch_uid="tasks_app.provider_rows.health")


def latest_routing(task_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, RoutingDecision]:
    """The latest routing decision of each task, one query."""
    ids = list(task_ids)
    if not ids:
        return {}
    latest: dict[uuid.UUID, RoutingDecision] = {}
    for decision in RoutingDecision.objects.filter(task_id__in=ids).order_by("task_id", "-created_at"):
        latest.setdefault(decision.task_id, decision)
    return latest
