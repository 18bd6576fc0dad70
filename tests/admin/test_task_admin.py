"""Task admin: overdue and SLA filters; rescore, reroute, archive and resend actions through the services."""

import datetime as dt

import pytest
from django.utils import timezone

from outbox_app.models import OutboxEvent
from providers_app.models import Provider
from tasks_app.models import Task
from tests.factories import make_provider

CHANGELIST = "/admin/tasks_app/task/"


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-123"))
    return client


def _act(staff, action, *tasks):
    return staff.post(CHANGELIST, {"action": action, "_selected_action": [str(t.pk) for t in tasks]}, follow=True)


def test_the_overdue_and_sla_filters(staff, api):
    late = api.post("/api/tasks", {"title": "Late", "deadline": "2020-01-01T00:00:00Z"}, format="json").json()
    api.post("/api/tasks", {"title": "Later", "deadline": "2999-01-01T00:00:00Z"}, format="json")
    Task.objects.filter(title="Later").update(score_breakdown={"sla_pressure": 0.9})
    page = staff.get(CHANGELIST, {"overdue": "yes"}).content.decode()
    assert late["id"] in page and "Later" not in page
    page = staff.get(CHANGELIST, {"sla_at_risk": "yes"}).content.decode()
    assert ">Later<" in page and ">Late<" not in page


def test_rescore_and_archive_go_through_the_services(staff, api):
    made = api.post("/api/tasks", {"title": "Score me", "deadline": "2020-01-01T00:00:00Z"}, format="json").json()
    task = Task.objects.get(pk=made["id"])
    Task.objects.filter(pk=task.pk).update(score=0.0, score_breakdown={})
    assert "Rescored; 1 score(s) changed." in _act(staff, "rescore", task).content.decode()
    task.refresh_from_db()
    assert task.score > 0 and task.score_breakdown["urgency"] == 1.0
    _act(staff, "archive", task)
    task.refresh_from_db()
    assert task.status == "archived"
    assert OutboxEvent.objects.filter(aggregate_id=task.pk, operation_type="archive").exists()


def test_resend_writes_a_new_version_with_an_update_event_and_refuses_undelivered_tasks(staff, api):
    provider = make_provider("todoist", name="TD resend")
    made = api.post("/api/tasks", {"title": "Resend me", "provider": str(provider.pk)}, format="json").json()
    task = Task.objects.get(pk=made["id"])
    page = _act(staff, "resend", task).content.decode()
    assert "create has not been delivered yet" in page
    Task.objects.filter(pk=task.pk).update(external_id="6Xabc")
    _act(staff, "resend", task)
    event = OutboxEvent.objects.filter(aggregate_id=task.pk).order_by("-aggregate_version").first()
    assert (event.operation_type, event.aggregate_version, event.payload["external_id"]) == ("update", 2, "6Xabc")


def test_reroute_moves_an_undelivered_routed_task_to_another_provider(staff, api):
    first = make_provider("todoist", name="TD first")
    make_provider("todoist", name="TD second")
    made = api.post("/api/tasks", {"title": "Move me"}, format="json").json()
    task = Task.objects.get(pk=made["id"])
    assert task.provider_id is not None  # routed
    old = task.provider_id
    Provider.objects.filter(pk=old).update(health_status=Provider.Health.DOWN)
    page = _act(staff, "reroute", task).content.decode()
    task.refresh_from_db()
    assert "Moved 1 of 1" in page and task.provider_id != old
    assert set(OutboxEvent.objects.filter(aggregate_id=task.pk).values_list("provider_id", flat=True)) == {
        task.provider_id
    }
    assert first.pk in {old, task.provider_id}
    assert timezone.now() - task.updated_at < dt.timedelta(minutes=1)
