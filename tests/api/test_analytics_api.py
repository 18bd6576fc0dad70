"""GET /api/analytics/workload and /performance: the figures, computed by hand, and validation."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from outbox_app.models import OutboxEvent
from tasks_app.models import RoutingDecision, Task
from tests.api.test_tasks_api import assert_envelope
from tests.factories import AssigneeFactory, ClientFactory, IdentityFactory, TaskFactory, make_provider

pytestmark = pytest.mark.django_db


def test_workload_per_assignee_and_provider(api):
    provider = make_provider("clickup")
    ann = AssigneeFactory(name="Ann", capacity_hours_per_day=8)
    IdentityFactory(assignee=ann, provider=provider)
    AssigneeFactory(name="Zed", capacity_hours_per_day=6)
    tight = ClientFactory(sla_hours=10)
    now = timezone.now()
    TaskFactory(
        assignee=ann, provider=provider, status="assigned", effort_hours=3, deadline=now - dt.timedelta(hours=1)
    )
    risky = TaskFactory(assignee=ann, provider=provider, status="in_progress", effort_hours=1, client=tight)
    Task.objects.filter(pk=risky.pk).update(created_at=now - dt.timedelta(hours=9))
    TaskFactory(assignee=ann, provider=provider, status="completed", effort_hours=5)
    TaskFactory(status="pending", effort_hours=2)

    with CaptureQueriesContext(connection) as ctx:
        body = api.get("/api/analytics/workload").json()
    assert len(ctx.captured_queries) <= 7  # token + five aggregates, whatever the number of rows
    by_name = {row["name"]: row for row in body["assignees"]}
    assert by_name["Ann"] == {
        "id": str(ann.pk),
        "name": "Ann",
        "active": True,
        "open_tasks": 2,
        "open_effort_hours": 4.0,
        "capacity_hours_per_day": 8.0,
        "utilization": 0.5,
        "overdue": 1,
        "sla_at_risk": 1,
    }
    assert by_name["Zed"]["open_tasks"] == 0 and by_name["Zed"]["utilization"] == 0.0
    assert by_name["(unassigned)"]["open_tasks"] == 1
    [clickup, unrouted] = body["providers"]
    assert (clickup["open_tasks"], clickup["open_effort_hours"], clickup["utilization"]) == (2, 4.0, 0.5)
    assert unrouted["name"] == "(unrouted)" and unrouted["open_effort_hours"] == 2.0

    today = now.date().isoformat()
    old = api.get("/api/analytics/workload", {"from": "2020-01-01", "to": "2020-01-31"}).json()
    assert all(row["open_tasks"] == 0 for row in old["assignees"])
    assert api.get("/api/analytics/workload", {"from": today}).status_code == 200


def test_performance_figures(api):
    provider = make_provider("trello")
    client = ClientFactory(sla_hours=10)
    now = timezone.now().replace(microsecond=0)
    for hours, with_client in ((2, True), (4, True), (20, True), (6, False)):
        task = TaskFactory(status="completed", client=client if with_client else None)
        Task.objects.filter(pk=task.pk).update(created_at=now - dt.timedelta(hours=hours), completed_at=now)
    for i, (status, retries, seconds) in enumerate(
        [("delivered", 0, 1), ("delivered", 1, 3), ("dead", 5, None), ("pending", 0, None)]
    ):
        event = OutboxEvent.objects.create(
            provider=provider,
            aggregate_id=TaskFactory().pk,
            aggregate_version=1,
            operation_type="create",
            payload={},
            idempotency_key=f"k{i}",
            status=status,
            retry_count=retries,
        )
        if seconds:
            OutboxEvent.objects.filter(pk=event.pk).update(
                processed_at=event.created_at + dt.timedelta(seconds=seconds)
            )
    task = Task.objects.first()
    for ms in (1.0, 2.0, 3.0):
        RoutingDecision.objects.create(task=task, duration_ms=ms, over_capacity=ms == 3.0)

    body = api.get("/api/analytics/performance").json()
    today = now.date().isoformat()
    assert body["throughput_per_day"][-1]["date"] == today and body["throughput_per_day"][-1]["completed"] == 4
    # percentile_cont over 2, 4, 6, 20 h: p50 = 5, p95 = 6 + 0.85 * (20 - 6) = 17.9.
    assert body["cycle_time_hours"] == {"count": 4, "p50": 5.0, "p95": pytest.approx(17.9, abs=1e-3)}
    assert body["sla_compliance"] == {"completed_with_sla": 3, "met": 2, "rate": 0.6667}
    assert body["outbox_delivery_latency_seconds"]["count"] == 2
    assert body["outbox_delivery_latency_seconds"]["p50"] == pytest.approx(2.0, abs=1e-3)
    [trello] = body["providers"]
    assert (trello["events"], trello["retried"], trello["dead"]) == (4, 2, 1)
    assert (trello["failure_rate"], trello["dead_letter_rate"]) == (0.5, 0.25)
    assert body["routing_decision_ms"] == {"count": 3, "p50": 2.0, "p95": pytest.approx(2.9), "over_capacity": 1}
    # A range with nothing in it.
    empty = api.get("/api/analytics/performance", {"from": "2020-01-01", "to": "2020-01-02"}).json()
    assert empty["cycle_time_hours"] == {"count": 0, "p50": None, "p95": None} and empty["throughput_per_day"] == []


@pytest.mark.parametrize("path", ["/api/analytics/workload", "/api/analytics/performance"])
def test_date_ranges_are_validated_in_the_envelope(api, anon, path):
    assert_envelope(api.get(path, {"from": "yesterday"}), 400, "invalid", "from")
    assert_envelope(api.get(path, {"to": "2026-02-30"}), 400, "invalid", "to")
    assert_envelope(api.get(path, {"from": "2026-03-10", "to": "2026-03-01"}), 400, "invalid", "to")
    assert_envelope(api.get(path, {"from": "2020-01-01", "to": "2026-01-01"}), 400, "invalid", "to")
    assert_envelope(api.get(path, {"since": "2026-01-01"}), 400, "invalid", "since")
    # Days whose neighbours (the day after, the 30 days before) would leave the calendar.
    assert_envelope(api.get(path, {"to": "9999-12-31"}), 400, "invalid", "to")
    assert_envelope(api.get(path, {"to": "0001-01-01"}), 400, "invalid", "to")
    assert_envelope(api.get(path, {"from": "0001-01-01", "to": "0001-01-02"}), 400, "invalid", "from")
    assert api.get(path, {"from": "1970-01-02", "to": "1970-01-02"}).status_code == 200
    assert api.get(path, {"from": "2999-12-31", "to": "2999-12-31"}).status_code == 200
    assert_envelope(anon.get(path), 401, "not_authenticated")


def test_readers_may_read_analytics(reader_api):
    assert reader_api.get("/api/analytics/workload").status_code == 200
    assert reader_api.get("/api/analytics/performance").status_code == 200


def test_the_longest_sla_a_client_may_have_still_computes_its_risk(api):
    client = api.post("/api/clients", {"name": "Patient", "sla_hours": 87_600}).json()
    assert api.post("/api/tasks", {"title": "No hurry", "client": client["id"]}).status_code == 201
    response = api.get("/api/analytics/workload")
    assert response.status_code == 200
    assert sum(row["sla_at_risk"] for row in response.json()["assignees"]) == 0
    assert sum(row["open_tasks"] for row in response.json()["assignees"]) == 1
    assert api.get("/api/analytics/performance").status_code == 200
