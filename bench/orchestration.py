"""Orchestration: routing decisions, bulk rescoring and daily plans, in-process against a fresh
PostgreSQL database filled with realistic volumes.

- routing: 200 assignees (each with an identity on one to three of three providers) and 50,000
  open tasks. The decision itself (``routing.decide`` on inputs loaded once, as a bulk create
  does) is timed per task; beside it, the whole routing of a single create (loading the inputs:
  providers, breaker states, open load per provider and per person) and of a 1,000-task batch.
- rescoring: ``services.tasks_rescore_open`` over 100,000 open tasks, beside the time of just
  reading their columns.
- planner: ``plans.plans_build`` for 200 assignees holding 50,000 open tasks, beside the time
  of just reading those tasks.

Targets (issue 4 §7): routing decision p99 <= 5 ms; rescoring 100,000 tasks <= 10 s; 200
daily plans <= 2 s.
"""

import datetime as dt
import os
import random
import statistics
import time
import uuid

from bench.common import Row, percentile, service_env

ASSIGNEES = int(os.environ.get("BENCH_ASSIGNEES", "200"))
ROUTING_TASKS = int(os.environ.get("BENCH_ROUTING_TASKS", "50000"))
RESCORE_TASKS = int(os.environ.get("BENCH_RESCORE_TASKS", "100000"))
DECISIONS = 5000
SINGLE_ROUTES = 300


def _django(database_url: str) -> None:
    """Point Django at the freshly created bench database (the same name every scenario)."""
    wanted = ("DATABASE_URL", "REDIS_URL", "CACHE_KEY_PREFIX")
    os.environ.update({k: v for k, v in service_env(database_url).items() if k in wanted})
    os.environ["DJANGO_SETTINGS_MODULE"] = "archangel.settings"
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    from django.db import connections

    connections.close_all()  # the database was dropped and created again since the last scenario


def _people_and_tasks(n_tasks: int, *, seed: int = 7):
    """Providers, assignees with identities, clients and ``n_tasks`` open tasks, written with the
    project's own multi-row insert."""
    from archangel.db import insert_rows
    from providers_app.models import Provider
    from tasks_app.models import Assignee, AssigneeIdentity, Client, Task

    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    providers = [
        Provider(id=uuid.uuid4(), name=f"bench-{kind}", type=kind, weight=100, created_at=now, updated_at=now)
        for kind in ("clickup", "trello", "todoist")
    ]
    insert_rows(providers)
    people = [
        Assignee(
            id=uuid.uuid4(),
            name=f"Person {i:03d}",
            email=f"person{i}@bench.example",
            capacity_hours_per_day=rng.choice([4, 6, 8, 8, 8]),
            timezone=rng.choice(["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
            active=True,
            created_at=now,
            updated_at=now,
        )
        for i in range(ASSIGNEES)
    ]
    insert_rows(people)
    identities = []
    for i, person in enumerate(people):
        for provider in rng.sample(providers, rng.randint(1, 3)):
            identities.append(
                AssigneeIdentity(
                    assignee=person, provider=provider, external_user_id=f"u{i}-{provider.type}", created_at=now,
                    updated_at=now,
                )
            )  # fmt: skip
    AssigneeIdentity.objects.bulk_create(identities)
    clients = [
        Client(id=uuid.uuid4(), name=f"Client {i}", importance=rng.random(), sla_hours=rng.choice([None, 24, 72, 168]),
               created_at=now, updated_at=now)
        for i in range(50)
    ]  # fmt: skip
    insert_rows(clients)
    statuses = ["pending", "assigned", "assigned", "in_progress", "review", "blocked"]
    batch = []
    for i in range(n_tasks):
        person = rng.choice(people)
        created = now - dt.timedelta(hours=rng.uniform(0, 24 * 30))
        batch.append(
            Task(
                id=uuid.uuid4(),
                title=f"bench task {i}",
                status=rng.choice(statuses),
                priority=rng.randint(1, 4),
                effort_hours=round(rng.uniform(0.25, 6), 2),
                deadline=None if rng.random() < 0.3 else now + dt.timedelta(hours=rng.uniform(-72, 24 * 14)),
                assignee_id=person.id,
                client_id=rng.choice(clients).id if rng.random() < 0.8 else None,
                provider_id=rng.choice(providers).id,
                score=None,
                score_breakdown={},
                created_at=created,
                updated_at=created,
            )
        )
        if len(batch) == 5000:
            insert_rows(batch)
            batch = []
    insert_rows(batch)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return providers, people


def routing_run(database_url: str) -> list[Row]:
    _django(database_url)
    from tasks_app import routing, selectors, services
    from tasks_app.models import Task

    _people_and_tasks(ROUTING_TASKS)
    inputs = selectors.routing_inputs()
    rng = random.Random(11)
    times = []
    for _ in range(DECISIONS):
        request = routing.Request(effort_hours=rng.uniform(0.25, 6))
        started = time.perf_counter()
        routing.decide(request, inputs)
        times.append((time.perf_counter() - started) * 1000)

    def new_tasks(n):
        now = dt.datetime.now(dt.UTC)
        return [Task(id=uuid.uuid4(), title="r", effort_hours=1, created_at=now) for _ in range(n)]

    single = []
    for _ in range(SINGLE_ROUTES):
        tasks = new_tasks(1)
        started = time.perf_counter()
        services._route_new(tasks, {}, now=dt.datetime.now(dt.UTC))
        single.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    services._route_new(new_tasks(1000), {}, now=dt.datetime.now(dt.UTC))
    batch_ms = (time.perf_counter() - started) * 1000
    p99 = percentile(times, 99)
    return [
        Row(
            "routing", f"decision p99 ({ASSIGNEES} assignees, {ROUTING_TASKS:,} open tasks)", p99, "ms",
            baseline=f"p50 {percentile(times, 50):.3f} ms over {DECISIONS:,} decisions",
            target="p99 <= 5 ms", ok=p99 <= 5,
        ),
        Row(
            "routing", "single create: inputs loaded + decision, p50 / p99", percentile(single, 99), "ms (p99)",
            baseline=f"p50 {percentile(single, 50):.1f} ms; a 1,000-task batch: {batch_ms:.0f} ms "
            f"({batch_ms / 1000:.2f} ms per task)",
            target="design: < 200 ms",
            ok=percentile(single, 99) < 200,
        ),
    ]  # fmt: skip


def rescoring_run(database_url: str) -> list[Row]:
    _django(database_url)
    from django.db import connection

    from tasks_app import services

    _people_and_tasks(RESCORE_TASKS)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.id, t.version, t.created_at, t.deadline, t.priority, t.effort_hours, t.last_progress_at, "
            "c.importance, c.sla_hours FROM tasks_app_task t LEFT JOIN tasks_app_client c ON c.id = t.client_id "
            "WHERE t.status NOT IN ('completed', 'archived')"
        )
        rows = len(cursor.fetchall())
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    changed = services.tasks_rescore_open()
    first = time.perf_counter() - started
    started = time.perf_counter()
    services.tasks_rescore_open(now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    second = time.perf_counter() - started
    return [
        Row(
            "rescoring", f"rescore {rows:,} open tasks (first scoring)", first, "s",
            baseline=f"reading the same columns alone: {read_s:.2f} s; {changed:,} rows written; "
            f"a second run an hour later: {second:.1f} s",
            target="<= 10 s", ok=first <= 10 and second <= 10,
        ),
    ]  # fmt: skip


def planner_run(database_url: str) -> list[Row]:
    _django(database_url)
    from django.db import connection

    from tasks_app import plans, services

    _people_and_tasks(ROUTING_TASKS)
    services.tasks_rescore_open()
    day = dt.date.today()
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(
            "SELECT t.assignee_id, t.id, t.title, t.score, t.effort_hours, t.deadline, t.created_at, c.sla_hours "
            "FROM tasks_app_task t LEFT JOIN tasks_app_client c ON c.id = t.client_id "
            "WHERE t.assignee_id IS NOT NULL AND t.status IN ('assigned', 'in_progress', 'pending', 'review')"
        )
        n = len(cursor.fetchall())
        read_s = time.perf_counter() - started
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        built = plans.plans_build(date=day)
        runs.append(time.perf_counter() - started)
    items = sum(len(p.items) for p in built)
    return [
        Row(
            "planner", f"daily plans for {len(built)} assignees ({n:,} plannable tasks)", max(runs), "s (worst of 3)",
            baseline=f"median {statistics.median(runs):.2f} s; reading the tasks alone: {read_s:.2f} s; "
            f"{items:,} items planned",
            target="<= 2 s", ok=max(runs) <= 2,
        ),
    ]  # fmt: skip
