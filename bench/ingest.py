"""Ingest: tasks created through POST /api/tasks and /api/tasks/bulk, each beside the raw
psycopg insert rate of the same rows (task + outbox event, one transaction) in the same run.

Targets (issue: foundation): single create >= 400 requests/s with p99 <= 100 ms at 32
concurrent clients; bulk >= 5,000 tasks/s and at least a quarter of the raw insert rate.

Single creates are measured twice: as a closed loop (32 clients, each sending its next request
when the previous answer is in: the saturation rate, whose mean latency is 32 / rate by
Little's law) and as an open loop (32 connections offering a fixed 400 requests/s in total,
latency counted from each request's due time: does it serve 400/s within 100 ms at p99?).
"""

import datetime as dt
import hashlib
import json
import os
import threading
import time
import uuid

import psycopg

from bench.common import (
    Row,
    cpu_per_request,
    cpu_seconds,
    gunicorn,
    json_request,
    load,
    make_token,
    manage,
    mean,
    percentile,
)

SINGLE_REQUESTS = int(os.environ.get("BENCH_INGEST_SINGLE", "6000"))
BULK_REQUESTS = int(os.environ.get("BENCH_INGEST_BULK", "30"))
# With N > 0, a ClickUp provider, 20 people with identities and N open tasks assigned to them are
# written first, so every create is routed and routing's open load (tasks_app/selectors.py, "Open
# load") aggregates N open tasks. Without them (the default) creates are not routed at all.
OPEN_TASKS = int(os.environ.get("BENCH_INGEST_OPEN_TASKS", "0"))
BULK_SIZE = 1000
CONCURRENCY = 32
# The open-loop run's offered rate (requests/s, all 32 connections together); it sends
# BENCH_INGEST_SINGLE requests, 15 s at the defaults.
FIXED_RATE = float(os.environ.get("BENCH_INGEST_RATE", "400"))
BULK_CONCURRENCY = int(os.environ.get("BENCH_BULK_CLIENTS", "4"))

# The same rows the API writes for a task and its create event (every NOT NULL column).
TASK_COLUMNS = (
    "id", "title", "description", "status", "priority", "effort_hours", "effort_estimated", "score_breakdown",
    "fingerprint", "source", "version", "created_at", "updated_at",
)  # fmt: skip
EVENT_COLUMNS = (
    "id", "aggregate_type", "aggregate_id", "aggregate_version", "operation_type", "payload", "idempotency_key",
    "status", "retry_count", "scheduled_at", "error_message", "created_at", "updated_at",
)  # fmt: skip


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"


TASK_SQL = _insert_sql("tasks_app_task", TASK_COLUMNS)
EVENT_SQL = _insert_sql("outbox_app_outboxevent", EVENT_COLUMNS)


def _rows(prefix: str, n: int):
    now = dt.datetime.now(dt.UTC)
    for i in range(n):
        task_id = uuid.uuid4()
        title = f"{prefix} raw {i} {task_id.hex[:8]}"
        payload = json.dumps(
            {"task_id": str(task_id), "version": 1, "title": title, "status": "pending", "priority": 2}
        )
        fingerprint = hashlib.sha256(title.encode()).hexdigest()
        yield (
            (task_id, title, "", "pending", 2, 1, True, "{}", fingerprint, "api", 1, now, now),
            (uuid.uuid4(), "task", task_id, 1, "create", payload, f"task:{task_id}:v1:create", "pending", 0, now, "",
             now, now),
        )  # fmt: skip


def _copy(cur, rows) -> None:
    with cur.copy(f"COPY tasks_app_task ({', '.join(TASK_COLUMNS)}) FROM STDIN") as copy:
        for task_row, _ in rows:
            copy.write_row(task_row)
    with cur.copy(f"COPY outbox_app_outboxevent ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
        for _, event_row in rows:
            copy.write_row(event_row)


def raw_insert_rate(database_url: str, *, total: int, batch: int, concurrency: int, copy: bool = False) -> float:
    """Rows (task + event) per second written by plain psycopg, ``batch`` rows per transaction:
    one INSERT per row (``executemany``, pipelined by psycopg) or, with ``copy``, COPY, the
    fastest way PostgreSQL takes rows."""
    batches = total // batch
    counter = iter(range(batches))
    lock = threading.Lock()

    def worker():
        with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as conn:
            while True:
                with lock:
                    b = next(counter, None)
                if b is None:
                    return
                rows = list(_rows(f"b{b}", batch))
                with conn.transaction(), conn.cursor() as cur:
                    if copy:
                        _copy(cur, rows)
                    elif batch == 1:
                        cur.execute(TASK_SQL, rows[0][0])
                        cur.execute(EVENT_SQL, rows[0][1])
                    else:
                        cur.executemany(TASK_SQL, [r[0] for r in rows])
                        cur.executemany(EVENT_SQL, [r[1] for r in rows])

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return batches * batch / (time.perf_counter() - started)


def _other_token(database_url: str, username: str) -> str:
    """Another user's token (the floor's, the fixed-rate run's), so each run has its own
    per-user throttle budget (ARCHANGEL_THROTTLE_RATE, 12,000/min) and none refuses another's."""
    code = (
        "from django.contrib.auth import get_user_model;"
        "from rest_framework.authtoken.models import Token;"
        f"u, _ = get_user_model().objects.get_or_create(username={username!r}, defaults={{'is_staff': True}});"
        "print(Token.objects.get_or_create(user=u)[0].key)"
    )
    return manage("shell", "-c", code, database_url=database_url, capture=True).strip().splitlines()[-1]


def _body(run_id: str, i: int) -> dict:
    return {"title": f"single {run_id} {i}", "priority": 1 + i % 4}


def _seed_open_load(database_url: str, open_tasks: int) -> None:
    code = f"""
import datetime as dt, uuid
from providers_app import services
from tasks_app.models import Assignee, AssigneeIdentity, Task
from tests.factories import PROVIDER_CONFIGS
p = services.provider_create(name="bench-clickup", type="clickup", config=PROVIDER_CONFIGS["clickup"])
people = [Assignee.objects.create(name=f"Bench {{i}}", email=f"bench{{i}}@example.com", capacity_hours_per_day=8,
          timezone="UTC") for i in range(20)]
AssigneeIdentity.objects.bulk_create([AssigneeIdentity(assignee=a, provider=p, external_user_id=f"cu-{{i}}")
                                      for i, a in enumerate(people)])
now = dt.datetime.now(dt.UTC)
Task.objects.bulk_create([Task(id=uuid.uuid4(), title=f"open {{i}}", status="assigned", effort_hours=1 + i % 5,
                               assignee=people[i % 20], provider=p, fingerprint=uuid.uuid4().hex, created_at=now,
                               updated_at=now) for i in range({open_tasks})], batch_size=5000)
"""
    manage("shell", "-c", code, database_url=database_url)


def _cpu_text(cpu: dict[str, float], result) -> str:
    """CPU per request by process kind, and how busy that kept the machine's cores."""
    if not cpu:
        return "CPU per request: not measured (no /proc)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = sum(cpu.values()) * result.requests / 1000 / result.seconds / cores
    parts = ", ".join(f"{kind} {cpu.get(kind, 0):.2f}" for kind in ("server", "postgres", "redis", "loadgen", "other"))
    return f"CPU per request (ms): {parts}; cores {busy:.0%} busy"


def run(database_url: str) -> list[Row]:
    if OPEN_TASKS:
        _seed_open_load(database_url, OPEN_TASKS)
    token = make_token(database_url)
    floor_token = _other_token(database_url, "bench-floor")
    fixed_token = _other_token(database_url, "bench-fixed")
    run_id = uuid.uuid4().hex[:6]
    # The production worker model (archangel/gunicorn_conf.py: a process per core, 4 threads each)
    # unless BENCH_WEB_WORKERS / BENCH_WEB_THREADS say otherwise. Until 2026-11-26 this ran 4
    # processes; measured alternating with 2 (docs/benchmarks.md, "Ingest"), 4 cost a create
    # 0.6-0.9 ms more CPU on two cores.
    workers = int(os.environ["BENCH_WEB_WORKERS"]) if os.environ.get("BENCH_WEB_WORKERS") else None
    threads = int(os.environ["BENCH_WEB_THREADS"]) if os.environ.get("BENCH_WEB_THREADS") else None
    settings_module = "bench.settings_bench"
    with gunicorn(database_url, workers=workers, threads=threads, DJANGO_SETTINGS_MODULE=settings_module) as base:
        # Warm up every worker (imports, connections) before measuring.
        load(
            base,
            concurrency=8,
            requests=200,
            make_request=lambda i: json_request("POST", "/api/tasks", {"title": f"warm {run_id} {i}"}, token),
        )
        # The floor: the same requests through the same middleware and DRF (token auth, roles,
        # throttle, parsing, rendering) to a view that does nothing.
        load(
            base,
            concurrency=8,
            requests=200,
            make_request=lambda i: json_request("POST", "/bench/floor", _body(run_id, i), floor_token),
        )
        floor = load(
            base,
            concurrency=CONCURRENCY,
            requests=SINGLE_REQUESTS,
            make_request=lambda i: json_request("POST", "/bench/floor", _body(run_id, i), floor_token),
        )
        single = load(
            base,
            concurrency=CONCURRENCY,
            requests=SINGLE_REQUESTS,
            make_request=lambda i: json_request("POST", "/api/tasks", _body(run_id, i), token),
        )
        cpu_before = cpu_seconds()
        fixed = load(
            base,
            concurrency=CONCURRENCY,
            requests=SINGLE_REQUESTS,
            rate=FIXED_RATE,
            make_request=lambda i: json_request("POST", "/api/tasks", _body(f"{run_id}-fixed", i), fixed_token),
        )
        fixed_cpu = cpu_per_request(cpu_before, cpu_seconds(), SINGLE_REQUESTS)
        bulk = load(
            base,
            concurrency=BULK_CONCURRENCY,
            requests=BULK_REQUESTS,
            make_request=lambda i: json_request(
                "POST", "/api/tasks/bulk",
                {"tasks": [{"title": f"bulk {run_id} {i}-{j}", "priority": 1 + j % 4} for j in range(BULK_SIZE)]},
                token,
            ),
        )  # fmt: skip
    raw_single = raw_insert_rate(database_url, total=SINGLE_REQUESTS, batch=1, concurrency=CONCURRENCY)
    bulk_rows = BULK_REQUESTS * BULK_SIZE
    raw_bulk = raw_insert_rate(database_url, total=bulk_rows, batch=BULK_SIZE, concurrency=BULK_CONCURRENCY)
    raw_copy = raw_insert_rate(database_url, total=bulk_rows, batch=BULK_SIZE, concurrency=BULK_CONCURRENCY, copy=True)
    best_raw = max(raw_bulk, raw_copy)
    bulk_rate = bulk.rate * BULK_SIZE
    routed = f", routed, {OPEN_TASKS:,} open tasks" if OPEN_TASKS else ""
    return [
        Row(
            "ingest", f"POST /api/tasks (32 clients{routed})", single.rate, "req/s",
            baseline=f"raw psycopg task+event insert, 32 connections: {raw_single:,.0f} rows/s "
            f"(API = {single.rate / raw_single:.0%} of raw); the DRF floor on the same server: "
            f"{floor.rate:,.0f} req/s, p50 {floor.p(50):.1f} / p99 {floor.p(99):.1f} ms "
            f"(create = {single.rate / floor.rate:.0%} of the floor)",
            target=">= 400 req/s", ok=single.rate >= 400 and single.errors == 0,
            extra={"errors": single.errors, "statuses": single.statuses, "floor_errors": floor.errors},
        ),
        Row(
            "ingest", f"POST /api/tasks p50 / p99 (32 clients, closed loop{routed})", single.p(99), "ms (p99)",
            baseline=f"p50 {single.p(50):.1f} ms; mean {mean(single.latencies_ms):.1f} ms "
            f"(Little's law: 32 clients / {single.rate:,.0f} req/s = {32000 / single.rate:.1f} ms)",
            target="p99 <= 100 ms", ok=single.p(99) <= 100,
        ),
        Row(
            "ingest", f"POST /api/tasks at a fixed {FIXED_RATE:,.0f} req/s offered (32 connections, open loop{routed})",
            fixed.rate, "req/s",
            baseline=f"p50 {fixed.p(50):.1f} / p99 {fixed.p(99):.1f} / max {max(fixed.latencies_ms):.0f} ms from each "
            f"request's due time; of which due -> sent (no connection free, or the generator late) "
            f"p50 {percentile(fixed.send_lag_ms, 50):.1f} / p99 {percentile(fixed.send_lag_ms, 99):.1f} ms; "
            f"errors {fixed.errors}; {_cpu_text(fixed_cpu, fixed)}",
            target=f">= {FIXED_RATE:,.0f} req/s served with p99 <= 100 ms",
            ok=fixed.rate >= 0.99 * FIXED_RATE and fixed.p(99) <= 100 and fixed.errors == 0,
            extra={"p50_ms": fixed.p(50), "p99_ms": fixed.p(99), "statuses": fixed.statuses, "cpu_ms": fixed_cpu},
        ),
        Row(
            "ingest", f"POST /api/tasks/bulk ({BULK_SIZE}/request, {BULK_CONCURRENCY} clients)", bulk_rate, "tasks/s",
            baseline=f"raw psycopg, {BULK_SIZE} rows/tx, {BULK_CONCURRENCY} connections: "
            f"executemany {raw_bulk:,.0f} rows/s, "
            f"COPY {raw_copy:,.0f} rows/s (API = {bulk_rate / best_raw:.0%} of the faster)",
            target=">= 5,000 tasks/s and >= 25% of raw",
            ok=bulk_rate >= 5000 and bulk_rate >= best_raw / 4 and bulk.errors == 0,
            extra={"errors": bulk.errors, "p99_ms": bulk.p(99)},
        ),
    ]  # fmt: skip
