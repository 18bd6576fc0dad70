"""Many drains at once on PostgreSQL (threads, each with its own connection): no event is
sent twice, and order per task holds (docs/reliability.md P4, P5, P9)."""

import pytest

from outbox_app.models import OutboxEvent
from tasks_app.services import task_bulk_create, task_update
from tests.factories import make_provider
from tests.outbox.fakes import drain_concurrently, versions_by_task

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_eight_concurrent_drains_never_send_an_event_twice_and_keep_each_tasks_order(gateway, no_coalescing):
    provider = make_provider("clickup")
    results = task_bulk_create(items=[{"title": f"Concurrent {i}", "provider": str(provider.id)} for i in range(200)])
    tasks = [r.task for r in results]
    for task in tasks[:50]:  # a second event (update) for a quarter of them
        task_update(task_id=task.id, data={"title": f"{task.title} v2"}, partial=True)
    gateway.latency = 0.002

    assert drain_concurrently(threads=8, rounds=20) == []
    keys = gateway.keys_delivered()
    assert len(keys) == 250
    assert len(set(keys)) == 250  # each event sent exactly once
    versions = versions_by_task(gateway)
    assert all(v == sorted(v) for v in versions.values())  # each task's changes in order
    assert OutboxEvent.objects.exclude(status=OutboxEvent.Status.DELIVERED).count() == 0
