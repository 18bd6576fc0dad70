"""Fixtures of the fault-injection suite: the provider sandbox on a free port with an account of
each provider pointing at it, real Celery workers running the real gateway
(tests/reliability/worker_settings.py), a seeded random generator, a redis-server of the test's
own, and the checks every scenario ends with."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import time
import uuid
from collections import Counter

import pytest
import redis
from django.conf import settings

from outbox_app.models import OutboxEvent
from providers_app.sandbox import SandboxServer
from providers_app.services import provider_create
from tasks_app.management.commands.bootstrap_demo import DEMO_PROVIDERS
from tasks_app.models import Task
from tests.processes import free_port
from tests.workers import Workers

Status = OutboxEvent.Status


@pytest.fixture
def rng():
    """The seeded generator every random choice of a scenario comes from. The seed is printed
    (shown with a failure); RELIABILITY_SEED=<seed> replays the same choices."""
    seed = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(1, 2**32))
    print(f"reliability seed: {seed} (replay with RELIABILITY_SEED={seed})")
    return random.Random(seed)


@pytest.fixture
def sandbox(settings, rng):
    """The provider sandbox, its rate limits off (a scenario that tests them turns them on)."""
    run = uuid.uuid4().hex[:8]
    server = SandboxServer(
        seed=rng.randrange(2**32),
        rate_limits=False,
        credentials={
            "clickup_tokens": [f"pk_rel_{run}"],
            "trello_tokens": [f"rel-trello-token-{run}"],
            "todoist_tokens": [f"rel-todoist-{run}"],
        },
    ).start()
    server.run = run
    yield server
    server.stop()


@pytest.fixture
def accounts(sandbox):
    """One account per provider at the sandbox (the demo's configuration, this run's
    credentials, budgets far above the traffic unless a scenario lowers them)."""
    run = sandbox.run
    own = {
        "clickup": {"api_token": f"pk_rel_{run}", "rate_limit_per_minute": 100_000},
        "trello": {"api_token": f"rel-trello-token-{run}", "rate_limit_per_10s": 10_000},
        "todoist": {"api_token": f"rel-todoist-{run}", "rate_limit_per_15min": 100_000},
    }
    out = {}
    for name, kind, config in DEMO_PROVIDERS:
        base_url = sandbox.base_url(kind)
        out[kind] = provider_create(name=f"rel {name}", type=kind, config={**config, **own[kind], "base_url": base_url})
    return out


@pytest.fixture
def workers(request):
    """Builds pools of real workers on the real gateway; every pool is stopped at the end."""
    started: list[Workers] = []

    def make(*, redis_url: str | None = None, **env: str) -> Workers:
        pool = Workers(
            uuid.uuid4().hex[:10], settings_module="tests.reliability.worker_settings", redis_url=redis_url, **env
        )
        started.append(pool)
        return pool

    yield make
    for pool in started:
        pool.stop()
        if pool.redis_url == settings.REDIS_URL:
            redis.Redis.from_url(pool.redis_url).delete(pool.queue)


class RedisServer:
    """A redis-server of the test's own on a free port (never the shared one), to stop and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the server dies with everything it held (no persistence is configured)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)


@pytest.fixture
def own_redis():
    if shutil.which("redis-server") is None:
        reason = "needs redis-server on the PATH to start a Redis of its own (Debian: apt-get install redis-server)"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    server = RedisServer()
    server.start()
    yield server
    server.kill()


# --- driving and checking -------------------------------------------------------------------------


def statuses() -> Counter:
    return Counter(OutboxEvent.objects.values_list("status", flat=True))


def drive(pool: Workers, done, *, timeout: float, every: float = 0.3, tick=None) -> float:
    """Queue drains (as beat and wake-ups would) until ``done()``; ``tick()`` runs each round.
    Returns the seconds it took; fails with the outbox's status counts on timeout."""
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not settled after {timeout} s: {dict(statuses())}")
        # A broker that is down loses a wake-up, as in production: the next round sends another.
        with contextlib.suppress(Exception):
            pool.drain(2)
        if tick is not None:
            tick()
        time.sleep(every)
    return time.monotonic() - started


def all_delivered() -> bool:
    return not OutboxEvent.objects.exclude(status=Status.DELIVERED).exists()


def created_at_sandbox(sandbox) -> dict[str, str]:
    """``"<provider>:<idempotency key>"`` → the id of the object the sandbox made for it."""
    with sandbox.sandbox.lock:
        effects = list(sandbox.sandbox.effects)
    return {f"{e['provider']}:{e['marker']}": e["id"] for e in effects if e["op"] == "create" and e.get("marker")}


def assert_each_create_made_once(sandbox, *, delivered_only: bool = True) -> dict:
    """One object at the provider per delivered create event (counted by the reference marker
    the adapters write into every task), and the task holds that object's id."""
    state = sandbox.sandbox.state(include_items=False)
    assert state["duplicates"] == {"by_marker": {}, "by_request_id": {}}, state["duplicates"]
    made = created_at_sandbox(sandbox)
    creates = OutboxEvent.objects.filter(operation_type=OutboxEvent.Operation.CREATE).select_related("provider")
    for event in creates:
        key = f"{event.provider.type}:{event.idempotency_key}"
        if event.status == Status.DELIVERED or not delivered_only:
            assert state["creates_by_marker"].get(key) == 1, (key, event.status, event.error_message)
            task = Task.objects.get(id=event.aggregate_id)
            assert task.external_id == made[key], (key, task.external_id, made[key])
        else:
            assert state["creates_by_marker"].get(key, 0) <= 1, key
    return state
