"""Coalescing (outbox_app/batching.py): updates queued behind an undelivered create or update of
the same task ride along with it; each folded event is delivered with ``carried_by``."""

import pytest
from django.utils import timezone

from outbox_app.drain import drain
from outbox_app.models import OutboxEvent
from providers_app.adapters.base import TransientError
from tasks_app.services import task_bulk_create, task_create, task_update
from tests.factories import make_provider
from tests.outbox.fakes import drain_concurrently, versions_by_task

pytestmark = pytest.mark.django_db

Status = OutboxEvent.Status


def new_task(provider, title="Write the report"):
    task, _ = task_create(data={"title": title, "provider": str(provider.id)})
    return task


def rename(task, title, **data):
    return task_update(task_id=task.id, data={"title": title, **data}, partial=True)


def events_of(task):
    return list(OutboxEvent.objects.filter(aggregate_id=task.id).order_by("aggregate_version"))


def test_a_create_and_the_updates_behind_it_go_as_one_create_with_the_final_state(gateway):
    task = new_task(make_provider("clickup"))
    rename(task, "Second title")
    rename(task, "Final title", priority=4)

    counts = drain(threads=1)

    assert [(c["operation"], c["version"]) for c in gateway.calls] == [("create", 3)]
    create, first, second = events_of(task)
    assert gateway.calls[0]["key"] == create.idempotency_key  # the create keeps its own key (marker)
    assert counts["delivered"] == 3
    assert [e.status for e in (create, first, second)] == [Status.DELIVERED] * 3
    assert (create.carried_by_id, first.carried_by_id, second.carried_by_id) == (None, create.id, create.id)
    assert first.lease_token is None and first.processed_at is not None and first.delivered_at is not None
    assert [a.outcome for a in create.attempts.all()] == ["delivered"]
    assert first.attempts.count() == 0 and second.attempts.count() == 0  # no request of their own
    assert first.payload["title"] == "Second title"  # the stored payloads stay as written
    task.refresh_from_db()
    assert task.external_id == "ext-1"


def test_updates_queued_behind_an_undelivered_update_collapse_into_one(gateway):
    task = new_task(make_provider("clickup"))
    drain(threads=1)
    for i in range(4):
        rename(task, f"Title {i}")

    drain(threads=1)

    _, carrier, *followers = events_of(task)
    assert [(c["operation"], c["key"], c["version"]) for c in gateway.calls[1:]] == [
        ("update", carrier.idempotency_key, 5)
    ]
    assert gateway.calls[1]["external_id"] == "ext-1"
    assert [f.carried_by_id for f in followers] == [carrier.id] * 3
    assert {f.status for f in followers} == {Status.DELIVERED}


def test_it_never_folds_across_a_complete(gateway):
    task = new_task(make_provider("clickup"))
    rename(task, "Renamed", status="in_progress")
    task_update(task_id=task.id, data={"status": "completed"}, partial=True)
    rename(task, "Reopened", status="in_progress")
    rename(task, "Reopened again")

    for _ in range(3):
        drain(threads=1)

    assert [(c["operation"], c["version"]) for c in gateway.calls] == [("create", 2), ("complete", 3), ("update", 5)]
    create, update, complete, reopen, last = events_of(task)
    assert [e.carried_by_id for e in (create, update, complete, reopen, last)] == [
        None,
        create.id,
        None,
        None,
        reopen.id,
    ]
    assert OutboxEvent.objects.exclude(status=Status.DELIVERED).count() == 0


def test_when_the_carrier_fails_its_followers_wait_behind_it_and_ride_along_on_the_retry(gateway):
    task = new_task(make_provider("clickup"))
    rename(task, "Second")
    create, follower = events_of(task)
    gateway.script[create.idempotency_key] = [TransientError("HTTP 400 said no", status_code=400)]

    drain(threads=1)

    create.refresh_from_db()
    follower.refresh_from_db()
    assert (create.status, create.retry_count) == (Status.FAILED, 1)
    assert (follower.status, follower.carried_by_id, follower.lease_token) == (Status.PENDING, None, None)
    assert follower.retry_count == 0
    rename(task, "Third")
    OutboxEvent.objects.filter(status__in=[Status.PENDING, Status.FAILED]).update(scheduled_at=timezone.now())

    drain(threads=1)

    assert [(c["operation"], c["version"]) for c in gateway.calls] == [("create", 2), ("create", 3)]
    _, follower, third = events_of(task)
    assert (follower.carried_by_id, third.carried_by_id) == (create.id, create.id)


def test_a_create_whose_outcome_is_unknown_is_never_extended(gateway):
    task = new_task(make_provider("clickup"))
    rename(task, "Second")
    create, _ = events_of(task)
    OutboxEvent.objects.filter(id=create.id).update(outcome_unknown=True)

    drain(threads=1)

    # The create may adopt the task its lost attempt made: the update must still go on its own.
    assert [(c["operation"], c["version"]) for c in gateway.calls] == [("create", 1), ("update", 2)]
    assert not OutboxEvent.objects.filter(carried_by__isnull=False).exists()


def test_events_of_another_provider_are_not_folded(gateway):
    first, second = make_provider("clickup"), make_provider("trello")
    task = new_task(first)
    rename(task, "Same provider")
    OutboxEvent.objects.create(
        provider=second,
        aggregate_type="task",
        aggregate_id=task.id,
        aggregate_version=3,
        operation_type="update",
        payload={**events_of(task)[-1].payload, "version": 3},
        idempotency_key=f"task:{task.id}:v3:update",
    )

    drain(threads=1)

    assert [(c["provider"], c["operation"], c["version"]) for c in gateway.calls] == [
        (first.name, "create", 2),
        (second.name, "update", 3),
    ]


def test_coalescing_can_be_turned_off(gateway, settings):
    settings.OUTBOX_COALESCING = False
    task = new_task(make_provider("clickup"))
    rename(task, "Second")

    drain(threads=1)

    assert [c["operation"] for c in gateway.calls] == ["create", "update"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_drains_fold_each_update_once_and_deliver_every_tasks_final_state(gateway):
    provider = make_provider("clickup")
    tasks = [
        r.task
        for r in task_bulk_create(items=[{"title": f"Busy {i}", "provider": str(provider.id)} for i in range(120)])
    ]
    final = {}
    for task in tasks[:60]:
        for n in range(3):
            task = rename(task, f"{task.title.split(' v')[0]} v{n}")
        final[str(task.id)] = task.version
    gateway.latency = 0.002

    assert drain_concurrently(threads=6, rounds=15) == []
    keys = gateway.keys_delivered()
    assert len(keys) == len(set(keys))  # no event sent twice
    versions = versions_by_task(gateway)
    assert all(v == sorted(v) for v in versions.values())  # each task's changes in order
    # Every task's last request carried its final state, whatever was folded.
    assert {t: v[-1] for t, v in versions.items() if t in final} == final
    events = OutboxEvent.objects.all()
    assert events.count() == 120 + 180
    assert events.exclude(status=Status.DELIVERED).count() == 0
    carried = events.filter(carried_by__isnull=False)
    assert carried.count() > 0
    # Every event was either sent or carried by one that was, never both, never neither.
    assert carried.count() + len(keys) == 300
    assert not carried.filter(idempotency_key__in=keys).exists()
    assert all(c.carried_by.aggregate_id == c.aggregate_id for c in carried.select_related("carried_by"))
