"""A batch's results written together (outbox_app/drain.py, record_batch): every kind of result
in one set-based write, the fencing token per event, and the one-at-a-time fallback when an
aggregate refuses its external id; the drain's one-batch-deep pipeline keeps order per task."""

import datetime as dt

import pytest
from django.utils import timezone

from archangel.audit.models import AuditEntry
from outbox_app.drain import Result, claim, drain, reclaim_expired, record_batch
from outbox_app.models import DeliveryAttempt, OutboxEvent
from tasks_app.models import Task
from tasks_app.services import task_archive, task_bulk_create, task_update
from tests.factories import make_provider

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

Status = OutboxEvent.Status


def bulk(provider, n, title="Batch"):
    return [r.task for r in task_bulk_create(items=[{"title": f"{title} {i}", "provider": str(provider.id)}
                                                    for i in range(n)])]  # fmt: skip


def test_every_kind_of_result_of_a_batch_is_written_as_the_single_event_path_writes_it(settings):
    settings.OUTBOX_MAX_ATTEMPTS = 3
    provider = make_provider("clickup")
    tasks = bulk(provider, 6)
    token, events = claim(limit=10)
    by_task = {e.aggregate_id: e for e in events}
    events = [by_task[t.id] for t in tasks]
    OutboxEvent.objects.filter(id=events[3].id).update(retry_count=2)  # its last allowed attempt
    events[3].retry_count = 2
    now = timezone.now()
    results = [
        Result("delivered", started_at=now, duration_ms=21, status_code=200, external_id="remote-0"),
        Result("retry", started_at=now, duration_ms=5, status_code=503, error="503: down", outcome_unknown=True),
        Result("rate_limited", started_at=now, duration_ms=3, status_code=429, error="429: slow down", wait=30),
        Result("retry", started_at=now, duration_ms=4, status_code=500, error="500: still down"),
        Result("defer", wait=12, attempted=False),
        Result("dead", started_at=now, duration_ms=2, status_code=401, error="401: bad token"),
    ]

    statuses = record_batch(list(zip(events, results, strict=True)), token)

    assert statuses == [Status.DELIVERED, Status.FAILED, Status.PENDING, Status.DEAD, Status.PENDING, Status.DEAD]
    rows = {e.id: e for e in OutboxEvent.objects.all()}
    delivered, failed, limited, gave_up, deferred, dead = (rows[e.id] for e in events)
    assert delivered.delivered_at == delivered.processed_at is not None
    assert (delivered.last_status_code, delivered.lease_token) == (200, None)
    assert (failed.retry_count, failed.outcome_unknown, failed.error_message) == (1, True, "503: down")
    assert failed.scheduled_at > now
    assert (limited.retry_count, limited.error_message) == (0, "429: slow down")
    assert limited.scheduled_at >= now + dt.timedelta(seconds=29)
    assert gave_up.retry_count == 3 and gave_up.error_message.startswith("Gave up after 3 attempts")
    assert (deferred.retry_count, deferred.processed_at, deferred.last_status_code) == (0, None, None)
    assert deferred.scheduled_at >= now + dt.timedelta(seconds=11)
    assert (dead.error_message, dead.retry_count) == ("401: bad token", 1)
    assert all(r.locked_until is None and r.lease_token is None for r in rows.values())
    # One attempt per request sent (not for the deferral decided before any request).
    outcomes = {a.event_id: (a.outcome, a.status_code, a.duration_ms) for a in DeliveryAttempt.objects.all()}
    assert outcomes == {
        delivered.id: ("delivered", 200, 21),
        failed.id: ("retry", 503, 5),
        limited.id: ("deferred", 429, 3),
        gave_up.id: ("dead", 500, 4),
        dead.id: ("dead", 401, 2),
    }
    # The create's external id is on its task, audited; the others have none.
    assert dict(Task.objects.values_list("id", "external_id")) == {t.id: ("remote-0" if t == tasks[0] else None)
                                                                  for t in tasks}  # fmt: skip
    entry = AuditEntry.objects.get(object_id=str(tasks[0].id), action="update")
    assert entry.changes == {"external_id": [None, "remote-0"]}


def test_a_batch_drops_only_the_results_whose_lease_was_lost():
    provider = make_provider("clickup")
    bulk(provider, 3)
    token, events = claim(limit=10)
    # One event's lease expires and another worker reclaims (and will deliver) it.
    lost = events[1]
    OutboxEvent.objects.filter(id=lost.id).update(locked_until=timezone.now() - dt.timedelta(seconds=1))
    assert reclaim_expired() == 1
    results = [Result("delivered", started_at=timezone.now(), status_code=200, external_id=f"r{i}") for i in range(3)]

    statuses = record_batch(list(zip(events, results, strict=True)), token)

    assert statuses == [Status.DELIVERED, "stale", Status.DELIVERED]
    lost.refresh_from_db()
    assert (lost.status, lost.outcome_unknown) == (Status.FAILED, True)
    assert list(lost.attempts.values_list("outcome", flat=True)) == ["stale"]
    assert Task.objects.get(id=lost.aggregate_id).external_id is None  # the stale create stored nothing
    assert Task.objects.filter(external_id__in=["r0", "r2"]).count() == 2


def test_an_aggregate_refusing_its_external_id_holds_back_only_its_own_event():
    provider = make_provider("clickup")
    tasks = bulk(provider, 3)
    Task.objects.filter(id=tasks[2].id).update(external_id="taken")  # another task already has it
    token, events = claim(limit=10)
    by_task = {e.aggregate_id: e for e in events}
    events = [by_task[t.id] for t in tasks[:2]]
    results = [
        Result("delivered", started_at=timezone.now(), status_code=200, external_id="fine"),
        Result("delivered", started_at=timezone.now(), status_code=200, external_id="taken"),
    ]

    statuses = record_batch(list(zip(events, results, strict=True)), token)

    assert statuses == [Status.DELIVERED, "unrecorded"]
    good, refused = (OutboxEvent.objects.get(id=e.id) for e in events)
    assert good.status == Status.DELIVERED
    assert Task.objects.get(id=tasks[0].id).external_id == "fine"
    # Still leased: it is reclaimed when the lease expires, with outcome_unknown (then adopted).
    assert (refused.status, refused.lease_token) == (Status.PROCESSING, token)
    assert not refused.attempts.exists()


def test_the_pipelined_drain_keeps_each_tasks_events_in_order_across_batches(gateway, no_coalescing):
    provider = make_provider("todoist")
    tasks = bulk(provider, 12)
    for task in tasks:
        task_update(task_id=task.id, data={"title": f"{task.title} renamed"}, partial=True)
        task_archive(task_id=task.id)
    gateway.latency = 0.005

    counts = drain(threads=4, batch_size=5)

    assert counts["delivered"] == 36
    for task in tasks:
        calls = [c for c in gateway.calls if c["task_id"] == str(task.id)]
        assert [(c["operation"], c["version"]) for c in calls] == [("create", 1), ("update", 2), ("archive", 3)]
        assert calls[1]["external_id"] == calls[2]["external_id"] is not None  # read after the create stored it
    assert OutboxEvent.objects.exclude(status=Status.DELIVERED).count() == 0


def _lose_a_deadlock_first(monkeypatch, name):
    """The first call of ``drain.<name>`` fails as PostgreSQL fails the loser of a deadlock."""
    import psycopg
    from django.db import OperationalError

    from outbox_app import drain as drain_module

    real, calls = getattr(drain_module, name), []

    def flaky(*args):
        calls.append(args)
        if len(calls) == 1:
            raise OperationalError("deadlock detected") from psycopg.errors.DeadlockDetected("deadlock detected")
        return real(*args)

    monkeypatch.setattr(drain_module, name, flaky)
    return calls


def _delivered_creates(n):
    tasks = bulk(make_provider("clickup"), n)
    token, events = claim(limit=10)
    results = [Result("delivered", started_at=timezone.now(), status_code=200, external_id=f"d{i}") for i in range(n)]
    return tasks, token, list(zip(events, results, strict=True))


def test_a_batch_write_that_loses_a_deadlock_is_written_again_not_left_to_its_lease(monkeypatch):
    # The 10-minute sustained run: a batch's write lost a deadlock against another writer of the
    # same tasks, its events waited for their lease, and creates reclaimed minutes later were made
    # twice (the marker lookup missed them among the thousands created since).
    tasks, token, pairs = _delivered_creates(3)
    calls = _lose_a_deadlock_first(monkeypatch, "_record_set")

    assert record_batch(pairs, token) == [Status.DELIVERED] * 3
    assert len(calls) == 2
    assert set(Task.objects.filter(id__in=[t.id for t in tasks]).values_list("external_id", flat=True)) == {
        "d0", "d1", "d2"
    }  # fmt: skip
    assert DeliveryAttempt.objects.filter(outcome="delivered").count() == 3


def test_an_event_write_that_loses_a_deadlock_in_the_one_at_a_time_path_is_written_again(monkeypatch):
    from django.db import IntegrityError

    from outbox_app import drain as drain_module

    _tasks, token, pairs = _delivered_creates(2)

    def refused(*args):
        raise IntegrityError("refused")  # not a lock conflict: straight to one at a time

    monkeypatch.setattr(drain_module, "_record_set", refused)
    calls = _lose_a_deadlock_first(monkeypatch, "_record_one")

    assert record_batch(pairs, token) == [Status.DELIVERED, Status.DELIVERED]
    assert len(calls) == 3  # the first event twice, the second once
    assert not OutboxEvent.objects.filter(status=Status.PROCESSING).exists()
