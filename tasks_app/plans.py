"""Daily plans and their morning emails: the services (writes) around the pure planner.

``plans_build`` reads every input of many plans in a few queries and upserts the plans in one
statement. ``plan_emails_send`` is the beat job's service: at most one email per assignee per
day, however many runs overlap (see its docstring).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from archangel import metrics
from archangel.db import insert_rows
from archangel.errors import InvalidInput
from tasks_app import planner, scoring
from tasks_app.models import Assignee, DailyPlan, PlanEmail, Task
from tasks_app.status import TaskStatus

log = logging.getLogger(__name__)

# Work a person can do today; blocked and on-hold tasks wait for someone else first.
PLANNABLE = sorted({TaskStatus.PENDING, TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS, TaskStatus.REVIEW})
ROLLOVER_LOOKBACK_DAYS = 7


def local_today(assignee_tz: str, now: dt.datetime) -> dt.date:
    return now.astimezone(ZoneInfo(assignee_tz)).date()


def _day_bounds(day: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def plans_build(
    *,
    date: dt.date | None = None,
    assignee_id: uuid.UUID | None = None,
    assignee_ids: list[uuid.UUID] | None = None,
    now: dt.datetime | None = None,
) -> list[DailyPlan]:
    """Build (or rebuild) and store the plan of every active assignee, or of one, for ``date``
    (default: each person's own today). Returns the stored plans, ordered by assignee name.

    Queries: assignees, their plannable tasks (with the client's SLA), earlier plans for the
    roll-over, one upsert: four, however many people.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    people = Assignee.objects.filter(active=True)
    if assignee_ids is not None:
        people = people.filter(id__in=assignee_ids)
    if assignee_id is not None:
        try:
            person = Assignee.objects.get(pk=assignee_id)
        except (Assignee.DoesNotExist, ValueError, DjangoValidationError):
            raise InvalidInput({"assignee": [f"No assignee with id {assignee_id}."]}) from None
        if not person.active:
            raise InvalidInput({"assignee": ["This assignee is inactive."]})
        people = [person]
    people = list(people)
    if not people:
        return []
    days = {p.id: date or local_today(p.timezone, now) for p in people}

    tasks: dict[uuid.UUID, list[tuple]] = {}
    for row in _plannable([p.id for p in people]):
        tasks.setdefault(row[0], []).append(row[1:])

    earliest = min(days.values()) - dt.timedelta(days=ROLLOVER_LOOKBACK_DAYS)
    previous: dict[uuid.UUID, tuple[dt.date, set[str]]] = {}
    for aid, day, items in DailyPlan.objects.filter(
        assignee_id__in=list(days), date__gte=earliest, date__lt=max(days.values())
    ).values_list("assignee_id", "date", "items"):
        if day < days[aid] and (aid not in previous or day > previous[aid][0]):
            previous[aid] = (day, {item["task"] for item in items})

    plans = []
    for person in people:
        day = days[person.id]
        start, end = _day_bounds(day, person.timezone)
        reference = max(now, start)
        before = previous.get(person.id)
        candidates = []
        for task_id, title, score, effort, deadline, created_at, sla_hours in tasks.get(person.id, []):
            sla_used = scoring.sla_pressure(created_at, sla_hours, reference) if sla_hours else 0.0
            candidates.append(
                planner.Candidate(
                    id=task_id,
                    title=title,
                    score=score or 0.0,
                    effort_hours=float(effort) if effort is not None else None,
                    deadline=deadline,
                    overdue=deadline is not None and deadline <= reference,
                    due_today=deadline is not None and reference < deadline < end,
                    sla_used=sla_used,
                    sla_critical=sla_used >= scoring.SLA_CRITICAL,
                    rolled_over_from=before[0] if before and str(task_id) in before[1] else None,
                )
            )
        result = planner.build(candidates, float(person.capacity_hours_per_day))
        plans.append(
            DailyPlan(
                assignee=person,
                date=day,
                capacity_hours=person.capacity_hours_per_day,
                planned_hours=result.planned_hours,
                over_capacity_hours=result.over_capacity_hours,
                items=result.items,
                not_fitting=result.not_fitting,
                generated_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    _store(plans)
    seconds = time.perf_counter() - started
    for _ in plans:
        metrics.observe_plan_seconds(seconds / len(plans))
    return sorted(plans, key=lambda plan: (plan.assignee.name, plan.assignee.email))


_PLANNABLE_COLUMNS = ("assignee_id", "id", "title", "score", "effort_hours", "deadline", "created_at",
                      "client__sla_hours")  # fmt: skip


def _plannable(assignee_ids: list[uuid.UUID]) -> list[tuple]:
    """``(assignee id, task id, title, score, effort, deadline, created_at, client SLA hours)`` of
    every plannable task of these people, one query.

    On PostgreSQL the rows come in binary, parsed by psycopg's C loaders: Django reads
    ``timestamptz`` through its own text loader, in Python, which for 40,000 tasks (two
    timestamps each) was a fifth of building their plans.
    """
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        return list(
            Task.objects.filter(assignee_id__in=assignee_ids, status__in=PLANNABLE).values_list(*_PLANNABLE_COLUMNS)
        )
    from archangel.db import _server_binding_cursor

    sql = (
        "SELECT t.assignee_id, t.id, t.title, t.score, t.effort_hours, t.deadline, t.created_at, c.sla_hours "
        "FROM tasks_app_task t LEFT JOIN tasks_app_client c ON c.id = t.client_id "
        "WHERE t.assignee_id = ANY(%s) AND t.status = ANY(%s)"
    )
    connection.ensure_connection()
    cursor = _server_binding_cursor(connection, binary=True)
    try:
        with connection.wrap_database_errors:
            cursor.execute(sql, [assignee_ids, list(PLANNABLE)])
            return cursor.fetchall()
    finally:
        cursor.close()


_STORED = ("assignee_id", "date", "capacity_hours", "planned_hours", "over_capacity_hours", "items", "not_fitting",
           "generated_at", "created_at", "updated_at")  # fmt: skip
_REPLACED = ("capacity_hours", "planned_hours", "over_capacity_hours", "items", "not_fitting", "generated_at",
             "updated_at")  # fmt: skip


def _store(plans: list[DailyPlan]) -> None:
    """Upsert the plans in one statement: a plan rebuilt for the same day replaces the stored one
    (the unique (assignee, date) constraint is the conflict target), so concurrent builds cannot
    duplicate. The stored id and creation time come back with it, so nothing is read again.

    On PostgreSQL the rows travel as one binary array per column (``unnest``), as
    ``archangel.db.insert_rows`` does: through the ORM's ``bulk_create`` every plan's JSON was
    escaped character by character into a text array, which took a third of building 200 plans.
    """
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        DailyPlan.objects.bulk_create(
            plans, update_conflicts=True, unique_fields=["assignee", "date"], update_fields=list(_REPLACED)
        )
        stored = {
            (aid, day): (pk, created)
            for pk, aid, day, created in DailyPlan.objects.filter(
                assignee_id__in=[p.assignee_id for p in plans], date__in={p.date for p in plans}
            ).values_list("id", "assignee_id", "date", "created_at")
        }
    else:
        from psycopg.types.json import Jsonb

        from archangel.db import _server_binding_cursor

        table = DailyPlan._meta.db_table
        types = ("uuid", "date", "numeric", "float8", "float8", "jsonb", "jsonb", "timestamptz", "timestamptz",
                 "timestamptz")  # fmt: skip
        sql = (
            f"INSERT INTO {table} ({', '.join(_STORED)}) "  # noqa: S608 - names from this module
            f"SELECT * FROM unnest({', '.join(f'%b::{t}[]' for t in types)}) "
            f"ON CONFLICT (assignee_id, date) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in _REPLACED)} "
            "RETURNING id, assignee_id, date, created_at"
        )
        columns = [
            [p.assignee_id for p in plans],
            [p.date for p in plans],
            [p.capacity_hours for p in plans],
            [float(p.planned_hours) for p in plans],
            [float(p.over_capacity_hours) for p in plans],
            [Jsonb(p.items) for p in plans],
            [Jsonb(p.not_fitting) for p in plans],
            [p.generated_at for p in plans],
            [p.created_at for p in plans],
            [p.updated_at for p in plans],
        ]
        connection.ensure_connection()
        cursor = _server_binding_cursor(connection)
        try:
            with connection.wrap_database_errors:
                cursor.execute(sql, columns)
                stored = {(aid, day): (pk, created) for pk, aid, day, created in cursor.fetchall()}
        finally:
            cursor.close()
    for plan in plans:
        plan.id, plan.created_at = stored[(plan.assignee_id, plan.date)]
        plan._state.adding, plan._state.db = False, connection.alias


def plans_stored(*, date: dt.date | None = None, assignee_id: uuid.UUID | None = None):
    """Stored plans, newest day first (GET /api/planner/daily)."""
    rows = DailyPlan.objects.select_related("assignee").order_by("-date", "assignee__name", "assignee_id")
    if date is not None:
        rows = rows.filter(date=date)
    if assignee_id is not None:
        rows = rows.filter(assignee_id=assignee_id)
    return rows


# --- morning emails -------------------------------------------------------------------------------


def plan_emails_send(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Email each active assignee their plan once a day, after ``ARCHANGEL_PLAN_EMAIL_HOUR`` in
    their time zone. Safe to run often and concurrently:

    1. **Claim** before sending: a ``PlanEmail`` row per (assignee, local date), inserted with
       ``INSERT ... ON CONFLICT DO NOTHING`` and committed at once. Only the run whose insert
       wrote the row sends; every other run (now or later) sees the row and skips the person.
       A failed email is re-claimed by one run with ``SELECT ... FOR UPDATE SKIP LOCKED``.
    2. **Build** the plan (stored, so the email shows what the API and admin show) and send.
    3. **Record**: ``sent``; or ``failed`` with the error, retried by the next run until
       ``ARCHANGEL_PLAN_EMAIL_MAX_ATTEMPTS``, then ``gave_up``.

    If the process dies between the claim and the send, the row stays ``sending`` and that
    day's email is not sent (at most once, not at least once): delete the row in the admin to
    send it again. A send that raised after the mail server accepted it (a timeout on the
    reply) may be retried and arrive twice; that is the one duplicate this allows.
    """
    now = now or timezone.now()
    hour = settings.ARCHANGEL["PLAN_EMAIL_HOUR"]
    due: dict[uuid.UUID, dt.date] = {}
    for person in Assignee.objects.filter(active=True).only("id", "timezone"):
        local = now.astimezone(ZoneInfo(person.timezone))
        if local.hour >= hour:
            due[person.id] = local.date()
    if not due:
        return {"claimed": 0, "sent": 0, "failed": 0}

    claims = [
        PlanEmail(id=uuid.uuid4(), assignee_id=aid, date=day, status=PlanEmail.Status.SENDING, created_at=now)
        for aid, day in due.items()
    ]
    # Autocommit: each claim is visible to other runs before any email goes out.
    written = insert_rows(claims, skip_conflicts=True)
    mine = [(c.assignee_id, c.date) for c in claims if c.id in written]
    mine += _reclaim_failed(due)

    counts = {"claimed": len(mine), "sent": 0, "failed": 0}
    by_day: dict[dt.date, list[uuid.UUID]] = {}
    for aid, day in mine:
        by_day.setdefault(day, []).append(aid)
    for day, people in by_day.items():
        for plan in plans_build(date=day, assignee_ids=people, now=now):
            try:
                _send(plan)
            except Exception as exc:  # noqa: BLE001 - any failure of the mail backend is recorded
                counts["failed"] += 1
                _record_failure(plan, exc)
            else:
                counts["sent"] += 1
                PlanEmail.objects.filter(assignee_id=plan.assignee_id, date=plan.date).update(
                    status=PlanEmail.Status.SENT, sent_at=timezone.now(), error="", updated_at=timezone.now()
                )
    return counts


def _reclaim_failed(due: dict[uuid.UUID, dt.date]) -> list[tuple[uuid.UUID, dt.date]]:
    with transaction.atomic():
        # SKIP LOCKED: a failed email another run is re-claiming right now is theirs.
        failed = list(
            PlanEmail.objects.select_for_update(skip_locked=True).filter(
                assignee_id__in=list(due), status=PlanEmail.Status.FAILED
            )
        )
        mine = [f for f in failed if due.get(f.assignee_id) == f.date]
        for claim in mine:
            claim.status = PlanEmail.Status.SENDING
            claim.attempts += 1
            claim.updated_at = timezone.now()
        PlanEmail.objects.bulk_update(mine, ["status", "attempts", "updated_at"])
    return [(c.assignee_id, c.date) for c in mine]


def _record_failure(plan: DailyPlan, exc: Exception) -> None:
    log.warning("plan email to %s for %s failed: %s", plan.assignee_id, plan.date, type(exc).__name__)
    claim = PlanEmail.objects.get(assignee_id=plan.assignee_id, date=plan.date)
    claim.status = (
        PlanEmail.Status.GAVE_UP
        if claim.attempts >= settings.ARCHANGEL["PLAN_EMAIL_MAX_ATTEMPTS"]
        else PlanEmail.Status.FAILED
    )
    claim.error = f"{type(exc).__name__}: {exc}"[:2000]
    claim.save(update_fields=["status", "error", "updated_at"])


def _send(plan: DailyPlan) -> None:
    context = {
        "plan": plan,
        "assignee": plan.assignee,
        "items": plan.items,
        "not_fitting": plan.not_fitting,
        "flagged": [item for item in plan.items if item.get("over_capacity")],
    }
    subject = (
        f"Your plan for {plan.date:%A %d %B}: {len(plan.items)} task{'s' if len(plan.items) != 1 else ''}, "
        f"{plan.planned_hours:g} of {float(plan.capacity_hours):g} h"
    )
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("tasks_app/daily_plan_email.txt", context),
        to=[plan.assignee.email],
    )
    message.attach_alternative(render_to_string("tasks_app/daily_plan_email.html", context), "text/html")
    message.send(fail_silently=False)
