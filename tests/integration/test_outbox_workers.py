"""The outbox drained by real Celery workers (separate processes, prefork pools) over real
PostgreSQL and Redis: exactly one effect per event, order per task, crashed workers' events
reclaimed without duplicates (docs/reliability.md P2, P3, P4, P5, P9).

The workers' provider door is tests/integration/fake_provider.py (state in Redis, so effects
are counted across processes); the end-to-end tests with the real adapters and the sandbox
live beside this file.
"""

import time
import uuid
from collections import Counter

import pytest
import redis
from django.conf import settings

from outbox_app.models import OutboxEvent
from tasks_app.services import task_archive, task_bulk_create, task_update
from tests.factories import make_provider
from tests.markers import real_services
from tests.workers import Workers, wait_until

pytestmark = real_services()

Status = OutboxEvent.Status


@pytest.fixture
def fake():
    r = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    prefix = uuid.uuid4().hex[:10]
    yield prefix, r
    keys = list(r.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        r.delete(*keys)
    r.delete(f"outbox-it-{prefix}")


@pytest.fixture
def workers(fake):
    started: list[Workers] = []

    def make(**env):
        w = Workers(fake[0], **env)
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


def undelivered() -> int:
    return OutboxEvent.objects.exclude(status=Status.DELIVERED).count()


def test_a_thousand_events_drained_by_three_workers_are_each_delivered_exactly_once_in_order(fake, workers):
    prefix, r = fake
    provider = make_provider("clickup")
    results = task_bulk_create(items=[{"title": f"Exactly once {i}", "provider": str(provider.id)} for i in range(900)])
    tasks = [res.task for res in results]
    for task in tasks[:50]:  # create → update → archive for some: order per task under concurrency
        task_update(task_id=task.id, data={"title": f"{task.title} renamed"}, partial=True)
        task_archive(task_id=task.id)
    assert OutboxEvent.objects.count() == 1000
    r.hset(f"{prefix}:faults", "latency_ms", "2")

    # Every event on its own request, so each task's three arrive as three effects in order
    # (coalescing would fold the update into the create; tests/outbox/test_coalescing.py).
    pool = workers(OUTBOX_COALESCING="false")
    pool.start(3, concurrency=2)
    # Many overlapping drains (as two beats and a burst of wake-ups would send).
    started = time.monotonic()
    while undelivered() and time.monotonic() - started < 60:
        pool.drain(6)
        time.sleep(1)

    assert undelivered() == 0
    creates = r.hgetall(f"{prefix}:creates")
    effects = r.hgetall(f"{prefix}:effects")
    assert len(creates) == 900 and set(creates.values()) == {"1"}
    assert len(effects) == 100 and set(effects.values()) == {"1"}
    for task in tasks[:50]:
        assert r.lrange(f"{prefix}:seq:{task.id}", 0, -1) == ["1", "2", "3"]
    # Every task knows its remote id, each a different one.
    from tasks_app.models import Task

    ids = list(Task.objects.values_list("external_id", flat=True))
    assert None not in ids and len(set(ids)) == 900


def test_killing_workers_mid_delivery_loses_nothing_and_duplicates_nothing(fake, workers):
    prefix, r = fake
    provider = make_provider("trello")
    results = task_bulk_create(items=[{"title": f"Crash {i}", "provider": str(provider.id)} for i in range(40)])
    assert len(results) == 40
    # The provider makes the object, then never answers: the worker dies between the
    # provider's effect and the commit of the result.
    r.hset(f"{prefix}:faults", "hang_after_effect", "1")
    lease = {"OUTBOX_LEASE_SECONDS": "10", "CELERY_TASK_TIME_LIMIT": "8", "OUTBOX_DRAIN_MAX_SECONDS": "2"}
    doomed = workers(**lease)
    doomed.start(1, concurrency=2)
    doomed.drain(2)
    wait_until(lambda: int(r.get(f"{prefix}:hanging") or 0) >= 2, 30, message="deliveries in flight")
    in_flight = OutboxEvent.objects.filter(status=Status.PROCESSING).count()
    assert in_flight > 0
    doomed.kill()

    r.hdel(f"{prefix}:faults", "hang_after_effect")
    survivor = workers(**lease)
    survivor.start(1, concurrency=2)
    # The lost events come back when their lease expires (10 s here), not after an hour.
    started = time.monotonic()
    while undelivered() and time.monotonic() - started < 45:
        survivor.drain(2)
        time.sleep(1)

    assert undelivered() == 0
    creates = Counter({k: int(v) for k, v in r.hgetall(f"{prefix}:creates").items()})
    assert len(creates) == 40
    assert max(creates.values()) == 1  # one remote object per idempotency key
    adopted = r.hgetall(f"{prefix}:adopted")
    assert len(adopted) >= 1  # the creates whose answer was lost were adopted, not repeated
    assert OutboxEvent.objects.filter(outcome_unknown=True).count() == 0
    assert OutboxEvent.objects.filter(attempts__outcome="delivered").distinct().count() == 40
