"""The score in SQL (``scoring.sql_factors``/``sql_score``, used by the bulk rescoring job on
PostgreSQL) equals the Python formula (``scoring.score``), value for value, on thousands of
generated tasks: edge cases (no deadline, overdue to the microsecond, no client, zero and missing
effort, ages of years, exact binary halves at the rounding digit) and random ones."""

import datetime as dt
import decimal
import json
import random
import threading
import time
import uuid

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from archangel.db import insert_rows
from tasks_app import scoring, services
from tasks_app.models import Client, Task

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

NOW = dt.datetime(2026, 11, 26, 9, 41, 17, 123457, tzinfo=dt.UTC)
EQUAL_WEIGHTS = dict.fromkeys(scoring.FACTORS, 1 / 6)


def _clients(rng):
    values = [
        Client(id=uuid.uuid4(), name=f"C{i}", importance=decimal.Decimal(f"{rng.randint(0, 100) / 100:.2f}"),
               sla_hours=rng.choice([None, 1, 8, 24, 72, 168, 24 * 365]))
        for i in range(40)
    ]  # fmt: skip
    values += [Client(id=uuid.uuid4(), name="Edge 0", importance=decimal.Decimal("0"), sla_hours=None)]
    values += [Client(id=uuid.uuid4(), name="Edge 1", importance=decimal.Decimal("1"), sla_hours=1)]
    now = timezone.now()
    for c in values:
        c.created_at = c.updated_at = now
    insert_rows(values)
    return values


def _instant(rng, *, around=NOW, spread_hours=24 * 30):
    return around + dt.timedelta(microseconds=rng.randint(-spread_hours * 3_600_000_000, spread_hours * 3_600_000_000))


def _tasks(rng, clients, n):
    edges = [
        # (deadline, created_at, last_progress_at, effort): exact instants and exact binary halves
        (None, NOW, None, None),
        (NOW, NOW, NOW, decimal.Decimal("0")),  # due this very microsecond: overdue
        (NOW + dt.timedelta(microseconds=1), NOW, None, decimal.Decimal("124")),  # effort factor 1/32
        (NOW - dt.timedelta(microseconds=1), NOW - dt.timedelta(hours=360), None, decimal.Decimal("4")),  # 1/32 fresh
        (NOW + dt.timedelta(hours=24), NOW - dt.timedelta(hours=72), NOW - dt.timedelta(hours=48), None),
        (None, NOW - dt.timedelta(days=3650), None, decimal.Decimal("9999.99")),  # decades of halvings
        (None, NOW + dt.timedelta(hours=5), None, decimal.Decimal("0.01")),  # created "after" now
        (NOW + dt.timedelta(days=3650), NOW - dt.timedelta(days=400), NOW - dt.timedelta(days=399), None),
    ]
    rows = []
    for i in range(n):
        if i < len(edges) * 4:
            deadline, created, progress, effort = edges[i % len(edges)]
        else:
            deadline = None if rng.random() < 0.25 else _instant(rng)
            created = _instant(rng, around=NOW - dt.timedelta(days=15), spread_hours=24 * 15)
            progress = None if rng.random() < 0.5 else _instant(rng, around=created + dt.timedelta(days=3))
            effort = None if rng.random() < 0.15 else decimal.Decimal(f"{rng.uniform(0, 40):.2f}")
        client = None if i % 7 == 0 else clients[i % len(clients)]
        rows.append(
            Task(id=uuid.uuid4(), title=f"Scored {i}", status=rng.choice(["pending", "assigned", "in_progress"]),
                 priority=1 + i % 4, effort_hours=effort, deadline=deadline, client=client, created_at=created,
                 updated_at=created, last_progress_at=progress, fingerprint=uuid.uuid4().hex)
        )  # fmt: skip
    insert_rows(rows)
    return rows


def _python(task, client, weights):
    item = services.score_input(task, client)
    return scoring.factors(item, NOW), scoring.score(item, NOW, weights)


def _sql(weights):
    factors = scoring.sql_factors(now="%(now)s::timestamptz")
    score, breakdown = scoring.sql_score()
    sql = (
        "SELECT f.*, " + score + ", " + breakdown + " FROM (SELECT t.id, "  # noqa: S608
        + ", ".join(f"{expr} AS {name}" for name, expr in factors.items())
        + " FROM tasks_app_task t LEFT JOIN tasks_app_client c ON c.id = t.client_id) f"
        " CROSS JOIN (SELECT " + ", ".join(f"%({n})s::float8 AS {n}" for n in scoring.FACTORS) + ") w"
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, {"now": NOW, **weights})
        return {row[0]: row[1:] for row in cursor.fetchall()}


@pytest.mark.parametrize("weights", [scoring.DEFAULT_WEIGHTS, EQUAL_WEIGHTS], ids=["default", "equal"])
def test_sql_and_python_agree_to_the_last_bit_on_generated_tasks(weights):
    rng = random.Random(20261126)
    clients = {c.id: c for c in _clients(rng)}
    tasks = _tasks(rng, list(clients.values()), 3000)
    sql = _sql(weights)
    for task in tasks:
        (factors, (score, breakdown)) = _python(task, clients.get(task.client_id), weights)
        row = sql[task.id]
        sql_factors, sql_score, sql_breakdown = row[:6], row[6], row[7]
        assert list(sql_factors) == [factors[name] for name in scoring.FACTORS], task.title
        assert (sql_score, json.loads(sql_breakdown)) == (score, breakdown), task.title


def test_the_rescoring_job_stores_what_python_computes():
    rng = random.Random(7)
    clients = {c.id: c for c in _clients(rng)}
    tasks = _tasks(rng, list(clients.values()), 600)
    assert services.tasks_rescore_open(now=NOW, batch_size=250) == 600
    stored = {t.id: (t.score, t.score_breakdown) for t in Task.objects.all()}
    for task in tasks:
        assert stored[task.id] == _python(task, clients.get(task.client_id), scoring.DEFAULT_WEIGHTS)[1]
    assert services.tasks_rescore_open(now=NOW) == 0  # nothing moved: nothing written


@pytest.mark.django_db(transaction=True)
def test_a_task_changed_while_the_batch_waits_for_its_lock_is_left_alone():
    task, _ = services.task_create(data={"title": "Racing"})
    locked, done = threading.Event(), threading.Event()

    def concurrent_update():
        try:
            with transaction.atomic():
                Task.objects.filter(pk=task.pk).update(version=2, score=0.99)  # a task_update, uncommitted
                locked.set()
                deadline = time.monotonic() + 20
                with connection.cursor() as cursor:  # commit only once the rescoring waits for our row
                    while time.monotonic() < deadline:
                        cursor.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock' AND query LIKE 'WITH batch AS%%'"
                        )
                        if cursor.fetchone()[0]:
                            break
                        time.sleep(0.02)
        finally:
            connections.close_all()
            done.set()

    thread = threading.Thread(target=concurrent_update)
    thread.start()
    assert locked.wait(20)
    assert services.tasks_rescore_open(now=timezone.now() + dt.timedelta(days=3)) == 0
    thread.join(20)
    assert done.is_set()
    assert Task.objects.get(pk=task.pk).score == 0.99


def test_every_open_task_is_rescored_the_lowest_id_included():
    now = timezone.now()
    ids = [uuid.UUID(int=0), uuid.UUID(int=1), uuid.uuid4(), uuid.UUID(int=2**128 - 1)]
    insert_rows(
        [Task(id=i, title=f"Edge id {n}", fingerprint=uuid.uuid4().hex, created_at=now, updated_at=now)
         for n, i in enumerate(ids)]
    )  # fmt: skip
    assert services.tasks_rescore_open(now=now + dt.timedelta(hours=1), batch_size=2) == 4
    assert all(t.score is not None for t in Task.objects.filter(id__in=ids))


@pytest.mark.parametrize("x", [0.45125000000000004, 0.03125, 0.00005, 0.99995, 1 / 3])
def test_rounding_is_the_same_operations_on_both_sides(x):
    # 0.45125000000000004 * 10,000 is exactly 4512.5 in binary: Python's round(x, 4) (exact decimal
    # value: 0.4513) and PostgreSQL's round(x * 10^4) / 10^4 (half to even: 0.4512) used to differ.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {scoring._sql_round('%s::float8')}", [x])
        assert cursor.fetchone()[0] == scoring._round(x)
    assert scoring._round(0.45125000000000004) == 0.4512
