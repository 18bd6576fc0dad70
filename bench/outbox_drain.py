"""Outbox drain: events delivered per second through the real drain (Celery workers, the
gateway's Redis budgets and breakers, the ClickUp adapter) to the provider sandbox answering
every request after 20 ms, with 1 and 4 worker processes; beside it, the raw rate of the same
requests sent by a bare loop with the same processes and threads, in the same run.

Target (issue 3 §6): >= 500 deliveries/s with 4 workers, and zero requests over any
configured rate limit (the sandbox counts them: ``over_limit``).
"""

import json
import os
import subprocess
import sys
import time
import uuid
from urllib.request import Request, urlopen

import psycopg

from bench.common import ROOT, Row, free_port, manage, port_open, service_env

EVENTS = int(os.environ.get("BENCH_DRAIN_EVENTS", "3000"))
LATENCY_MS = 20
THREADS = int(os.environ.get("BENCH_DRAIN_THREADS", "16"))  # OUTBOX_DELIVERY_THREADS per worker
BATCH = int(os.environ.get("BENCH_DRAIN_BATCH", "64"))
TOKEN = "pk_demo_clickup"
LIST_ID = "901"
# The budget the gateway keeps to and the limit the sandbox enforces: the same number, far
# above the bench's rate, so any request over it is a bug in the budgets, not the bench.
PER_MINUTE = 600_000


def _sandbox(port: int) -> subprocess.Popen:
    cmd = [
        sys.executable, "manage.py", "run_sandbox", "--port", str(port), "--latency-ms", str(LATENCY_MS),
        "--clickup-per-token", str(PER_MINUTE), "--clickup-period", "60",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=service_env("postgres://unused/none"), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the sandbox did not start")
        time.sleep(0.1)
    return proc


def _control(base: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = Request(f"{base}/_sandbox/{path}", data=data, method="POST" if data is not None else "GET")
    req.add_header("Content-Type", "application/json")
    with urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def _setup(database_url: str, sandbox_base: str, run_id: str) -> str:
    """A ClickUp provider pointed at the sandbox and EVENTS tasks, each with its create event."""
    code = f"""
from providers_app.services import provider_create
from tasks_app.services import task_bulk_create
p = provider_create(name="bench-clickup-{run_id}", type="clickup", config={{
    "api_token": "{TOKEN}", "list_id": "{LIST_ID}", "team_id": "9001",
    "base_url": "{sandbox_base}/clickup/api/v2", "rate_limit_per_minute": {PER_MINUTE}}})
for start in range(0, {EVENTS}, 1000):
    task_bulk_create(items=[{{"title": f"drain {run_id} {{i}}", "provider": str(p.id)}}
                            for i in range(start, min({EVENTS}, start + 1000))])
print(p.id)
"""
    return manage("shell", "-c", code, database_url=database_url, capture=True).strip().splitlines()[-1]


def _counts(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as conn:
        rows = conn.execute("SELECT status, count(*) FROM outbox_app_outboxevent GROUP BY status").fetchall()
    return dict(rows)


def _workers(database_url: str, n: int, queue: str) -> list[subprocess.Popen]:
    env = service_env(
        database_url,
        ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS="true",
        OUTBOX_DELIVERY_THREADS=str(THREADS),
        OUTBOX_BATCH_SIZE=str(BATCH),
        OUTBOX_WAKEUP="false",
        CELERY_METRICS_PORT="0",
    )
    return [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "archangel", "worker", "-Q", queue, "--pool", "solo",
             "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
             "--hostname", f"{queue}-{i}@%h"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        )
        for i in range(n)
    ]  # fmt: skip


def _broker(database_url: str):
    """A bare Celery client on the workers' broker: sending a drain costs a Redis LPUSH, not the
    seconds a ``manage.py shell`` takes to start (which the first figures of this bench counted
    as drain time)."""
    from celery import Celery

    url = service_env(database_url).get("REDIS_URL")
    if not url:
        raise RuntimeError("the drain bench needs Redis (BENCH_REDIS_URL) as the workers' broker")
    return Celery("bench-drain", broker=url, set_as_current=False)


def _send_drains(app, queue: str, n: int) -> None:
    for _ in range(n):
        app.send_task("outbox.drain", queue=queue)


def _wait_ready(app, n: int, timeout: float = 60) -> None:
    """Until ``n`` workers answer a ping: their start-up is not drain time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5) or []) >= n:
            return
    raise RuntimeError(f"{n} drain workers did not come up within {timeout:.0f} s")


def _last_delivery(database_url: str) -> float:
    with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as conn:
        row = conn.execute("SELECT extract(epoch FROM max(delivered_at)) FROM outbox_app_outboxevent").fetchone()
    return float(row[0] or 0)


def drain_rate(database_url: str, sandbox_base: str, workers: int) -> tuple[float, int]:
    """Deliveries per second of EVENTS creates by ``workers`` solo worker processes."""
    run_id = uuid.uuid4().hex[:6]
    with psycopg.connect(database_url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute("DELETE FROM outbox_app_deliveryattempt")
        conn.execute("DELETE FROM outbox_app_outboxevent")
    _setup(database_url, sandbox_base, run_id)
    queue = f"bench-drain-{run_id}"
    app = _broker(database_url)
    procs = _workers(database_url, workers, queue)
    try:
        _wait_ready(app, workers)
        # The clock: from the first drain message to the last delivery PostgreSQL recorded
        # (not to the next poll of this loop).
        started = time.time()
        _send_drains(app, queue, workers * 2)
        deadline = time.monotonic() + 300
        while True:
            counts = _counts(database_url)
            undelivered = sum(v for k, v in counts.items() if k != "delivered")
            if not undelivered or time.monotonic() > deadline:
                break
            if not counts.get("processing"):
                _send_drains(app, queue, workers)  # a drain ended early: wake another
            time.sleep(0.1)
        elapsed = _last_delivery(database_url) - started
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    delivered = _counts(database_url).get("delivered", 0)
    return delivered / elapsed, EVENTS - delivered


# One bare-loop process: THREADS threads, one pooled requests session each, sending its share of
# the creates from an agreed wall-clock start (after its imports); prints the time it finished.
_RAW = """
import sys, threading, time, uuid
import requests
url, token, threads, total, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
counter, lock, run_id = iter(range(total)), threading.Lock(), uuid.uuid4().hex[:8]
def worker():
    session = requests.Session()
    while True:
        with lock:
            i = next(counter, None)
        if i is None:
            return
        body = {"name": f"raw {run_id} {i}", "description": f"archangel-ref: raw-{run_id}-{i}", "priority": 3}
        session.post(url, json=body, headers={"Authorization": token}, timeout=30).raise_for_status()
pool = [threading.Thread(target=worker) for _ in range(threads)]
time.sleep(max(0.0, start_at - time.time()))
for t in pool:
    t.start()
for t in pool:
    t.join()
print(time.time())
"""


def raw_rate(sandbox_base: str, processes: int, threads: int, total: int) -> float:
    """The same creates sent by a bare loop laid out as the drain is: ``processes`` processes of
    ``threads`` threads (one pooled session each), so the loop pays the same GIL per process."""
    url = f"{sandbox_base}/clickup/api/v2/list/{LIST_ID}/task"
    start_at = time.time() + 3  # every process has imported requests by then
    share = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    procs = [
        subprocess.Popen([sys.executable, "-c", _RAW, url, TOKEN, str(threads), str(n), str(start_at)],
                         stdout=subprocess.PIPE, text=True)
        for n in share
    ]  # fmt: skip
    ends = [float(p.communicate(timeout=300)[0].strip()) for p in procs]
    return total / (max(ends) - start_at)


def run(database_url: str) -> list[Row]:
    # The sandbox listens on loopback, which provider base_urls may not name by default (SSRF guard).
    os.environ["ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS"] = "true"
    os.environ["ARCHANGEL_PLAIN_HTTP_HOSTS"] = "127.0.0.1"
    port = free_port()
    sandbox = _sandbox(port)
    base = f"http://127.0.0.1:{port}"
    rows: list[Row] = []
    try:
        for workers in (1, 4):
            rate, missing = drain_rate(database_url, base, workers)
            raw = raw_rate(base, workers, THREADS, min(EVENTS, 3000))
            state = _control(base, "state?items=0")
            over = int(state.get("over_limit_total", 0))
            target = ">= 500 deliveries/s, 0 over limit" if workers == 4 else ""
            rows.append(
                Row(
                    "outbox_drain", f"delivered/s, {workers} worker process(es) x {THREADS} threads, 20 ms latency",
                    rate, "events/s",
                    baseline=f"bare loop, same requests, {workers} process(es) x {THREADS} threads: {raw:,.0f} req/s "
                    f"(drain = {rate / raw:.0%} of raw)",
                    target=target,
                    ok=(rate >= 500 and over == 0 and missing == 0) if workers == 4 else (over == 0 and missing == 0),
                    extra={"over_limit": over, "undelivered": missing, "duplicates": state.get("duplicates")},
                )
            )  # fmt: skip
            print(f"   {workers} worker(s): {rate:,.0f}/s, raw {raw:,.0f}/s, over_limit {over}", flush=True)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
    return rows
