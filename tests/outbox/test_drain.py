"""The drain with a fake provider door: order per task, fencing, retries, dead letters, deferrals."""

import datetime as dt
import random

import pytest
from django.utils import timezone

from outbox_app import drain as drain_module
from outbox_app.backoff import backoff_ceiling, backoff_delay
from outbox_app.drain import claim, drain, reclaim_expired, record
from outbox_app.models import OutboxEvent
from providers_app.adapters.base import AuthError, RateLimited, TransientError
from tasks_app.models import Task
from tasks_app.services import task_archive, task_create, task_update
from tests.factories import make_provider

pytestmark = pytest.mark.django_db

Status = OutboxEvent.Status


def new_task(provider, title="Write the report", **data):
    task, _ = task_create(data={"title": title, "provider": str(provider.id) if provider else None, **data})
    return task


def events_of(task):
    return list(OutboxEvent.objects.filter(aggregate_id=task.id).order_by("aggregate_version"))


def make_due(*events):
    OutboxEvent.objects.filter(id__in=[e.id for e in events]).update(scheduled_at=timezone.now())


def test_it_delivers_a_create_and_stores_the_external_id_on_the_task(gateway):
    provider = make_provider("clickup")
    task = new_task(provider)

    counts = drain(threads=1)

    assert counts["delivered"] == 1
    [event] = events_of(task)
    assert event.status == Status.DELIVERED
    assert event.delivered_at is not None
    assert event.lease_token is None
    assert event.last_status_code == 200
    task.refresh_from_db()
    assert task.external_id == "ext-1"
    [attempt] = event.attempts.all()
    assert (attempt.outcome, attempt.status_code) == ("delivered", 200)
    assert gateway.calls[0]["key"] == event.idempotency_key
    from archangel.audit.models import AuditEntry

    entry = AuditEntry.objects.get(object_id=str(task.id), action="update")
    assert entry.changes == {"external_id": [None, "ext-1"]}


def test_an_update_enqueued_before_the_create_was_delivered_gets_the_current_external_id(gateway, no_coalescing):
    provider = make_provider("todoist")
    task = new_task(provider)
    task_update(task_id=task.id, data={"title": "Write the final report"}, partial=True)
    _, update = events_of(task)
    assert update.payload["external_id"] is None

    drain(threads=1)

    assert [c["operation"] for c in gateway.calls] == ["create", "update"]
    assert gateway.calls[1]["external_id"] == "ext-1"
    assert OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 2


def test_a_later_event_waits_while_an_earlier_one_of_its_task_waits_to_be_retried(gateway, no_coalescing):
    provider = make_provider("clickup")
    task = new_task(provider, title="First")
    other = new_task(provider, title="Second")
    task_update(task_id=task.id, data={"title": "First, renamed"}, partial=True)
    first_create = events_of(task)[0]
    gateway.script[first_create.idempotency_key] = [TransientError("boom", status_code=503)]

    counts = drain(threads=1, max_seconds=0)  # one batch: a near-zero jittered delay would retry at once

    # The first task's create failed; its update is not sent; the other task went ahead.
    assert counts == {**counts, "delivered": 1, "retried": 1}
    assert [(c["task_id"], c["operation"]) for c in gateway.calls] == [
        (str(task.id), "create"),
        (str(other.id), "create"),
    ]
    create, update = events_of(task)
    assert (create.status, update.status) == (Status.FAILED, Status.PENDING)

    make_due(create)
    drain(threads=1)
    assert [c["operation"] for c in gateway.calls if c["task_id"] == str(task.id)] == ["create", "create", "update"]
    assert all(e.status == Status.DELIVERED for e in events_of(task))


def test_a_dead_event_blocks_the_later_events_of_its_task_until_it_is_discarded(gateway, no_coalescing):
    from outbox_app.services import outbox_discard

    provider = make_provider("clickup")
    task = new_task(provider)
    task.external_id = "known"  # as if created some other way
    task.save()
    task_update(task_id=task.id, data={"title": "v2"}, partial=True)
    task_update(task_id=task.id, data={"title": "v3"}, partial=True)
    create, v2, v3 = events_of(task)
    OutboxEvent.objects.filter(id=create.id).update(status=Status.DELIVERED)
    gateway.script[v2.idempotency_key] = [AuthError("token revoked", status_code=401)]

    drain(threads=1)
    drain(threads=1)

    assert [c["version"] for c in gateway.calls] == [2]
    v2.refresh_from_db()
    v3.refresh_from_db()
    assert (v2.status, v3.status) == (Status.DEAD, Status.PENDING)

    outbox_discard(event_id=v2.id, reason="test: give up on v2")
    drain(threads=1)
    assert [c["version"] for c in gateway.calls] == [2, 3]
    v3.refresh_from_db()
    assert v3.status == Status.DELIVERED


def test_a_permanent_error_makes_the_event_dead_at_once_with_its_error(gateway):
    provider = make_provider("trello")
    task = new_task(provider)
    gateway.script["create"] = [AuthError("invalid token", status_code=401)]

    counts = drain(threads=1)

    assert counts["dead"] == 1
    [event] = events_of(task)
    assert event.status == Status.DEAD
    assert event.retry_count == 1
    assert event.error_message == "auth: invalid token"
    assert event.last_status_code == 401
    assert [a.outcome for a in event.attempts.all()] == ["dead"]
    task.refresh_from_db()
    assert task.external_id is None


def test_retries_back_off_with_jitter_under_the_cap_and_end_dead_after_max_attempts(gateway, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 4
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 2
    settings.OUTBOX_BACKOFF_CAP_SECONDS = 5
    provider = make_provider("clickup")
    task = new_task(provider)
    [event] = events_of(task)
    gateway.script["create"] = [TransientError(f"503 number {i}", status_code=503) for i in range(1, 5)]
    for attempt in range(1, 4):
        before = timezone.now()
        drain(threads=1, max_seconds=0)  # one batch: a near-zero jittered delay would retry at once
        after = timezone.now()
        event.refresh_from_db()
        assert event.status == Status.FAILED
        assert event.retry_count == attempt
        ceiling = dt.timedelta(seconds=backoff_ceiling(attempt, base=2, cap=5))
        assert before <= event.scheduled_at <= after + ceiling
        make_due(event)

    drain(threads=1)
    event.refresh_from_db()
    assert event.status == Status.DEAD
    assert event.retry_count == 4
    assert event.error_message == "Gave up after 4 attempts. Last error: transient: 503 number 4"
    assert [a.outcome for a in event.attempts.all()] == ["retry", "retry", "retry", "dead"]


def test_backoff_delays_stay_within_full_jitter_bounds_and_differ():
    rng = random.Random(7)
    assert [backoff_ceiling(n, base=2, cap=60) for n in (1, 2, 3, 4, 5, 6, 7)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff_ceiling(10_000, base=2, cap=600) == 600
    delays = [backoff_delay(5, base=2, cap=600, rng=rng) for _ in range(200)]
    assert all(0 <= d <= 32 for d in delays)
    assert len(set(delays)) == 200
    assert min(delays) < 8 and max(delays) > 24  # spread over the whole window


def test_a_429_is_rescheduled_by_its_hint_and_never_counts_toward_dead(gateway, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 2
    provider = make_provider("todoist")
    task = new_task(provider)
    [event] = events_of(task)
    gateway.script["create"] = [RateLimited("slow down", status_code=429, retry_after=7) for _ in range(5)]

    for _ in range(5):
        before = timezone.now()
        counts = drain(threads=1)
        after = timezone.now()
        assert counts["deferred"] == 1
        event.refresh_from_db()
        assert event.status == Status.PENDING
        assert event.retry_count == 0
        assert before + dt.timedelta(seconds=7) <= event.scheduled_at <= after + dt.timedelta(seconds=7)
        make_due(event)

    drain(threads=1)
    event.refresh_from_db()
    assert event.status == Status.DELIVERED
    assert [a.outcome for a in event.attempts.all()] == ["deferred"] * 5 + ["delivered"]
    assert {a.status_code for a in event.attempts.all()} == {429, 200}


def test_a_spent_budget_defers_the_event_without_an_attempt_or_a_request(gateway):
    provider = make_provider("clickup", name="busy")
    free = make_provider("todoist", name="free")
    waiting = new_task(provider, title="Waits")
    flowing = new_task(free, title="Flows")
    gateway.waits["busy"] = 12.5

    before = timezone.now()
    counts = drain(threads=1)
    after = timezone.now()

    assert (counts["deferred"], counts["delivered"]) == (1, 1)
    [event] = events_of(waiting)
    assert event.status == Status.PENDING
    assert event.retry_count == 0
    wait = dt.timedelta(seconds=12.5)
    assert before + wait <= event.scheduled_at <= after + wait
    assert event.attempts.count() == 0
    assert [c["task_id"] for c in gateway.calls] == [str(flowing.id)]


def test_a_stale_worker_cannot_overwrite_the_result_of_the_worker_that_reclaimed_its_event(gateway):
    provider = make_provider("clickup")
    task = new_task(provider)
    old_token, [event] = claim(limit=10)
    first_claimed = event.first_claimed_at
    assert first_claimed is not None
    # The first worker hangs past its lease; another drain reclaims and delivers the event.
    later = timezone.now() + dt.timedelta(seconds=10_000)
    assert reclaim_expired(now=later) == 1
    event.refresh_from_db()
    assert (event.status, event.outcome_unknown, event.retry_count) == (Status.FAILED, True, 1)
    make_due(event)
    drain(threads=1)
    event.refresh_from_db()
    assert event.status == Status.DELIVERED
    assert gateway.calls[0]["outcome_unknown_before"] is True  # a create adopts rather than duplicates
    # ... looking only at tasks changed since the event was FIRST claimed, which the second
    # claim kept (no attempt can have reached the provider before it).
    assert event.first_claimed_at == first_claimed
    assert gateway.calls[0]["first_claimed_at"] == first_claimed

    # The first worker wakes up with its (failed) result: zero rows change.
    late = drain_module.Result("retry", started_at=timezone.now(), error="transient: timeout")
    assert record(event, old_token, late) == "stale"
    event.refresh_from_db()
    assert event.status == Status.DELIVERED
    assert event.error_message == ""
    assert [a.outcome for a in event.attempts.order_by("created_at")] == ["delivered", "stale"]
    task.refresh_from_db()
    assert task.external_id == "ext-1"


def test_an_expired_lease_of_the_last_allowed_attempt_ends_dead(settings):
    settings.OUTBOX_MAX_ATTEMPTS = 1
    task = new_task(make_provider("clickup"))
    claim(limit=10)
    assert reclaim_expired(now=timezone.now() + dt.timedelta(days=1)) == 1
    [event] = events_of(task)
    assert event.status == Status.DEAD
    assert "lease expired" in event.error_message


def test_a_claim_takes_one_event_per_task_and_skips_events_already_in_flight():
    provider = make_provider("clickup")
    task = new_task(provider)
    task_update(task_id=task.id, data={"title": "again"}, partial=True)
    other = new_task(provider, title="Other")

    _, first = claim(limit=10)
    _, second = claim(limit=10)

    assert sorted((e.aggregate_id, e.aggregate_version) for e in first) == sorted([(task.id, 1), (other.id, 1)])
    assert second == []


def test_an_event_without_a_provider_is_discarded_and_does_not_block(gateway):
    task = new_task(None)
    counts = drain(threads=1)
    assert counts["discarded"] == 1
    [event] = events_of(task)
    assert event.status == Status.DISCARDED
    assert "never routed" in event.error_message
    assert gateway.calls == []


def test_an_update_of_a_task_that_has_no_external_id_is_dead_at_once(gateway):
    provider = make_provider("clickup")
    task = new_task(provider)
    task_archive(task_id=task.id)
    create, archive = events_of(task)
    OutboxEvent.objects.filter(id=create.id).update(status=Status.DISCARDED)

    drain(threads=1)

    archive.refresh_from_db()
    assert archive.status == Status.DEAD
    assert archive.error_message.startswith("No external id")
    assert gateway.calls == []


def test_a_disabled_providers_events_wait_without_counting(gateway):
    provider = make_provider("clickup")
    task = new_task(provider)
    provider.health_status = provider.Health.DISABLED
    provider.save()

    counts = drain(threads=1)

    assert counts["deferred"] == 1
    [event] = events_of(task)
    assert (event.status, event.retry_count) == (Status.PENDING, 0)
    assert event.scheduled_at > timezone.now()


def test_an_unexpected_exception_is_a_retry_with_an_unknown_outcome(gateway):
    task = new_task(make_provider("clickup"))
    gateway.script["create"] = [RuntimeError("adapter bug")]
    drain(threads=1)
    [event] = events_of(task)
    assert (event.status, event.outcome_unknown) == (Status.FAILED, True)
    assert event.error_message == "RuntimeError: adapter bug"


def test_the_delivery_threads_deliver_a_batch_of_different_tasks(gateway):
    provider = make_provider("clickup")
    tasks = [new_task(provider, title=f"Task number {i}") for i in range(30)]
    gateway.latency = 0.01

    counts = drain(threads=8, batch_size=10)

    assert counts["delivered"] == 30
    assert sorted(c["task_id"] for c in gateway.calls) == sorted(str(t.id) for t in tasks)
    assert Task.objects.filter(external_id__isnull=True).count() == 0
