"""archangel.middleware.FastPathMiddleware for API requests: a token without a cookie skips the
session, CSRF, authentication, messages and clickjacking middleware, and answers as the whole
stack would; anything else takes the whole stack."""

import pytest
from django.contrib.sessions.middleware import SessionMiddleware
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from archangel.audit.models import AuditEntry
from tasks_app.models import Task

pytestmark = pytest.mark.django_db


@pytest.fixture
def full_stack(monkeypatch):
    """How many requests went through SessionMiddleware (the whole stack)."""
    calls = []
    real = SessionMiddleware.process_request

    def counted(self, request):
        calls.append(1)
        return real(self, request)

    monkeypatch.setattr(SessionMiddleware, "process_request", counted)
    return calls


def _sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def test_a_token_request_skips_the_browser_middleware_and_answers_as_the_whole_stack_would(api, full_stack):
    by_view = {"status": "201", "view": "task-list", "method": "POST"}
    before = _sample("django_http_responses_total_by_status_view_method_total", **by_view)
    response = api.post("/api/tasks", {"title": "Fast path"}, format="json")
    assert response.status_code == 201 and response.json()["title"] == "Fast path"
    assert full_stack == []
    # What the skipped middleware would have added, and the outer middleware's headers.
    assert response["X-Frame-Options"] == "DENY"
    assert int(response["Content-Length"]) == len(response.content)
    assert response["X-Request-Id"] and response["X-Content-Type-Options"] == "nosniff"
    assert not response.cookies and "Cookie" not in response.get("Vary", "")
    # The audit context names the token's user; the per-view metrics are recorded.
    task = Task.objects.get(title="Fast path")
    entry = AuditEntry.objects.get(object_id=str(task.id), action="create")
    assert (entry.actor, entry.source) == ("user:alice", "api")
    assert _sample("django_http_responses_total_by_status_view_method_total", **by_view) == before + 1


def test_reads_updates_and_errors_take_the_fast_path_with_the_same_envelope(api, full_stack):
    created = api.post("/api/tasks", {"title": "Fast path"}, format="json").json()
    assert api.get(f"/api/tasks/{created['id']}").json()["id"] == created["id"]
    assert api.patch(f"/api/tasks/{created['id']}", {"priority": 4}, format="json").json()["priority"] == 4
    invalid = api.post("/api/tasks", {"title": ""}, format="json")
    assert invalid.status_code == 400 and "title" in invalid.json()["error"]["fields"]
    assert api.get("/api/tasks/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.put("/api/health").status_code in (401, 405)
    assert full_stack == []


def test_a_wrong_token_is_a_401_with_its_challenge(db, full_stack):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/tasks")
    assert response.status_code == 401 and response.json()["error"]["code"] == "authentication_failed"
    assert response["WWW-Authenticate"] == "Token"
    assert full_stack == []


def test_an_unexpected_error_is_a_500_envelope_counted_like_any_answer(api, monkeypatch):
    from django.core.signals import got_request_exception

    from tasks_app import services

    monkeypatch.setattr(services, "task_create", lambda **kwargs: 1 / 0)
    signalled = []
    got_request_exception.connect(lambda sender, **kw: signalled.append(1), weak=False, dispatch_uid="t-fast")
    by_view = {"status": "500", "view": "task-list", "method": "POST"}
    before = _sample("django_http_responses_total_by_status_view_method_total", **by_view)
    api.raise_request_exception = False
    try:
        response = api.post("/api/tasks", {"title": "Boom"}, format="json")
    finally:
        got_request_exception.disconnect(dispatch_uid="t-fast")
    assert response.status_code == 500 and response.json()["error"]["code"] == "server_error"
    assert response["X-Frame-Options"] == "DENY" and int(response["Content-Length"]) == len(response.content)
    assert signalled and not Task.objects.exists()
    assert _sample("django_http_responses_total_by_status_view_method_total", **by_view) == before + 1


def test_a_host_outside_allowed_hosts_is_a_400_on_the_fast_path_too(api, settings):
    settings.ALLOWED_HOSTS = ["archangel.example"]
    response = api.post("/api/tasks", {"title": "Forged host"}, format="json", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert not Task.objects.exists()


def test_a_request_with_a_cookie_or_no_token_or_no_route_takes_the_whole_stack(api, user, full_stack):
    assert api.get("/api/nope").status_code == 404  # no route: CommonMiddleware's case
    assert len(full_stack) == 1
    session = APIClient()
    session.force_login(user)  # the browsable API's way in: a session cookie
    assert session.get("/api/tasks").status_code == 200
    assert len(full_stack) == 2
    api.cookies["sessionid"] = "whatever"  # a token and a cookie: the whole stack, as for a browser
    assert api.get("/api/tasks").status_code == 200
    assert len(full_stack) == 3
    assert APIClient().get("/api/tasks").status_code == 401  # no token at all
    assert len(full_stack) == 4
