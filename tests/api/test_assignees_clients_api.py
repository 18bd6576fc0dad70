import pytest

from tasks_app.models import Assignee, Client
from tests.api.test_tasks_api import assert_envelope
from tests.factories import AssigneeFactory, ClientFactory, make_provider

pytestmark = pytest.mark.django_db


def test_assignee_crud_with_identities(api):
    clickup, trello = make_provider("clickup"), make_provider("trello")
    response = api.post(
        "/api/assignees",
        {
            "name": "Dana",
            "email": "dana@example.com",
            "capacity_hours_per_day": 6,
            "timezone": "Europe/Berlin",
            "identities": [{"provider": str(clickup.pk), "external_user_id": "183"}],
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["capacity_hours_per_day"] == 6.0 and body["active"] is True
    assert body["identities"] == [{"provider": str(clickup.pk), "external_user_id": "183"}]

    patched = api.patch(
        f"/api/assignees/{body['id']}", {"identities": [{"provider": str(trello.pk), "external_user_id": "5a9"}]}
    )
    assert patched.json()["identities"] == [{"provider": str(trello.pk), "external_user_id": "5a9"}]
    assert api.patch(f"/api/assignees/{body['id']}", {"active": False}).json()["active"] is False
    assert api.get("/api/assignees", {"active": "false"}).json()["count"] == 1
    assert api.delete(f"/api/assignees/{body['id']}").status_code == 204
    assert Assignee.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "x", "email": "not-an-email"}, "email"),
        ({"name": "x", "email": "x@example.com", "timezone": "Mars/Base"}, "timezone"),
        ({"name": "x", "email": "x@example.com", "capacity_hours_per_day": 25}, "capacity_hours_per_day"),
        ({"name": "x", "email": "x@example.com", "capacity_hours_per_day": -1}, "capacity_hours_per_day"),
    ],
)
def test_bad_assignees_are_refused(api, payload, field):
    assert_envelope(api.post("/api/assignees", payload), 400, "invalid", field)
    assert Assignee.objects.count() == 0


def test_an_identity_belongs_to_one_person_per_provider(api):
    clickup = make_provider("clickup")
    first = {
        "name": "A",
        "email": "a@example.com",
        "identities": [{"provider": str(clickup.pk), "external_user_id": "1"}],
    }
    assert api.post("/api/assignees", first).status_code == 201
    second = {**first, "email": "b@example.com"}
    assert_envelope(api.post("/api/assignees", second), 400, "invalid", "identities")
    twice = {
        "name": "C",
        "email": "c@example.com",
        "identities": [
            {"provider": str(clickup.pk), "external_user_id": "7"},
            {"provider": str(clickup.pk), "external_user_id": "8"},
        ],
    }
    assert_envelope(api.post("/api/assignees", twice), 400, "invalid", "identities")
    assert Assignee.objects.count() == 1


def test_a_person_with_open_tasks_cannot_be_deleted(api):
    person = AssigneeFactory()
    api.post("/api/tasks", {"title": "Open work", "assignee": str(person.pk)})
    error = assert_envelope(api.delete(f"/api/assignees/{person.pk}"), 409, "conflict")
    assert error["details"] == {"open_tasks": 1}
    assert Assignee.objects.filter(pk=person.pk).exists()


def test_client_crud_and_validation(api):
    provider = make_provider("todoist")
    response = api.post(
        "/api/clients", {"name": "Acme", "importance": 0.9, "sla_hours": 24, "preferred_provider": str(provider.pk)}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["importance"] == 0.9
    assert_envelope(api.post("/api/clients", {"name": "Bad", "importance": 1.5}), 400, "invalid", "importance")
    assert_envelope(api.post("/api/clients", {"name": "Bad", "sla_hours": 0}), 400, "invalid", "sla_hours")
    assert_envelope(api.post("/api/clients", {"name": "Bad", "sla_hours": 87_601}), 400, "invalid", "sla_hours")
    assert_envelope(api.post("/api/clients", {"name": "Acme"}), 400, "invalid", "name")
    assert api.patch(f"/api/clients/{body['id']}", {"sla_hours": None}).json()["sla_hours"] is None
    assert api.delete(f"/api/clients/{body['id']}").status_code == 204
    assert Client.objects.count() == 0


def test_a_client_with_open_tasks_cannot_be_deleted(api):
    client = ClientFactory()
    api.post("/api/tasks", {"title": "For the client", "client": str(client.pk)})
    assert_envelope(api.delete(f"/api/clients/{client.pk}"), 409, "conflict")
