"""The provider gateway: its cost per delivery, and proof that shared budgets hold.

Two measurements, each in 4 worker processes sharing one Redis, as Celery's prefork
children do, the first with 8 threads per process as the drain's delivery pool (no
provider is called: this is the part of a delivery that is ours):

- ``reserve()`` + ``record_success()`` per delivery (the hot path: a rate budget unit
  taken, the breaker consulted and told), against the baseline of the same processes
  doing two Redis PINGs (the two round trips the hot path needs);
- a Trello token limited to 50 requests per 10 s, hammered by the 4 processes for 12 s:
  the most grants seen in any 10-s window must stay within the limit (less our margin).
"""

import json
import os

from bench.common import Row, manage

PROCESSES = int(os.environ.get("BENCH_GATEWAY_PROCESSES", "4"))
THREADS = int(os.environ.get("BENCH_GATEWAY_THREADS", "8"))
ITERATIONS = int(os.environ.get("BENCH_GATEWAY_ITERATIONS", "1600"))
HAMMER_SECONDS = 12.0
TRELLO_LIMIT = 50

SCRIPT = r"""
import json, multiprocessing, threading, time, uuid
from django.db import connections
from providers_app import breakers, gateway, services
from providers_app.redis_client import get_redis

P, T, N, SECONDS, LIMIT = {processes}, {threads}, {iterations}, {seconds}, {limit}
fast = services.provider_create(name="bench-gw-" + uuid.uuid4().hex[:6], type="clickup",
    config={{"api_token": "pk_" + uuid.uuid4().hex, "list_id": "1", "rate_limit_per_minute": 100_000_000}})
tight = services.provider_create(name="bench-rl-" + uuid.uuid4().hex[:6], type="trello",
    config={{"api_key": uuid.uuid4().hex, "api_token": uuid.uuid4().hex, "board_id": "b",
            "status_lists": {{"pending": "l"}}, "rate_limit_per_10s": LIMIT}})
connections.close_all()

def threaded(step, warm):
    # The drain delivers a batch from a thread pool: T threads per process, N steps in all.
    def run(queue):
        warm()
        threads = [threading.Thread(target=lambda: [step() for _ in range(N // T)]) for _ in range(T)]
        started = time.perf_counter()
        for thread in threads: thread.start()
        for thread in threads: thread.join()
        queue.put(time.perf_counter() - started)
    return run

def hot_step():
    assert gateway.reserve(fast) == 0.0
    breakers.record_success(fast)

def ping_step():
    client = get_redis(); client.ping(); client.ping()

hot = threaded(hot_step, hot_step)
ping = threaded(ping_step, ping_step)

def hammer(queue):
    grants, end = [], time.time() + SECONDS
    i = 0
    while time.time() < end:
        i += 1
        if gateway.reserve(tight, urgent=i % 5 == 0) == 0.0:
            grants.append(time.time())
        else:
            time.sleep(0.005)
    queue.put(grants)

def in_processes(target):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(queue,)) for _ in range(P)]
    for proc in procs: proc.start()
    results = [queue.get(timeout=300) for _ in procs]
    for proc in procs: proc.join()
    return results

hot_s = in_processes(hot)
ping_s = in_processes(ping)
grants = sorted(t for chunk in in_processes(hammer) for t in chunk)
window_max = max((sum(1 for u in grants if t <= u < t + 10.0) for t in grants), default=0)
print(json.dumps({{"hot_rate": P * N / max(hot_s), "ping_rate": P * N / max(ping_s),
                  "grants": len(grants), "window_max": window_max}}))
"""


def run(database_url: str) -> list[Row]:
    code = SCRIPT.format(
        processes=PROCESSES, threads=THREADS, iterations=ITERATIONS, seconds=HAMMER_SECONDS, limit=TRELLO_LIMIT
    )
    out = manage("shell", "-c", code, database_url=database_url, capture=True)
    data = json.loads(out.strip().splitlines()[-1])
    return [
        Row(
            "gateway",
            f"reserve + record_success, {PROCESSES} processes x {THREADS} threads",
            data["hot_rate"],
            "deliveries/s",
            baseline=f"{data['ping_rate']:,.0f}/s of 2 Redis PINGs in the same processes",
            target="≥ 500/s (the drain's target, so the gateway is never its bottleneck)",
            ok=data["hot_rate"] >= 500,
        ),
        Row(
            "gateway",
            f"most grants in any 10 s, Trello token limit {TRELLO_LIMIT}/10 s, {PROCESSES} processes, 12 s",
            data["window_max"],
            "requests",
            baseline=f"{data['grants']} grants in total",
            target=f"≤ {TRELLO_LIMIT} (never over the provider's limit)",
            ok=data["window_max"] <= TRELLO_LIMIT,
        ),
    ]
