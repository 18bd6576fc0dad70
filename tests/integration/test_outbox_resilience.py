"""Real Celery workers delivering through the real gateway and adapters to the provider sandbox
(embedded on a free port), over real PostgreSQL and Redis, under the providers' rate limits
(docs/reliability.md P6, P7):

- a 429 storm ends with everything delivered and no event dead or counted because of a 429,
  and the first 429s close the token's budget for every worker until the hinted reset;
- four worker processes share one Trello token's budget and, counted at the sandbox, never
  send more than its limit in any window.

Redis restarted under running workers is tests/reliability/test_redis_restart.py.
"""

import time
import uuid

import pytest
from django.db.models import Count

from outbox_app.models import DeliveryAttempt, OutboxEvent
from providers_app.models import Provider
from providers_app.sandbox import SandboxServer
from providers_app.services import provider_create
from tasks_app.services import task_bulk_create
from tests.markers import real_services
from tests.workers import Workers

pytestmark = real_services()

Status = OutboxEvent.Status


@pytest.fixture
def workers():
    """Workers with the real gateway (archangel.settings), stopped after the test."""
    started: list[Workers] = []

    def make(redis_url=None, **env):
        pool = Workers(uuid.uuid4().hex[:10], settings_module="archangel.settings", redis_url=redis_url,
                       OUTBOX_WAKEUP="false", **env)  # fmt: skip
        started.append(pool)
        return pool

    yield make
    for pool in started:
        pool.stop()


@pytest.fixture
def sandbox():
    servers: list[SandboxServer] = []

    def make(**options) -> SandboxServer:
        server = SandboxServer(**options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def clickup(server, **config) -> Provider:
    # A token of this test's own: its budget (and the storm's penalty on it) in the shared Redis
    # concerns no other test.
    token = f"pk_it_{uuid.uuid4().hex[:12]}"
    server.sandbox.credentials.add({"clickup_tokens": [token]})
    return provider_create(
        name=f"it-clickup-{uuid.uuid4().hex[:6]}",
        type="clickup",
        config={"api_token": token, "list_id": "901", "team_id": "9001", "base_url": server.base_url("clickup"),
                **config},
    )  # fmt: skip


def make_tasks(provider, n: int) -> None:
    task_bulk_create(items=[{"title": f"Resilience {i}", "provider": str(provider.id)} for i in range(n)])


def statuses() -> dict[str, int]:
    return dict(OutboxEvent.objects.values_list("status").annotate(n=Count("id")))


def undelivered() -> int:
    return OutboxEvent.objects.exclude(status=Status.DELIVERED).count()


def drain_until_delivered(pool: Workers, timeout: float, every: float = 0.5) -> None:
    """Keep waking the workers (as beat would) until every event is delivered."""
    deadline = time.monotonic() + timeout
    while undelivered() and time.monotonic() < deadline:
        pool.drain(2)
        time.sleep(every)
    assert undelivered() == 0, statuses()


def assert_each_created_once(server, n: int, provider_type: str) -> None:
    state = server.sandbox.state(include_items=False)
    assert state["creates"][provider_type] == n
    assert state["duplicates"] == {"by_marker": {}, "by_request_id": {}}


def test_a_429_storm_ends_with_everything_delivered_and_no_event_dead_or_counted(sandbox, workers):
    server = sandbox(limits={"clickup": {"per_token": 100_000}})
    provider = clickup(server, rate_limit_per_minute=100_000)  # the budget never binds: only the storm
    make_tasks(provider, 40)
    pool = workers(OUTBOX_DELIVERY_THREADS="4")
    pool.start(2, concurrency=2)
    pool.wait_ready()

    # Every request is answered 429 (with ClickUp's X-RateLimit-Reset) for the next 3 s.
    server.sandbox.set_faults({"clickup": {"storm_seconds": 3}})
    drain_until_delivered(pool, timeout=25)

    state = server.sandbox.state(include_items=False)
    assert state["storm_429"]["clickup"] >= 1  # the storm was met
    assert OutboxEvent.objects.filter(retry_count__gt=0).count() == 0  # no 429 counted as a failure
    assert DeliveryAttempt.objects.filter(outcome="dead").count() == 0
    assert DeliveryAttempt.objects.filter(outcome="deferred", status_code=429).count() == state["storm_429"]["clickup"]
    # The first 429 closed the token's budget for every worker until the hinted reset: the
    # storm was not hammered once per event (40) or more, only by the calls already under way.
    assert state["storm_429"]["clickup"] <= 2 * 2 * 4
    assert_each_created_once(server, 40, "clickup")
    assert state["over_limit_total"] == 0
    provider.refresh_from_db()
    assert provider.health_status == Provider.Health.ACTIVE  # a 429 does not trip the breaker


def test_four_worker_processes_sharing_one_token_never_exceed_its_limit_in_any_window(sandbox, workers):
    limit, period = 50, 10
    key, token = f"it-key-{uuid.uuid4().hex[:12]}", f"it-token-{uuid.uuid4().hex[:12]}"  # budgets of its own
    server = sandbox(limits={"trello": {"per_token": limit, "period": period}},
                     credentials={"trello_keys": [key], "trello_tokens": [token]})  # fmt: skip
    provider = provider_create(
        name=f"it-trello-{uuid.uuid4().hex[:6]}",
        type="trello",
        config={"api_key": key, "api_token": token, "board_id": "5a1111111111111111111111",
                "status_lists": {"pending": "5a2222222222222222222222", "completed": "5a4444444444444444444444"},
                "base_url": server.base_url("trello"), "rate_limit_per_10s": limit},
    )  # fmt: skip
    # More creates than one window allows: unless the four processes share the budget, the
    # first second sends them all (4 x 36) and the sandbox answers 429 past the 50th.
    make_tasks(provider, 60)
    pool = workers(OUTBOX_DELIVERY_THREADS="4", OUTBOX_BATCH_SIZE="10")
    pool.start(4, pool="solo")
    pool.wait_ready()

    drain_until_delivered(pool, timeout=28)

    state = server.sandbox.state(include_items=False)
    assert state["over_limit_total"] == 0
    assert not DeliveryAttempt.objects.filter(status_code=429).exists()
    assert_each_created_once(server, 60, "trello")
    # Counted at the sandbox: the most requests in any window of the limit's length.
    with server.sandbox.lock:
        stamps = sorted(e["at"] for e in server.sandbox.effects if e["provider"] == "trello")
    assert len(stamps) == 60
    most = max(sum(1 for t in stamps[i:] if t < start + period) for i, start in enumerate(stamps))
    assert most <= limit
    assert stamps[-1] - stamps[0] >= period  # the budget held the rest back for a window
    workers_seen = set(DeliveryAttempt.objects.values_list("worker", flat=True))
    assert len(workers_seen) >= 2  # several processes shared the work (and the budget)
