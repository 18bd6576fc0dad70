"""The audit log records every write with its actor, door and changed fields, secrets masked."""

import json

import pytest
from django.db import transaction

from archangel.audit.context import acting_as
from archangel.audit.models import AuditEntry
from tests.factories import make_provider

TASK = "tasks_app.task"


def entries(**filters):
    return list(AuditEntry.objects.filter(**filters).order_by("id"))


def test_an_api_create_and_update_are_recorded_with_the_user_and_the_changed_fields(api):
    task = api.post("/api/tasks", {"title": "Audit me", "priority": 2}, format="json").json()
    (created,) = entries(object_type=TASK, action="create")
    assert (created.actor, created.source, created.object_id) == ("user:alice", "api", task["id"])
    assert created.changes["title"] == [None, "Audit me"]
    assert created.request_id  # ties the entry to the request's log lines

    api.patch(f"/api/tasks/{task['id']}", {"priority": 4, "title": "Audited"}, format="json")
    (updated,) = entries(object_type=TASK, action="update")
    assert updated.changes["priority"] == [2, 4]
    assert updated.changes["title"] == ["Audit me", "Audited"]
    assert "updated_at" not in updated.changes and "version" not in updated.changes


def test_a_bulk_create_records_one_entry_per_task_written_and_none_for_duplicates(api):
    body = {"tasks": [{"title": f"Bulk {i}"} for i in range(30)] + [{"title": "Bulk 0"}, {"title": ""}]}
    response = api.post("/api/tasks/bulk", body, format="json")
    assert response.json()["created"] == 30
    assert len(entries(object_type=TASK, action="create", actor="user:alice")) == 30


def test_a_refused_change_leaves_no_entry(api):
    task = api.post("/api/tasks", {"title": "Stays"}, format="json").json()
    before = AuditEntry.objects.count()
    assert api.patch(f"/api/tasks/{task['id']}", {"status": "archived", "title": ""}, format="json").status_code == 400
    assert AuditEntry.objects.count() == before


def test_a_rolled_back_transaction_takes_its_entries_with_it(db):
    with pytest.raises(RuntimeError), transaction.atomic():
        make_provider("todoist", name="Gone")
        raise RuntimeError
    assert not entries(object_type="providers_app.provider")


def test_provider_secrets_are_masked_in_the_log(operator_api):
    body = {"name": "Audited CU", "type": "clickup", "config": {"api_token": "pk_SUPERSECRET_1", "list_id": "1"}}
    provider = operator_api.post("/api/providers", body, format="json").json()
    operator_api.patch(f"/api/providers/{provider['id']}", {"config": {"api_token": "pk_SUPERSECRET_2"}}, format="json")
    logged = entries(object_type="providers_app.provider")
    assert [e.action for e in logged] == ["create", "update"]
    assert logged[0].changes["secrets"] == [None, "***"]
    assert logged[1].changes == {"secrets": ["***", "***"]}  # that they changed, never what they are
    dumped = json.dumps([e.changes for e in AuditEntry.objects.all()])
    assert "SUPERSECRET" not in dumped
    # ... nor the Fernet token that holds it.
    assert "gAAAA" not in dumped


def test_api_tokens_are_audited_without_their_key(api):
    (entry,) = entries(object_type="authtoken.token")
    assert entry.action == "create"
    assert "key" not in entry.changes and entry.object_id == str(entry.changes["user_id"][1])


def test_jobs_and_webhooks_name_themselves(db):
    with acting_as("job:tasks.rescore", "job"):
        make_provider("todoist", name="By job")
    (entry,) = entries(object_type="providers_app.provider")
    assert (entry.actor, entry.source) == ("job:tasks.rescore", "job")


def test_a_delete_is_recorded(api):
    client = api.post("/api/clients", {"name": "Short-lived", "importance": 0.5}, format="json").json()
    assert api.delete(f"/api/clients/{client['id']}").status_code == 204
    assert [e.action for e in entries(object_type="tasks_app.client")] == ["create", "delete"]


def test_admin_changes_are_recorded_as_admin(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(admin)
    response = client.post(
        "/admin/tasks_app/client/add/", {"name": "From admin", "importance": "0.5", "sla_hours": ""}, follow=True
    )
    assert response.status_code == 200
    (entry,) = entries(object_type="tasks_app.client")
    assert (entry.actor, entry.source, entry.action) == ("user:root", "admin", "create")


def test_get_audit_is_for_operators_and_filters(api, operator_api, reader_api):
    api.post("/api/tasks", {"title": "One"}, format="json")
    api.post("/api/clients", {"name": "Two", "importance": 0.1}, format="json")
    assert api.get("/api/audit").status_code == 403
    assert reader_api.get("/api/audit").status_code == 403
    page = operator_api.get("/api/audit", {"object_type": TASK}).json()
    assert [r["object_type"] for r in page["results"]] == [TASK]
    assert operator_api.get("/api/audit", {"actor": "user:alice"}).json()["count"] >= 2
    bad = operator_api.get("/api/audit", {"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["error"]["fields"]
    entry_id = page["results"][0]["id"]
    assert operator_api.get(f"/api/audit/{entry_id}").json()["id"] == entry_id
    assert operator_api.delete(f"/api/audit/{entry_id}").status_code == 405


def test_a_created_rows_values_are_logged_as_the_generic_conversion_would(db):
    """signals._created converts business data by exact type; every value must come out as
    context._jsonable makes it, empty text and containers left out, False and 0 kept."""
    import datetime as dt
    import decimal
    import uuid

    from archangel.audit.context import _jsonable
    from archangel.audit.signals import _created, _fields
    from tasks_app.models import Task
    from tasks_app.status import TaskStatus

    task = Task(
        id=uuid.uuid4(),
        title="Typed",
        description="",
        status=TaskStatus.IN_PROGRESS,  # a str subclass
        priority=Task.Priority.URGENT,  # an int subclass
        effort_hours=decimal.Decimal("2.50"),
        effort_estimated=False,
        deadline=dt.datetime(2031, 3, 4, 21, 59, 59, tzinfo=dt.UTC),
        client_id=uuid.uuid4(),
        score=0.0,
        score_breakdown={},
        external_id=dt.date(2031, 3, 4),  # any type at all: through _jsonable
        version=0,
    )
    values = task.__dict__
    expected = {
        name: [None, _jsonable(value)]
        for name in _fields(Task)
        if name != "id" and (value := values.get(name)) is not None and value not in ("", {}, [])
    }
    changes = _created(task)
    assert changes == expected
    assert json.dumps(changes) == json.dumps(expected)  # the same types too, key order included
    assert changes["effort_estimated"] == [None, False] and changes["score"] == [None, 0.0]
    assert "description" not in changes and "score_breakdown" not in changes
