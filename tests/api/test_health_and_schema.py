import pytest
import yaml
from django.conf import settings as django_settings

from tasks_app.api import health

pytestmark = pytest.mark.django_db


def test_health_needs_no_token_and_reports_each_dependency(anon):
    response = anon.get("/api/health")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok" and body["down"] == []
    assert set(body["checks"]) == {"database", "broker", "cache"}
    assert body["outbox"]["backlog"] == 0 and body["outbox"]["oldest_pending_age_seconds"] is None


def test_health_is_503_naming_what_is_down(anon, monkeypatch):
    def broken():
        raise ConnectionError("refused")

    monkeypatch.setitem(health.CHECKS, "broker", broken)
    response = anon.get("/api/health")
    assert response.status_code == 503
    assert response.json()["down"] == ["broker"]
    assert response.json()["checks"]["broker"]["error"] == "ConnectionError"


@pytest.mark.redis
def test_health_checks_the_real_redis_broker(anon, settings):
    assert django_settings.REDIS_URL
    assert anon.get("/api/health").json()["checks"]["broker"]["ok"] is True
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = anon.get("/api/health")
    assert response.status_code == 503 and response.json()["down"] == ["broker"]


def test_the_schema_documents_every_endpoint_and_the_error_envelope(api):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    paths = schema["paths"]
    expected = {
        "/api/tasks": {"get", "post"},
        "/api/tasks/{id}": {"get", "put", "patch", "delete"},
        "/api/tasks/bulk": {"post"},
        "/api/providers": {"get", "post"},
        "/api/providers/{id}": {"get", "put", "patch"},
        "/api/providers/{id}/health": {"get"},
        "/api/assignees": {"get", "post"},
        "/api/assignees/{id}": {"get", "put", "patch", "delete"},
        "/api/clients": {"get", "post"},
        "/api/clients/{id}": {"get", "put", "patch", "delete"},
        "/api/health": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    assert "Error" in schema["components"]["schemas"]
    create = paths["/api/tasks"]["post"]
    assert {"201", "200", "400", "401", "422"} <= set(create["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    ordering = next(p for p in paths["/api/tasks"]["get"]["parameters"] if p["name"] == "ordering")
    assert set(ordering["schema"]["items"]["enum"]) == {
        f"{sign}{name}" for sign in ("", "-") for name in ("score", "deadline", "created_at", "priority")
    }


def test_the_schema_generates_without_warnings():
    from django.core.management import call_command

    call_command("spectacular", "--fail-on-warn", "--validate", "--file", "/dev/null")


def test_swagger_ui_is_served(api):
    assert api.get("/api/docs/").status_code == 200
