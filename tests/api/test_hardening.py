"""Failure paths found in review: each answers in the envelope and writes nothing."""

import threading
import uuid

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from outbox_app.models import OutboxEvent
from tasks_app.models import Assignee, Task
from tests.api.test_tasks_api import assert_envelope
from tests.clients import token_client
from tests.factories import AssigneeFactory, ClientFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_a_malformed_task_id_is_a_404_for_every_method(api, method):
    response = getattr(api, method)("/api/tasks/000000000000000000000000000000000000", {"title": "x"})
    assert_envelope(response, 404, "not_found")


@pytest.mark.parametrize("deadline", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_deadline_that_overflows_in_utc_is_a_field_error(api, deadline):
    assert_envelope(api.post("/api/tasks", {"title": "x", "deadline": deadline}), 400, "invalid", "deadline")
    assert Task.objects.count() == 0


def test_unpaired_surrogates_are_a_field_error_even_inside_a_bulk(api):
    response = api.generic(
        "POST", "/api/tasks/bulk", '{"tasks": [{"title": "a\\ud800b"}, {"title": "fine"}]}', "application/json"
    )
    assert response.status_code == 201
    results = response.json()["results"]
    assert results[0]["status"] == "error" and "title" in results[0]["errors"]
    assert results[1]["status"] == "created"


def test_unknown_keys_beside_tasks_in_a_bulk_body_are_refused(api):
    assert_envelope(api.post("/api/tasks/bulk", {"tasks": [{"title": "x"}], "bogus": 1}), 400, "invalid", "bogus")
    assert Task.objects.count() == 0


def test_an_assigned_task_cannot_lose_its_assignee_by_a_put(api):
    person = AssigneeFactory()
    task = api.post("/api/tasks", {"title": "Owned", "assignee": str(person.pk)}).json()
    task["assignee"] = None
    assert_envelope(api.put(f"/api/tasks/{task['id']}", task), 400, "invalid", "status")
    assert Task.objects.get().assignee_id == person.pk


def test_archiving_a_completed_task_keeps_its_completion(api):
    task = api.post("/api/tasks", {"title": "Done soon"}).json()
    api.patch(f"/api/tasks/{task['id']}", {"status": "in_progress"})
    completed_at = api.patch(f"/api/tasks/{task['id']}", {"status": "completed"}).json()["completed_at"]
    assert api.patch(f"/api/tasks/{task['id']}", {"status": "archived"}).json()["completed_at"] == completed_at


def test_a_round_trip_works_after_the_assignee_was_deactivated(api):
    person = AssigneeFactory()
    task = api.post("/api/tasks", {"title": "Kept", "assignee": str(person.pk)}).json()
    Assignee.objects.filter(pk=person.pk).update(active=False)
    task["priority"] = 4
    response = api.put(f"/api/tasks/{task['id']}", task)
    assert response.status_code == 200, response.content
    assert_envelope(
        api.patch(f"/api/tasks/{task['id']}", {"assignee": str(AssigneeFactory(active=False).pk)}),
        400,
        "invalid",
        "assignee",
    )


def test_a_change_no_provider_sees_bumps_the_version_but_writes_no_event(api):
    task = api.post("/api/tasks", {"title": "Client moves"}).json()
    body = api.patch(f"/api/tasks/{task['id']}", {"client": str(ClientFactory().pk)}).json()
    assert body["version"] == 2
    assert OutboxEvent.objects.count() == 1


def test_the_schema_and_docs_need_authentication(anon, db):
    assert_envelope(anon.get("/api/schema/"), 401, "not_authenticated")
    assert anon.get("/api/docs/").status_code == 401


def test_errors_outside_drf_views_still_use_the_envelope(api, settings):
    settings.DEBUG = True  # Django's technical 404 page would be HTML
    assert_envelope(api.get("/api/definitely/not/here"), 404, "not_found")


def test_a_concurrent_uniqueness_race_is_a_409_not_a_500(api, monkeypatch):
    from django.db import IntegrityError

    import tasks_app.api.views as views

    def racing(**kwargs):
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(views.services, "task_create", racing)
    assert_envelope(api.post("/api/tasks", {"title": "x"}), 409, "conflict")


def test_the_admin_cannot_add_or_delete_tasks_or_delete_people_with_open_work(client, django_user_model, api):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(admin)
    assert client.get("/admin/tasks_app/task/add/").status_code == 403
    person = AssigneeFactory()
    task = api.post("/api/tasks", {"title": "Open", "assignee": str(person.pk)}).json()
    assert client.get(f"/admin/tasks_app/task/{task['id']}/delete/").status_code == 403
    response = client.post(f"/admin/tasks_app/assignee/{person.pk}/delete/", {"post": "yes"}, follow=True)
    assert "open task" in response.content.decode()
    assert Assignee.objects.filter(pk=person.pk).exists()


@pytest.mark.redis
def test_with_the_cache_down_requests_still_authenticate_and_health_names_the_cache(api, anon, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "archangel.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    assert api.get("/api/tasks").status_code == 200
    response = anon.get("/api/health")
    assert response.status_code == 503 and response.json()["down"] == ["cache"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_overlapping_bulk_imports_of_the_same_tasks_never_deadlock(user):
    key = Token.objects.create(user=user).key
    titles = [f"Shared {uuid.uuid4()}" for _ in range(300)]
    results = []

    def post(order):
        try:
            response = token_client(key).post("/api/tasks/bulk", {"tasks": [{"title": t} for t in order]})
            results.append(response.status_code)
        finally:
            connection.close()

    for _ in range(3):
        threads = [threading.Thread(target=post, args=(o,)) for o in (titles, titles[::-1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 6 and set(results) <= {200, 201}
    assert Task.objects.count() == 300 and OutboxEvent.objects.count() == 300


def test_a_page_that_is_not_a_positive_number_or_past_the_end_is_a_400_naming_page(api):
    for page in ("0", "-1", "abc"):
        response = api.get("/api/tasks", {"page": page})
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {"page": ["Must be a positive integer."]}
    response = api.get("/api/tasks", {"page": "7"})
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["page"] == ["There is no page 7; the last page is 1."]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/tasks", '{"title": "deep", "description": ' + "[" * 1000 + "]" * 1000 + "}"),
        ("/api/tasks/bulk", '{"tasks": [' + "[" * 5000 + "]" * 5000 + "]}"),
        ("/api/tasks", "[" * 100_000),  # unclosed, a 100 KB body under the cap
        ("/api/clients", '{"name": "deep", "x": ' + "{" + '"a": {' * 40 + "}" * 41 + "}"),
    ],
)
def test_a_body_nested_too_deeply_is_a_parse_error_that_writes_nothing(api, path, body):
    from archangel.parsers import MAX_DEPTH

    error = assert_envelope(api.generic("POST", path, body, content_type="application/json"), 400, "parse_error")
    assert f"more than {MAX_DEPTH} levels" in error["message"]
    assert Task.objects.count() == 0 and OutboxEvent.objects.count() == 0


def test_a_provider_config_nested_too_deeply_is_refused(operator_api):
    from providers_app.models import Provider

    config = {"api_token": "tok"}
    inner = config
    for _ in range(40):
        inner["extra"] = {}
        inner = inner["extra"]
    response = operator_api.post("/api/providers", {"name": "deep", "type": "todoist", "config": config})
    assert_envelope(response, 400, "parse_error")
    assert not Provider.objects.exists()


def test_ordinary_nesting_still_parses():
    from archangel.parsers import MAX_DEPTH, json_problem

    value: list = []
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert json_problem(value) is None
    assert json_problem([value]) == f"nests objects or arrays more than {MAX_DEPTH} levels deep"
    assert json_problem("scalar") is None


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/tasks", '{"title": "k", "\\ud800": 1}', None),
        ("/api/tasks/bulk", '{"tasks": [{"title": "k"}], "\\udfff": 1}', None),
        ("/api/clients", '{"name": "c", "preferred_provider": "\\ud800"}', "preferred_provider"),
        ("/api/assignees", '{"name": "a", "email": "a@example.com", "identities": [{"provider": "\\ud800"}]}', None),
        ("/api/providers", '{"name": "p", "type": "\\ud800", "config": {}}', "type"),
    ],
)
def test_an_unpaired_surrogate_echoed_in_an_error_is_still_a_400(operator_api, path, body, field):
    response = operator_api.generic("POST", path, body, content_type="application/json")
    error = assert_envelope(response, 400, "invalid", field)
    assert "\\ud8" in response.content.decode("ascii") or "\\udf" in response.content.decode("ascii")
    assert error["message"]
    assert Task.objects.count() == 0 and OutboxEvent.objects.count() == 0
