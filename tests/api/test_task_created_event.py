"""POST /api/events/task-created: the normal create path for internal systems (issue 5 §5)."""

import pytest

from outbox_app.models import OutboxEvent
from tasks_app.models import Task

pytestmark = pytest.mark.django_db
URL = "/api/events/task-created"


def test_it_creates_a_task_with_its_outbox_event(api):
    response = api.post(URL, {"title": "  Renew   the TLS certificate ", "priority": "high"}, format="json")
    assert response.status_code == 201
    task = Task.objects.get()
    assert task.title == "Renew the TLS certificate"
    assert task.priority == 3
    assert response["Location"] == f"/api/tasks/{task.pk}"
    assert OutboxEvent.objects.filter(aggregate_id=task.pk, operation_type="create").count() == 1


def test_an_open_duplicate_is_returned_not_created(api):
    first = api.post(URL, {"title": "Call the bank"}, format="json")
    second = api.post(URL, {"title": "call the bank"}, format="json")
    assert second.status_code == 200
    assert second["X-Archangel-Duplicate"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert Task.objects.count() == 1


def test_invalid_input_is_a_400_in_the_envelope_and_nothing_is_stored(api):
    response = api.post(URL, {"title": "", "priority": 9, "colour": "red"}, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"title", "priority", "colour"}
    assert Task.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def test_it_needs_a_token(anon):
    assert anon.post(URL, {"title": "x"}, format="json").status_code == 401


def test_a_read_only_token_may_not_create(reader_api):
    assert reader_api.post(URL, {"title": "x"}, format="json").status_code == 403
    assert Task.objects.count() == 0


def test_an_idempotency_key_replays_the_first_answer(api):
    first = api.post(URL, {"title": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(URL, {"title": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == first.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert Task.objects.count() == 1
