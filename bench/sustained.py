"""Sustained load: mixed traffic at ten times the design's 1,000 tasks per minute, with Celery
workers draining the outbox to the provider sandbox the whole time.

Traffic (per second, at the default 10,000 tasks/min = 167 tasks/s): 60% of new tasks in bulk
requests of 50, 30% as single creates, 10% through signed Todoist webhooks (tasks made directly in
the provider, adopted by us); plus task updates and reads. The outbox goes to two ClickUp
Enterprise-plan providers (10,000 requests/min per token, as ClickUp documents it; the sandbox
enforces the same limit) since at 10x the design rate no Free/Business-plan token could keep up
(100 requests/min, docs/provider-apis.md §1.4).

Measured: p50/p99 and errors per endpoint; the outbox backlog every 5 s (bounded = its last
third is not growing); the resident memory of every process (API workers, Celery workers and
their children, the sandbox) at a quarter of the run and at the end (flat = grew by < 15%);
after the traffic stops, how long the backlog takes to reach zero, and whether every task was
delivered exactly once (sandbox create counts).

BENCH_SUSTAINED_SECONDS (default 600) and BENCH_SUSTAINED_TASKS_PER_MIN (default 10000) shorten
or scale the run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
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

from bench.common import ROOT, Row, free_port, gunicorn, manage, percentile, port_open, service_env

SECONDS = float(os.environ.get("BENCH_SUSTAINED_SECONDS", "600"))
TASKS_PER_MIN = float(os.environ.get("BENCH_SUSTAINED_TASKS_PER_MIN", "10000"))
BULK_SIZE = 50
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
    """Runs ``fire()`` ``rate`` times a second from a few threads, recording latency per endpoint."""

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
            conn = http.client.HTTPConnection(self.parts.hostname, self.parts.port, timeout=60)
            next_at = time.perf_counter() + offset
            while not self.stop.is_set():
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
                method, path, body, headers, ok = make()
                started = time.perf_counter()
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    status = response.status
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(self.parts.hostname, self.parts.port, timeout=60)
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


def _backlog(conn) -> int:
    return conn.execute(
        "SELECT count(*) FROM outbox_app_outboxevent WHERE status IN ('pending','failed','processing')"
    ).fetchone()[0]


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
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "archangel",
                "worker",
                "--concurrency",
                "2",
                "--loglevel",
                "error",
                "-n",
                f"sustained{n}@%h",
                *(["--beat"] if n == 0 else []),
            ],
            cwd=ROOT,
            env=service_env(database_url, **env),
            stdout=subprocess.DEVNULL,
        )
        for n in range(2)
    ]
    run_id = uuid.uuid4().hex[:6]
    auth = {"Content-Type": "application/json", "Authorization": f"Token {token}"}
    counter = iter(range(10**9))
    created_ids: list[str] = []
    rows: list[Row] = []
    try:
        with gunicorn(database_url, workers=3, **env) as base:
            load = Paced(base)
            rate = TASKS_PER_MIN / 60

            def bulk():
                items = [{"title": f"Bulk {run_id} {next(counter)}", "effort_hours": 1} for _ in range(BULK_SIZE)]
                return "POST", "/api/tasks/bulk", json.dumps({"tasks": items}).encode(), auth, {200, 201, 207}

            def single():
                body = {"title": f"Single {run_id} {next(counter)}", "effort_hours": 0.5}
                return "POST", "/api/tasks", json.dumps(body).encode(), auth, {200, 201}

            single.seen = lambda data: created_ids.append(json.loads(data)["id"]) if len(created_ids) < 5000 else None

            def update():
                if not created_ids:
                    return "GET", "/api/tasks?page_size=1", None, auth, {200}
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
            streams = [
                ("POST /api/tasks/bulk", rate * 0.6 / BULK_SIZE, bulk, 1),
                ("POST /api/tasks", rate * 0.3, single, 4),
                ("POST /api/webhooks/todoist", rate * 0.1, lambda: _signed_todoist(next(hook_counter), run_id), 2),
                ("PATCH /api/tasks/{id}", rate * 0.1, update, 2),
                ("GET /api/tasks", 5, read_list, 1),
                ("GET /api/tasks/{id}", 10, read_one, 1),
            ]
            threads = [t for name, r, make, n in streams for t in load.stream(name, r, make, n)]
            procs = {"api": None, "worker0": workers[0].pid, "worker1": workers[1].pid, "sandbox": sandbox.pid}
            with psycopg.connect(database_url.replace("postgres://", "postgresql://"), autocommit=True) as db:
                api_pid = next(int(p) for p in os.popen("pgrep -f 'gunicorn archangel.wsgi'").read().split()[:1])
                procs["api"] = api_pid
                started = time.monotonic()
                for t in threads:
                    t.start()
                backlog, rss_quarter = [], {}
                while (elapsed := time.monotonic() - started) < SECONDS:
                    time.sleep(5)
                    backlog.append((round(elapsed), _backlog(db)))
                    if not rss_quarter and elapsed >= SECONDS / 4:
                        rss_quarter = {n: sum(_rss_kb(p) for p in _tree(pid)) for n, pid in procs.items()}
                rss_end = {n: sum(_rss_kb(p) for p in _tree(pid)) for n, pid in procs.items()}
                load.stop.set()
                for t in threads:
                    t.join(timeout=70)
                stopped = time.monotonic()
                while _backlog(db) and time.monotonic() - stopped < 300:
                    time.sleep(1)
                drain_after = time.monotonic() - stopped
                final_backlog = _backlog(db)
                dead = db.execute("SELECT count(*) FROM outbox_app_outboxevent WHERE status='dead'").fetchone()[0]
                tasks = db.execute("SELECT count(*) FROM tasks_app_task").fetchone()[0]
            probe = http.client.HTTPConnection("127.0.0.1", sandbox_port, timeout=30)
            probe.request("GET", "/_sandbox/state?items=0")
            state = json.loads(probe.getresponse().read())
            probe.close()
    finally:
        for proc in [*workers, sandbox]:
            proc.terminate()
        for proc in [*workers, sandbox]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    duplicates = {**state["duplicates"]["by_marker"], **state["duplicates"]["by_request_id"]}
    # The load is closed-loop per stream: when the server slows, fewer requests go out. Say so.
    achieved = tasks / SECONDS * 60
    total = sum(len(v) for v in load.latencies.values())
    errors = sum(load.errors.values())
    third = [b for _, b in backlog[len(backlog) * 2 // 3 :]] or [0]
    bounded = max(third) <= max([b for _, b in backlog[: len(backlog) * 2 // 3]] or [0]) * 1.2 + 200
    growth = {n: (rss_end[n] - rss_quarter.get(n, rss_end[n])) / max(rss_quarter.get(n, 1), 1) for n in rss_end}
    rows.append(
        Row(
            "sustained",
            f"mixed traffic {SECONDS:.0f} s at {TASKS_PER_MIN:,.0f} tasks/min",
            total / SECONDS,
            "req/s",
            baseline=f"{tasks:,} tasks stored = {achieved:,.0f} tasks/min achieved; {errors} errors; "
            f"backlog max {max((b for _, b in backlog), default=0)}, "
            f"last third max {max(third)}; drained {drain_after:.0f} s after the traffic stopped; {dead} dead; "
            f"sandbox: {sum(state['creates'].values()):,} creates, {len(duplicates)} duplicated, "
            f"{state['over_limit_total']} requests over a limit",
            target="no errors, backlog bounded, memory flat, exactly once",
            ok=errors == 0
            and bounded
            and final_backlog == 0
            and dead == 0
            and not duplicates
            and state["over_limit_total"] == 0
            and all(g < 0.15 for g in growth.values()),
            extra={"backlog": backlog, "statuses": {k: dict(v) for k, v in load.statuses.items()}},
        )
    )
    for name, values in sorted(load.latencies.items()):
        rows.append(
            Row("sustained", f"{name} p50 / p99", percentile(values, 99), "ms (p99)",
                baseline=f"p50 {percentile(values, 50):.1f} ms; {len(values):,} requests, {load.errors[name]} errors")
        )  # fmt: skip
    rows.append(
        Row("sustained", "resident memory growth, 25% → end of run", max(growth.values()) * 100, "% (worst process)",
            baseline=", ".join(f"{n} {rss_quarter.get(n, 0) // 1024}→{rss_end[n] // 1024} MB" for n in rss_end),
            target="< 15%", ok=max(growth.values()) < 0.15)
    )  # fmt: skip
    return rows
