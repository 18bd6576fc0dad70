"""Provider batches (outbox_app/batching.py) through a fake gateway that offers them: one
request per batch, one result per event, and every per-event guarantee of the drain kept."""

import pytest

from outbox_app.drain import drain
from outbox_app.models import OutboxEvent
from providers_app.adapters.base import AuthError, PermanentError, RateLimited, TransientError, ValidationFailed
from tasks_app.services import task_bulk_create, task_update
from tests.factories import make_provider

pytestmark = pytest.mark.django_db

Status = OutboxEvent.Status


@pytest.fixture
def batching_gateway(gateway):
    gateway.batch_sizes = {"todoist": 100}
    return gateway


def tasks_for(provider, n, prefix="Task"):
    return [
        r.task
        for r in task_bulk_create(items=[{"title": f"{prefix} {i}", "provider": str(provider.id)} for i in range(n)])
    ]


def requests_sent(gateway):
    batched = sum(len(b) for b in gateway.batches)
    return len(gateway.batches) + len(gateway.calls) - batched


def creates():
    return list(OutboxEvent.objects.filter(operation_type="create").order_by("created_at"))


def test_due_todoist_events_of_one_account_go_in_one_request_and_each_is_recorded(batching_gateway):
    gateway = batching_gateway
    provider = make_provider("todoist")
    tasks = tasks_for(provider, 5)

    counts = drain(threads=1)

    assert counts["delivered"] == 5
    assert len(gateway.batches) == 1 and len(gateway.batches[0]) == 5
    assert gateway.reserves == [provider.name]  # one unit of budget for the one request
    assert requests_sent(gateway) == 1
    for event in creates():
        assert event.status == Status.DELIVERED
        assert [(a.outcome, a.status_code) for a in event.attempts.all()] == [("delivered", 200)]
    assert sorted(t.external_id for t in type(tasks[0]).objects.all()) == sorted(f"ext-{i}" for i in range(1, 6))


def test_each_command_gets_its_own_outcome_in_a_mixed_answer(batching_gateway):
    gateway = batching_gateway
    provider = make_provider("todoist")
    tasks_for(provider, 5)
    ok, retry, dead, limited, ok2 = creates()
    gateway.script[retry.idempotency_key] = [TransientError("todoist sync item_add failed (503)", status_code=503)]
    gateway.script[dead.idempotency_key] = [ValidationFailed("todoist sync item_add failed (400)", status_code=400)]
    gateway.script[limited.idempotency_key] = [RateLimited("429", status_code=429, retry_after=30)]

    drain(threads=1, max_seconds=0)

    for event in (ok, retry, dead, limited, ok2):
        event.refresh_from_db()
    assert (ok.status, ok2.status) == (Status.DELIVERED, Status.DELIVERED)
    assert (retry.status, retry.retry_count, retry.last_status_code) == (Status.FAILED, 1, 503)
    assert (dead.status, dead.retry_count) == (Status.DEAD, 1)
    assert "400" in dead.error_message
    assert (limited.status, limited.retry_count) == (Status.PENDING, 0)  # a 429 is never counted
    assert [a.outcome for a in retry.attempts.all()] == ["retry"]
    assert [a.outcome for a in dead.attempts.all()] == ["dead"]
    assert [a.outcome for a in limited.attempts.all()] == ["deferred"]
    assert len(gateway.batches) == 1


def test_a_batch_never_exceeds_the_providers_cap(batching_gateway):
    gateway = batching_gateway
    gateway.batch_sizes = {"todoist": 3}
    tasks_for(make_provider("todoist"), 7)

    drain(threads=1)

    # 3 + 3 in batches; a lone seventh goes on its own.
    assert [len(b) for b in gateway.batches] == [3, 3]
    assert requests_sent(gateway) == 3
    assert OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 7


def test_two_events_of_one_task_never_share_a_batch_and_go_in_order(batching_gateway, no_coalescing):
    gateway = batching_gateway
    tasks = tasks_for(make_provider("todoist"), 3)
    for task in tasks:
        task_update(task_id=task.id, data={"title": f"{task.title} v2"}, partial=True)

    drain(threads=1)

    assert [sorted(k.rsplit(":", 2)[-2:][1] for k in batch) for batch in gateway.batches] == [
        ["create"] * 3,
        ["update"] * 3,
    ]
    first_batch_tasks = {k.split(":")[1] for k in gateway.batches[0]}
    assert len(first_batch_tasks) == 3
    assert all(c["external_id"] for c in gateway.calls if c["operation"] == "update")


def test_a_rate_limited_batch_defers_every_event_without_counting_an_attempt_failure(batching_gateway):
    gateway = batching_gateway
    tasks_for(make_provider("todoist"), 4)
    gateway.script["batch"] = [RateLimited("429", status_code=429, retry_after=20)]

    drain(threads=1, max_seconds=0)

    events = creates()
    assert {(e.status, e.retry_count) for e in events} == {(Status.PENDING, 0)}
    assert [a.outcome for e in events for a in e.attempts.all()] == ["deferred"] * 4


def test_a_batch_that_fails_as_a_whole_retries_each_event_with_its_outcome_unknown(batching_gateway):
    gateway = batching_gateway
    tasks_for(make_provider("todoist"), 3)
    gateway.script["batch"] = [TransientError("read timeout", outcome_unknown=True)]

    drain(threads=1, max_seconds=0)

    events = creates()
    assert {(e.status, e.retry_count, e.outcome_unknown) for e in events} == {(Status.FAILED, 1, True)}


def test_an_auth_failure_of_the_batch_kills_its_events(batching_gateway):
    gateway = batching_gateway
    tasks_for(make_provider("todoist"), 2)
    gateway.script["batch"] = [AuthError("401", status_code=401)]

    drain(threads=1, max_seconds=0)

    assert {e.status for e in creates()} == {Status.DEAD}


def test_a_batch_refused_as_a_whole_is_sent_one_by_one(batching_gateway):
    gateway = batching_gateway
    tasks_for(make_provider("todoist"), 3)
    gateway.script["batch"] = [PermanentError("413 body too large", status_code=413)]

    drain(threads=1)

    assert len(gateway.batches) == 1  # refused: none of its items reached the provider
    assert len(gateway.calls) == 3  # then each on its own
    assert {e.status for e in creates()} == {Status.DELIVERED}


def test_no_budget_defers_the_whole_batch_before_any_request(batching_gateway):
    gateway = batching_gateway
    provider = make_provider("todoist")
    tasks_for(provider, 3)
    gateway.waits[provider.name] = 12.0

    drain(threads=1)

    assert gateway.batches == [] and gateway.calls == []
    assert {(e.status, e.retry_count) for e in creates()} == {(Status.PENDING, 0)}
    assert not any(e.attempts.exists() for e in creates())


def test_creates_whose_outcome_is_unknown_take_the_per_event_path_that_looks_first(batching_gateway):
    gateway = batching_gateway
    tasks_for(make_provider("todoist"), 3)
    unknown = creates()[0]
    OutboxEvent.objects.filter(id=unknown.id).update(outcome_unknown=True)

    drain(threads=1)

    assert [len(b) for b in gateway.batches] == [2]
    [single] = [c for c in gateway.calls if c["key"] == unknown.idempotency_key]
    assert single["outcome_unknown_before"] is True


def test_other_providers_and_batching_turned_off_go_one_by_one(batching_gateway, settings):
    gateway = batching_gateway
    tasks_for(make_provider("clickup"), 3)
    drain(threads=1)
    assert gateway.batches == [] and len(gateway.calls) == 3

    settings.OUTBOX_BATCHING = False
    tasks_for(make_provider("todoist"), 3, prefix="Off")
    drain(threads=1)
    assert gateway.batches == [] and len(gateway.calls) == 6
