"""Sustained load: mixed traffic at ten times the design's 1,000 tasks per minute, with Celery
workers draining the outbox to the provider sandbox the whole time.

The mix is what a day of real use looks like, scaled up: most tasks arrive in bulk imports
(``POST /api/tasks/bulk`` of 100), beside a steady stream of single creates, signed Todoist
webhooks (tasks made in the provider and adopted by us), updates and reads. At the default
10,000 tasks/min (167 tasks/s): 90% of the tasks in bulk requests (1.5 requests/s), 6% as single
creates (10/s), 4% through webhooks (6.7/s); plus 10 updates/s, 8 task reads/s and 1 list read/s.
Every stream is paced on a fixed schedule by a few threads of its own (a thread that falls behind
sends its late requests at once, so a slow server shows as latency, not as a lower offered rate).
The outbox goes to two ClickUp Enterprise-plan providers (10,000 requests/min per token, as ClickUp
documents it; the sandbox enforces the same limit) since at 10x the design rate no Free/Business
plan token could keep up (100 requests/min, docs/provider-apis.md §1.4).

Measured: tasks stored per minute (sampled every 5 s; "sustained" means the rate over the whole
load window, and over every 60-s window of it, is at least the target) beside the rate offered by
the generator and the rate delivered to the sandbox; p50/p99 and errors per endpoint; the outbox
backlog every 5 s (bounded = its last third is not growing); the resident memory of every process
(API master and workers, each Celery worker with its pool children, the sandbox) after warm-up and
at the end (flat = grew by < 15%; the sandbox is shown but not judged: like a provider, it keeps
every task it is sent); after the traffic stops, how long the backlog takes to reach zero, and
whether every task was delivered exactly once (sandbox create counts per reference marker).

BENCH_SUSTAINED_SECONDS (default 600) and BENCH_SUSTAINED_TASKS_PER_MIN (default 10000) shorten
or scale the run; BENCH_SUSTAINED_WORKERS (2) Celery workers of BENCH_SUSTAINED_CONCURRENCY (2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from urllib.parse import urlsplit

import psycopg

from bench.common import ROOT, Row, _Connection, free_port, gunicorn, manage, percentile, port_open, service_env

SECONDS = float(os.environ.get("BENCH_SUSTAINED_SECONDS", "600"))
TASKS_PER_MIN = float(os.environ.get("BENCH_SUSTAINED_TASKS_PER_MIN", "10000"))
WORKERS = int(os.environ.get("BENCH_SUSTAINED_WORKERS", "2"))
CONCURRENCY = int(os.environ.get("BENCH_SUSTAINED_CONCURRENCY", "2"))
BULK_SIZE = 100
# Shares of the new tasks by the way they arrive; the rest of the traffic is per second.
BULK_SHARE, SINGLE_SHARE, WEBHOOK_SHARE = 0.90, 0.06, 0.04
UPDATES_PER_S, READS_PER_S, LISTS_PER_S = 10.0, 8.0, 1.0
SAMPLE_SECONDS = 5
TODOIST_SECRET = "sustained-td-secret"

SETUP = """
from providers_app import services
from tasks_app.models import Assignee, AssigneeIdentity
sandbox = "{sandbox}"
providers = []
for n in (1, 2):
    providers.append(services.provider_create(name=f"cu-enterprise-{{n}}", type="clickup", config={{
        "api_token": f"pk_sustained_{{n}}", "list_id": "901", "team_id": "9001",
        "rate_limit_per_minute": 10000, "base_url": sandbox + "/clickup/api/v2"}}))
services.provider_create(name="td-intake", type="todoist", config={{
    "api_token": "demo-todoist-token", "project_id": "6Demo", "client_secret": "{secret}",
    "user_id": "2671355", "base_url": sandbox + "/todoist/api/v1"}}).__class__.objects.filter(
    name="td-intake").update(weight=0)
for i in range(20):
    a = Assignee.objects.create(name=f"Person {{i}}", email=f"p{{i}}@example.com", capacity_hours_per_day=8)
    for p in providers:
        AssigneeIdentity.objects.create(assignee=a, provider=p, external_user_id=str(1000 + i))
"""


class Paced:
    """Runs each stream on a fixed schedule from threads of its own, recording latency and
    status per endpoint. A thread's schedule does not slip when an answer is late: the requests
    it owes go out at once, so the offered rate stays the target unless every thread of a
    stream is blocked (then fewer are sent than scheduled, and the report says so)."""

    def __init__(self, base_url: str) -> None:
        self.parts = urlsplit(base_url)
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.statuses: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.stop = threading.Event()

    def stream(self, name: str, rate: float, make, threads: int = 2) -> list[threading.Thread]:
        interval = threads / rate

        def loop(offset: float) -> None:
            conn = _Connection(self.parts.hostname, self.parts.port)
            next_at = time.perf_counter() + offset
            while not self.stop.is_set():
                delay = next_at - time.perf_counter()
                if delay > 0 and self.stop.wait(delay):
                    break
                next_at += interval
                method, path, body, headers, ok = make()
                request = conn.encode(method, path, body, headers)
                started = time.perf_counter()
                try:
                    status, data = conn.exchange(method, request)
                except (OSError, ValueError):
                    conn.close()
                    status, data = 0, b""
                elapsed = (time.perf_counter() - started) * 1000
                with self.lock:
                    self.latencies[name].append(elapsed)
                    self.statuses[name][status] += 1
                    if status not in ok:
                        self.errors[name] += 1
                if status in ok and hasattr(make, "seen"):
                    make.seen(data)
            conn.close()

        return [threading.Thread(target=loop, args=(i * interval / threads,), daemon=True) for i in range(threads)]


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _tree(pid: int) -> list[int]:
    out = [pid]
    for child in _children(pid):
        out.extend(_tree(child))
    return out


def _gunicorn_master() -> int:
    """The gunicorn master this process started (``bench.common.gunicorn``)."""
    for pid in _children(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"gunicorn" in f.read():
                    return pid
        except OSError:
            continue
    raise RuntimeError("no gunicorn child process found")


def _memory(procs: dict[str, int]) -> dict[str, int]:
    """Resident memory (kB) of each named process with all its descendants."""
    return {name: sum(_rss_kb(p) for p in _tree(pid)) for name, pid in procs.items()}


def _backlog(conn) -> int:
    return conn.execute(
        "SELECT count(*) FROM outbox_app_outboxevent WHERE status IN ('pending','failed','processing')"
    ).fetchone()[0]


def _count(conn, table: str, where: str = "") -> int:
    return conn.execute(f"SELECT count(*) FROM {table} {where}").fetchone()[0]


def _lowest_rate(samples: list[tuple[float, int]], window: float) -> float | None:
    """The lowest per-minute rate over any ``window`` seconds of the (time, count) samples;
    None when the samples span less than the window."""
    lowest = None
    for i, (t0, c0) in enumerate(samples):
        for t1, c1 in samples[i + 1 :]:
            if t1 - t0 >= window - SAMPLE_SECONDS / 2:
                rate = (c1 - c0) / (t1 - t0) * 60
                lowest = rate if lowest is None else min(lowest, rate)
                break
    return lowest


def _signed_todoist(i: int, run: str):
    body = json.dumps(
        {
            "event_name": "item:added",
            "user_id": "2671355",
            "version": "1",
            "triggered_at": "2026-11-26T10:00:00.000000Z",
            "event_data": {
                "id": f"{run}x{i}",
                "content": f"From Todoist {run} {i}",
                "priority": 1,
                "checked": False,
                "project_id": "6Demo",
                "added_at": "2026-11-26T10:00:00.000000Z",
            },
        },
        separators=(",", ":"),
    ).encode()
    signature = base64.b64encode(hmac.new(TODOIST_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    headers = {
        "Content-Type": "application/json",
        "X-Todoist-Hmac-SHA256": signature,
        "X-Todoist-Delivery-ID": f"{run}-{i}",
    }
    return "POST", "/api/webhooks/todoist", body, headers, {200, 202}


def run(database_url: str) -> list[Row]:
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = {"ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS": "true", "ARCHANGEL_PLAIN_HTTP_HOSTS": "127.0.0.1"}
    sandbox = subprocess.Popen(
        [sys.executable, "manage.py", "run_sandbox", "--port", str(sandbox_port),
         "--clickup-token", "pk_sustained_1", "--clickup-token", "pk_sustained_2",
         "--clickup-per-token", "10000", "--latency-ms", "20"],
        cwd=ROOT, env=service_env(database_url, **env), stdout=subprocess.DEVNULL,
    )  # fmt: skip
    while not port_open("127.0.0.1", sandbox_port):
        time.sleep(0.1)
    setup_env = dict(os.environ, **env)
    os.environ.update(env)
    try:
        manage("shell", "-c", SETUP.format(sandbox=sandbox_url, secret=TODOIST_SECRET), database_url=database_url)
    finally:
        for key in env:
            if key not in setup_env:
                os.environ.pop(key, None)
    token = (
        manage("create_api_token", "sustained", "--role", "operator", database_url=database_url, capture=True)
        .strip()
        .splitlines()[-1]
    )
    worker_env = service_env(database_url, CELERY_METRICS_PORT="0", **env)
    workers = []
    for n in range(WORKERS):
        cmd = [
            sys.executable, "-m", "celery", "-A", "archangel", "worker", "--concurrency", str(CONCURRENCY),
            "--loglevel", "error", "-n", f"sustained{n}@%h", *(["--beat"] if n == 0 else []),
        ]  # fmt: skip
        workers.append(subprocess.Popen(cmd, cwd=ROOT, env=worker_env, stdout=subprocess.DEVNULL))
    run_id = uuid.uuid4().hex[:6]
    auth = {"Content-Type": "application/json", "Authorization": f"Token {token}"}
    counter = iter(range(10**9))
    created_ids: list[str] = []
    rate = TASKS_PER_MIN / 60
    streams_planned = {
        # name: (requests per second, threads, tasks per request)
        "POST /api/tasks/bulk": (rate * BULK_SHARE / BULK_SIZE, 4, BULK_SIZE),
        "POST /api/tasks": (rate * SINGLE_SHARE, 8, 1),
        "POST /api/webhooks/todoist": (rate * WEBHOOK_SHARE, 2, 1),
        "PATCH /api/tasks/{id}": (UPDATES_PER_S, 4, 0),
        "GET /api/tasks/{id}": (READS_PER_S, 2, 0),
        "GET /api/tasks": (LISTS_PER_S, 1, 0),
    }
    try:
        with gunicorn(database_url, **env) as base:
            load = Paced(base)

            def bulk():
                items = [{"title": f"Bulk {run_id} {next(counter)}", "effort_hours": 1} for _ in range(BULK_SIZE)]
                return "POST", "/api/tasks/bulk", json.dumps({"tasks": items}).encode(), auth, {200, 201, 207}

            def single():
                body = {"title": f"Single {run_id} {next(counter)}", "effort_hours": 0.5}
                return "POST", "/api/tasks", json.dumps(body).encode(), auth, {200, 201}

            single.seen = lambda data: created_ids.append(json.loads(data)["id"]) if len(created_ids) < 5000 else None

            def update():
                if not created_ids:
                    return "GET", "/api/health", None, {}, {200}
                task_id = created_ids[next(counter) % len(created_ids)]
                body = {"priority": 1 + next(counter) % 4}
                return "PATCH", f"/api/tasks/{task_id}", json.dumps(body).encode(), auth, {200}

            def read_list():
                return "GET", "/api/tasks?page_size=50&ordering=-score", None, auth, {200}

            def read_one():
                if not created_ids:
                    return "GET", "/api/health", None, {}, {200}
                return "GET", f"/api/tasks/{created_ids[next(counter) % len(created_ids)]}", None, auth, {200}

            hook_counter = iter(range(10**9))
            makers = {
                "POST /api/tasks/bulk": bulk,
                "POST /api/tasks": single,
                "POST /api/webhooks/todoist": lambda: _signed_todoist(next(hook_counter), run_id),
                "PATCH /api/tasks/{id}": update,
                "GET /api/tasks/{id}": read_one,
                "GET /api/tasks": read_list,
            }
            threads = [t for name, (r, n, _) in streams_planned.items() for t in load.stream(name, r, makers[name], n)]
            procs = {"api": _gunicorn_master(), "sandbox": sandbox.pid}
            procs.update({f"worker{n}": w.pid for n, w in enumerate(workers)})
            with psycopg.connect(database_url.replace("postgres://", "postgresql://"), autocommit=True) as db:
                tasks_before = _count(db, "tasks_app_task")
                started = time.monotonic()
                for t in threads:
                    t.start()
                backlog: list[tuple[int, int]] = []
                stored: list[tuple[float, int]] = [(0.0, tasks_before)]
                delivered: list[tuple[float, int]] = [(0.0, _count(db, "outbox_app_outboxevent", DELIVERED))]
                warm_at = max(SECONDS / 4, min(60.0, SECONDS / 2))  # memory is compared from here on
                rss_warm: dict[str, int] = {}
                while (elapsed := time.monotonic() - started) < SECONDS:
                    time.sleep(min(SAMPLE_SECONDS, max(0.0, SECONDS - elapsed)))
                    elapsed = time.monotonic() - started
                    stored.append((elapsed, _count(db, "tasks_app_task")))
                    delivered.append((elapsed, _count(db, "outbox_app_outboxevent", DELIVERED)))
                    backlog.append((round(elapsed), _backlog(db)))
                    if not rss_warm and elapsed >= warm_at:
                        rss_warm = _memory(procs)
                rss_end = _memory(procs)
                load.stop.set()
                for t in threads:
                    t.join(timeout=70)
                window = time.monotonic() - started
                stopped = time.monotonic()
                while _backlog(db) and time.monotonic() - stopped < 300:
                    time.sleep(1)
                drain_after = time.monotonic() - stopped
                final_backlog = _backlog(db)
                dead = _count(db, "outbox_app_outboxevent", "WHERE status = 'dead'")
                tasks_total = _count(db, "tasks_app_task") - tasks_before
            probe = _Connection("127.0.0.1", sandbox_port, timeout=30)
            state = json.loads(probe.exchange("GET", probe.encode("GET", "/_sandbox/state?items=0", None, {}))[1])
            probe.close()
    finally:
        for proc in [*workers, sandbox]:
            proc.terminate()
        for proc in [*workers, sandbox]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return _report(load, streams_planned, stored, delivered, backlog, rss_warm, rss_end, state,
                   window=window, drain_after=drain_after, final_backlog=final_backlog, dead=dead,
                   tasks_total=tasks_total)  # fmt: skip


DELIVERED = "WHERE status = 'delivered'"


def _report(load, planned, stored, delivered, backlog, rss_warm, rss_end, state, *, window, drain_after,
            final_backlog, dead, tasks_total) -> list[Row]:  # fmt: skip
    duplicates = {**state["duplicates"]["by_marker"], **state["duplicates"]["by_request_id"]}
    # Tasks stored per minute in the steady state: from the first sample (5 s in, once every stream
    # is running) to the last, counted on the database, so requests still in flight at either end
    # weigh the same; and over its worst 60 s. Beside it what the generator offered (requests sent
    # x tasks each, over the whole window) and what the drain delivered to the sandbox meanwhile.
    steady = stored[1:] if len(stored) > 2 else stored
    span = steady[-1][0] - steady[0][0]
    achieved = (steady[-1][1] - steady[0][1]) / span * 60 if span else 0.0
    worst_minute = _lowest_rate(steady, 60.0) if span >= 120 else None
    offered = sum(len(load.latencies[name]) * per for name, (_, _, per) in planned.items()) / window * 60
    scheduled = sum(r * per for r, _, per in planned.values()) * 60
    steady_delivered = delivered[1:] if len(delivered) > 2 else delivered
    deliveries = (steady_delivered[-1][1] - steady_delivered[0][1]) / span * 60 if span else 0.0
    errors = sum(load.errors.values())
    third = [b for _, b in backlog[len(backlog) * 2 // 3 :]] or [0]
    bounded = max(third) <= max([b for _, b in backlog[: len(backlog) * 2 // 3]] or [0]) * 1.2 + 200
    growth = {n: (rss_end[n] - rss_warm.get(n, rss_end[n])) / max(rss_warm.get(n, 1), 1) for n in rss_end}
    judged = {n: g for n, g in growth.items() if n != "sandbox"}
    flat = all(g < 0.15 for g in judged.values())
    # The generator offers exactly the target; 1% is left for the pacing's own jitter.
    target_met = achieved >= TASKS_PER_MIN * 0.99 and (worst_minute is None or worst_minute >= TASKS_PER_MIN * 0.97)
    clean = errors == 0 and bounded and final_backlog == 0 and dead == 0 and not duplicates
    clean = clean and state["over_limit_total"] == 0
    worst = "" if worst_minute is None else f", worst 60 s {worst_minute:,.0f}/min"
    rows = [
        Row(
            "sustained",
            f"tasks stored per minute, {SECONDS:.0f} s of mixed traffic (target {TASKS_PER_MIN:,.0f}/min)",
            achieved,
            "tasks/min",
            baseline=f"sent by the generator over the whole window {offered:,.0f}/min (scheduled {scheduled:,.0f})"
            f"{worst}; "
            f"delivered to the sandbox in the same window {deliveries:,.0f} events/min; {tasks_total:,} tasks",
            target=f"≥ {TASKS_PER_MIN:,.0f} tasks/min sustained",
            ok=target_met,
            extra={"stored": stored, "delivered": delivered},
        ),
        Row(
            "sustained",
            "errors, backlog, exactly once",
            errors,
            "errors",
            baseline=f"backlog max {max((b for _, b in backlog), default=0)}, last third max {max(third)} "
            f"({'bounded' if bounded else 'GROWING'}); drained {drain_after:.0f} s after the traffic stopped; "
            f"{dead} dead; sandbox: {sum(state['creates'].values()):,} creates, {len(duplicates)} duplicated, "
            f"{state['over_limit_total']} requests over a limit",
            target="0 errors, backlog bounded, 0 dead, 0 duplicated, 0 over limit",
            ok=clean,
            extra={"backlog": backlog, "statuses": {k: dict(v) for k, v in load.statuses.items()}},
        ),
    ]
    for name in planned:
        values = load.latencies.get(name, [])
        rows.append(
            Row("sustained", f"{name} p50 / p99", percentile(values, 99), "ms (p99)",
                baseline=f"p50 {percentile(values, 50):.1f} ms; {len(values):,} requests "
                f"({len(values) / window:.1f}/s, scheduled {planned[name][0]:.1f}/s), {load.errors[name]} errors")
        )  # fmt: skip
    rows.append(
        Row("sustained", "resident memory growth, warm-up → end of run", max(judged.values()) * 100,
            "% (worst process)",
            baseline=", ".join(f"{n} {rss_warm.get(n, 0) // 1024}→{rss_end[n] // 1024} MB" for n in rss_end)
            + " (the sandbox keeps every task it is sent, as a provider would: shown, not judged)",
            target="< 15%", ok=flat)
    )  # fmt: skip
    verdict = "SUSTAINED" if target_met and clean and flat else "NOT sustained"
    print(
        f"   {verdict}: {achieved:,.0f} tasks/min stored over {span:.0f} s of steady state (target {TASKS_PER_MIN:,.0f}"
        f"{worst}), {errors} errors, backlog {'bounded' if bounded else 'growing'}, memory "
        f"{'flat' if flat else 'GROWING'}",
        flush=True,
    )
    return rows
