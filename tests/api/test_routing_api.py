"""Routing inside the create path, the preview, and a provider going down."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from outbox_app.models import OutboxEvent
from providers_app.models import Provider
from tasks_app import jobs, services
from tasks_app.models import RoutingDecision, Task
from tests.api.test_tasks_api import assert_envelope
from tests.factories import AssigneeFactory, ClientFactory, IdentityFactory, make_provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    clickup, trello = make_provider("clickup"), make_provider("trello")
    ann = AssigneeFactory(name="Ann", capacity_hours_per_day=8)
    bob = AssigneeFactory(name="Bob", capacity_hours_per_day=8)
    IdentityFactory(assignee=ann, provider=clickup, external_user_id="cu-ann")
    IdentityFactory(assignee=bob, provider=clickup, external_user_id="cu-bob")
    IdentityFactory(assignee=bob, provider=trello, external_user_id="tr-bob")
    return {"clickup": clickup, "trello": trello, "ann": ann, "bob": bob}


def test_a_task_without_provider_or_assignee_gets_both_and_the_decision_is_shown(api, team):
    client = ClientFactory(preferred_provider=team["trello"])
    body = api.post("/api/tasks", {"title": "Route me", "client": str(client.pk), "effort_hours": 2}).json()
    assert body["provider"] == str(team["trello"].pk)
    assert body["assignee"] == str(team["bob"].pk)
    assert body["status"] == "assigned"
    routing = body["routing"]
    assert routing["provider"] == body["provider"] and routing["assignee"] == body["assignee"]
    assert "client's preferred provider" in routing["reason"]
    assert routing["over_capacity"] is False and routing["duration_ms"] >= 0
    event = OutboxEvent.objects.get()
    assert event.provider_id == team["trello"].pk and event.payload["assignee_external_id"] == "tr-bob"
    # The same decision is read back, with the task list and the task.
    assert api.get(f"/api/tasks/{body['id']}").json()["routing"] == routing
    assert api.get("/api/tasks").json()["results"][0]["routing"] == routing


def test_a_fixed_provider_and_assignee_are_kept_and_nothing_is_decided(api, team):
    body = api.post(
        "/api/tasks", {"title": "Fixed", "provider": str(team["clickup"].pk), "assignee": str(team["ann"].pk)}
    ).json()
    assert body["routing"] is None and not RoutingDecision.objects.exists()


def test_a_bulk_request_spreads_its_own_work_in_a_fixed_number_of_queries(api, team):
    Provider.objects.filter(pk=team["trello"].pk).update(weight=0)  # both people work on clickup
    tasks = [{"title": f"Bulk {i}", "effort_hours": 1} for i in range(40)]
    api.post("/api/tasks/bulk", {"tasks": tasks[:2]})  # warm up
    with CaptureQueriesContext(connection) as ctx:
        assert api.post("/api/tasks/bulk", {"tasks": tasks[2:]}).status_code == 201
    assert len(ctx.captured_queries) <= 20, [q["sql"] for q in ctx.captured_queries]
    hours = {
        person: sum(float(t.effort_hours) for t in Task.objects.filter(assignee=team[person]))
        for person in ("ann", "bob")
    }
    # 40 one-hour tasks over two 8-hour people: both fill up, then the over-capacity work alternates.
    assert hours == {"ann": 20.0, "bob": 20.0}
    assert RoutingDecision.objects.filter(over_capacity=True).count() == 24


def test_a_down_provider_gets_no_new_work(api, team):
    Provider.objects.filter(pk=team["clickup"].pk).update(health_status="down")
    body = api.post("/api/tasks", {"title": "Avoid clickup"}).json()
    assert body["provider"] == str(team["trello"].pk) and body["assignee"] == str(team["bob"].pk)


def test_the_preview_returns_the_decision_and_writes_nothing(api, team):
    response = api.post("/api/routing/preview", {"title": "What if", "effort_hours": 3})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["provider"] in {str(team["clickup"].pk), str(team["trello"].pk)} and body["assignee"]
    assert body["effort_hours"] == 3.0 and any(c["kind"] == "provider" for c in body["candidates"])
    assert not Task.objects.exists() and not RoutingDecision.objects.exists() and not OutboxEvent.objects.exists()


def test_the_preview_validates_like_a_create(api, reader_api, anon, team):
    assert_envelope(api.post("/api/routing/preview", {"priority": 9}), 400, "invalid", "title")
    assert_envelope(
        api.post("/api/routing/preview", {"title": "x", "client": str(team["ann"].pk)}), 400, "invalid", "client"
    )
    assert_envelope(reader_api.post("/api/routing/preview", {"title": "x"}), 403, "permission_denied")
    assert_envelope(anon.post("/api/routing/preview", {"title": "x"}), 401, "not_authenticated")


def test_provider_down_is_for_operators_and_validates_its_body(api, operator_api, team):
    assert_envelope(
        api.post("/api/events/provider-down", {"provider": str(team["clickup"].pk)}), 403, "permission_denied"
    )
    assert_envelope(operator_api.post("/api/events/provider-down", {}), 400, "invalid", "provider")
    assert_envelope(operator_api.post("/api/events/provider-down", {"provider": "nope"}), 400, "invalid", "provider")
    missing = "00000000-0000-0000-0000-000000000000"
    assert_envelope(operator_api.post("/api/events/provider-down", {"provider": missing}), 400, "invalid", "provider")
    body = {"provider": str(team["clickup"].pk), "policy": "later"}
    assert_envelope(operator_api.post("/api/events/provider-down", body), 400, "invalid", "policy")
    assert Provider.objects.get(pk=team["clickup"].pk).health_status == "active"


def _routed_to_clickup(api, team, title):
    Provider.objects.filter(pk=team["trello"].pk).update(weight=0)
    body = api.post("/api/tasks", {"title": title}).json()
    Provider.objects.filter(pk=team["trello"].pk).update(weight=100)
    assert body["provider"] == str(team["clickup"].pk)
    return body


def test_with_the_wait_policy_undelivered_tasks_stay(api, operator_api, team, settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "PROVIDER_DOWN_POLICY": "wait"}
    task = _routed_to_clickup(api, team, "Stays")
    response = operator_api.post("/api/events/provider-down", {"provider": str(team["clickup"].pk)})
    assert response.json() == {"provider": str(team["clickup"].pk), "policy": "wait", "moved": 0, "waiting": 1}
    assert Task.objects.get(pk=task["id"]).provider_id == team["clickup"].pk
    assert Provider.objects.get(pk=team["clickup"].pk).health_status == "down"


def test_with_the_move_policy_an_undelivered_routed_task_moves_with_its_events(api, operator_api, team, settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "PROVIDER_DOWN_POLICY": "move"}
    moving = _routed_to_clickup(api, team, "Moves")
    api.patch(f"/api/tasks/{moving['id']}", {"priority": 4})  # a second undelivered event
    fixed = api.post("/api/tasks", {"title": "Fixed here", "provider": str(team["clickup"].pk)}).json()
    delivered = _routed_to_clickup(api, team, "Already there")
    OutboxEvent.objects.filter(aggregate_id=delivered["id"]).update(status="delivered")
    Task.objects.filter(pk=delivered["id"]).update(external_id="cu-1")

    body = operator_api.post("/api/events/provider-down", {"provider": str(team["clickup"].pk)}).json()
    assert body == {"provider": str(team["clickup"].pk), "policy": "move", "moved": 1, "waiting": 1}

    task = Task.objects.get(pk=moving["id"])
    assert task.provider_id == team["trello"].pk
    events = list(OutboxEvent.objects.filter(aggregate_id=task.pk).order_by("aggregate_version"))
    assert [e.operation_type for e in events][:2] == ["create", "update"]
    assert {e.provider_id for e in events} == {team["trello"].pk}
    # Each event keeps the state of its version, with that assignee's user id at the new provider
    # (Ann has none there); the last one carries Bob, who took the task over.
    external = {str(team["ann"].pk): None, str(team["bob"].pk): "tr-bob"}
    assert all(e.payload["assignee_external_id"] == external[e.payload["assignee_id"]] for e in events)
    assert events[-1].payload["assignee_id"] == str(team["bob"].pk)
    assert task.assignee_id == team["bob"].pk
    latest = RoutingDecision.objects.filter(task=task).order_by("-created_at").first()
    assert latest.trigger == "provider_down" and latest.provider_id == team["trello"].pk
    assert Task.objects.get(pk=fixed["id"]).provider_id == team["clickup"].pk
    assert Task.objects.get(pk=delivered["id"]).provider_id == team["clickup"].pk
    # Running it again moves nothing more.
    again = operator_api.post("/api/events/provider-down", {"provider": str(team["clickup"].pk)}).json()
    assert again["moved"] == 0


def test_a_task_whose_create_is_being_delivered_does_not_move(api, team, settings):
    task = _routed_to_clickup(api, team, "In flight")
    OutboxEvent.objects.filter(aggregate_id=task["id"]).update(status="processing")
    assert services.provider_went_down(provider_id=team["clickup"].pk, policy="move")["moved"] == 0
    assert Task.objects.get(pk=task["id"]).provider_id == team["clickup"].pk


def test_the_beat_job_moves_work_off_a_provider_whose_breaker_opened(api, team, settings):
    task = _routed_to_clickup(api, team, "Breaker")
    settings.ARCHANGEL = {**settings.ARCHANGEL, "PROVIDER_DOWN_POLICY": "wait"}
    Provider.objects.filter(pk=team["clickup"].pk).update(health_status="down")  # the breaker's mirror
    assert jobs.reroute_from_down_providers() == []
    settings.ARCHANGEL = {**settings.ARCHANGEL, "PROVIDER_DOWN_POLICY": "move"}
    [report] = jobs.reroute_from_down_providers()
    assert report["moved"] == 1 and Task.objects.get(pk=task["id"]).provider_id == team["trello"].pk
