"""Todoist events through the real gateway and adapter to the sandbox's Sync API: N due events
go in ceil(N/100) requests and each lands exactly once, also when a sync request's answer is
lost after it took effect (docs/provider-apis.md §3.2, §3.8)."""

import math

import pytest
from django.utils import timezone

from outbox_app.drain import drain
from outbox_app.models import OutboxEvent
from providers_app.services import provider_create
from tasks_app.models import Task
from tasks_app.services import task_bulk_create, task_update
from tests.markers import real_services

pytestmark = real_services()

Status = OutboxEvent.Status


@pytest.fixture
def todoist(sandbox):
    return provider_create(
        name="sandbox-todoist",
        type="todoist",
        config={"api_token": "demo-todoist-token", "project_id": "6Demo", "base_url": sandbox.base_url("todoist")},
    )


def test_n_todoist_events_go_in_ceil_n_over_100_requests_and_each_lands_once(sandbox, todoist):
    n = 230
    results = task_bulk_create(items=[{"title": f"Batch {i}", "provider": str(todoist.id)} for i in range(n)])

    drain(batch_size=n, threads=2)

    assert OutboxEvent.objects.exclude(status=Status.DELIVERED).count() == 0
    state = sandbox.sandbox.state()
    assert state["sync_requests"]["todoist"] == math.ceil(n / 100) == 3
    assert state["requests"]["todoist"] == {"200": 3}
    assert state["creates"]["todoist"] == n
    assert state["duplicates"] == {"by_marker": {}, "by_request_id": {}}
    remote = {t["id"]: t for t in state["providers"]["todoist"]["tasks"]}
    stored = dict(Task.objects.filter(id__in=[r.task.id for r in results]).values_list("title", "external_id"))
    assert {remote[ext]["content"] for ext in stored.values()} == set(stored)  # each task got its own id

    # Updates of the same tasks: one command each, again in ceil(n/100) requests.
    for result in results[:150]:
        task_update(task_id=result.task.id, data={"title": f"{result.task.title} (2)"}, partial=True)
    drain(batch_size=n, threads=2)

    state = sandbox.sandbox.state()
    assert state["sync_requests"]["todoist"] == 3 + 2
    remote = {t["id"]: t for t in state["providers"]["todoist"]["tasks"]}
    renamed = Task.objects.filter(title__endswith="(2)")
    assert renamed.count() == 150
    assert all(remote[t.external_id]["content"] == t.title for t in renamed)


def test_a_sync_request_whose_answer_is_lost_still_lands_each_task_once(sandbox, todoist):
    task_bulk_create(items=[{"title": f"Lost {i}", "provider": str(todoist.id)} for i in range(40)])
    sandbox.sandbox.set_faults({"todoist": {"drop_next": 1}})  # the effect happens, the answer is lost

    drain(batch_size=40, threads=2, max_seconds=0)

    assert {(e.status, e.outcome_unknown) for e in OutboxEvent.objects.all()} == {(Status.FAILED, True)}
    assert sandbox.sandbox.state(include_items=False)["creates"]["todoist"] == 40
    OutboxEvent.objects.update(scheduled_at=timezone.now())

    drain(batch_size=40, threads=2)

    # Each create whose outcome was unknown looked for its task by reference and adopted it.
    assert OutboxEvent.objects.exclude(status=Status.DELIVERED).count() == 0
    state = sandbox.sandbox.state(include_items=False)
    assert state["creates"]["todoist"] == 40
    assert state["duplicates"] == {"by_marker": {}, "by_request_id": {}}
    assert Task.objects.filter(external_id__isnull=True).count() == 0
    assert len(set(Task.objects.values_list("external_id", flat=True))) == 40
