"""export_person and erase_person: everything about a person out, or nothing personal left."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from archangel.audit.models import AuditEntry
from tasks_app.models import Assignee, AssigneeIdentity, Task
from tests.factories import make_provider


@pytest.fixture
def person(api):
    provider = make_provider("todoist", name="TD")
    body = {"name": "Grace Hopper", "email": "grace@example.com", "capacity_hours_per_day": 6}
    body["identities"] = [{"provider": str(provider.id), "external_user_id": "td-user-4242"}]
    assert api.post("/api/assignees", body, format="json").status_code == 201
    person = Assignee.objects.get(email="grace@example.com")
    api.post("/api/tasks", {"title": "Debug the Mark II", "assignee": str(person.id)}, format="json")
    return person


def test_export_holds_the_person_their_identities_tasks_and_audit_trail(person, tmp_path):
    out = tmp_path / "grace.json"
    call_command("export_person", "GRACE@example.com", "--output", str(out), stderr=io.StringIO())
    data = json.loads(out.read_text())
    assert data["assignee"]["fields"]["name"] == "Grace Hopper"
    assert data["related"]["tasks_app.assigneeidentity"][0]["fields"]["external_user_id"] == "td-user-4242"
    assert [t["fields"]["title"] for t in data["related"]["tasks_app.task"]] == ["Debug the Mark II"]
    assert any(e["action"] == "create" for e in data["audit"])
    exported = AuditEntry.objects.get(action="export")
    assert (exported.actor, exported.source, exported.object_id) == ("command:export_person", "command", str(person.id))


def test_erase_anonymizes_keeps_tasks_and_leaves_nothing_personal_in_the_audit_log(person):
    task = Task.objects.get(assignee=person)
    call_command("erase_person", "grace@example.com", "--yes", stdout=io.StringIO())
    person.refresh_from_db()
    assert person.name.startswith("Erased person") and person.email.endswith("@erased.invalid")
    assert not person.active
    assert not AssigneeIdentity.objects.filter(assignee=person).exists()
    task.refresh_from_db()
    assert task.assignee_id == person.id  # history stays consistent
    dumped = json.dumps(list(AuditEntry.objects.values("object_repr", "changes")))
    for secret in ("Grace", "grace@example.com", "td-user-4242"):
        assert secret not in dumped
    assert AuditEntry.objects.filter(action="erase", actor="command:erase_person").count() == 1


def test_an_unknown_email_is_a_clear_error_and_changes_nothing(person):
    with pytest.raises(CommandError, match="No assignee"):
        call_command("erase_person", "nobody@example.com", "--yes")
    with pytest.raises(CommandError, match="No assignee"):
        call_command("export_person", "nobody@example.com")
    assert Assignee.objects.get(pk=person.pk).name == "Grace Hopper"


def test_erase_asks_for_confirmation(person, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="Not confirmed"):
        call_command("erase_person", "grace@example.com")
    assert Assignee.objects.get(pk=person.pk).name == "Grace Hopper"
