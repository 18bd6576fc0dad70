import uuid

import pytest
from django.contrib.auth.models import Group

from providers_app.models import Provider
from tasks_app.models import Task
from tests.api.test_tasks_api import assert_envelope
from tests.factories import PROVIDER_CONFIGS

pytestmark = pytest.mark.django_db

NEW_PROVIDER = {"name": "ops", "type": "todoist", "config": PROVIDER_CONFIGS["todoist"]}


def test_a_read_only_token_reads_but_never_writes(reader_api):
    assert reader_api.get("/api/tasks").status_code == 200
    assert reader_api.get("/api/providers").status_code == 200
    for method, path, body in [
        ("post", "/api/tasks", {"title": "x"}),
        ("post", "/api/tasks/bulk", {"tasks": [{"title": "y"}]}),
        ("post", "/api/clients", {"name": "c"}),
        ("post", "/api/providers", NEW_PROVIDER),
    ]:
        assert_envelope(getattr(reader_api, method)(path, body), 403, "permission_denied")
    assert Task.objects.count() == 0 and Provider.objects.count() == 0


def test_a_writer_manages_tasks_but_not_providers(api):
    assert api.post("/api/tasks", {"title": "mine"}).status_code == 201
    error = assert_envelope(api.post("/api/providers", NEW_PROVIDER), 403, "permission_denied")
    assert error["message"] == "Only operators may do this."
    assert Provider.objects.count() == 0


def test_an_operator_changes_providers(operator_api):
    assert operator_api.post("/api/providers", NEW_PROVIDER).status_code == 201


def test_changing_a_users_groups_changes_the_cached_role_at_once(api, user):
    assert api.post("/api/tasks", {"title": "before"}).status_code == 201
    user.groups.add(Group.objects.create(name="read-only"))
    assert_envelope(api.post("/api/tasks", {"title": "after"}), 403, "permission_denied")
    user.groups.clear()
    assert api.post("/api/tasks", {"title": "again"}).status_code == 201


def test_staff_users_are_operators(api, user):
    user.is_staff = True
    user.save()
    assert api.post("/api/providers", NEW_PROVIDER).status_code == 201


def test_each_token_has_a_request_budget(api, operator_api, settings, monkeypatch):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "THROTTLE_RATE": "3/min"}
    monkeypatch.setattr("archangel.throttling.time.time", lambda: 1_800_000_010.0)  # mid-window, never at its edge
    for _ in range(3):
        assert api.get("/api/tasks").status_code == 200
    response = api.get("/api/tasks")
    assert_envelope(response, 429, "throttled")
    assert int(response["Retry-After"]) == 50
    assert operator_api.get("/api/tasks").status_code == 200  # another token's budget is its own


@pytest.mark.redis
def test_on_redis_the_window_counter_is_one_script_that_sets_its_expiry(settings):
    from django.core.cache import cache

    from archangel.throttling import count_in_window

    settings.CACHES = {"default": {"BACKEND": "archangel.cache.RedisCache", "LOCATION": settings.REDIS_URL}}
    key = f"throttle:test:{uuid.uuid4().hex}"
    try:
        assert [count_in_window(key, 30) for _ in range(3)] == [1, 2, 3]
        client = cache._cache.get_client(key)
        assert 0 < client.ttl(cache.make_and_validate_key(key)) <= 30
    finally:
        cache.delete(key)


def test_an_oversized_body_is_a_413_before_parsing_and_writes_nothing(api, settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "MAX_BODY_BYTES": 2048}
    response = api.post("/api/tasks", {"title": "x", "description": "y" * 5000})
    assert_envelope(response, 413, "too_large")
    assert Task.objects.count() == 0


def test_create_api_token_sets_the_role(db):
    import io

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from archangel.permissions import role_from_db

    for role in ("operator", "read-only", "writer"):
        call_command("create_api_token", "zed", "--role", role, stdout=io.StringIO())
        assert role_from_db(get_user_model().objects.get(username="zed")) == role


def test_the_printed_token_is_the_one_the_api_accepts_for_its_role(db):
    import io

    from django.core.management import call_command

    from tests.clients import token_client

    def token(name, *args):
        out = io.StringIO()
        call_command("create_api_token", name, *args, stdout=out)
        return out.getvalue().strip()

    writer = token_client(token("wendy"))
    assert writer.post("/api/tasks", {"title": "by token"}).status_code == 201
    assert token("wendy") == token("wendy", "--role", "writer")  # a rerun shows the same token
    reader = token_client(token("rob", "--role", "read-only"))
    assert reader.get("/api/tasks").status_code == 200
    assert_envelope(reader.post("/api/tasks", {"title": "no"}), 403, "permission_denied")
    assert_envelope(token_client("0" * 40).get("/api/tasks"), 401, "authentication_failed")
    # Django REST framework's own command works too, for a user that exists (a writer by default).
    out = io.StringIO()
    call_command("drf_create_token", "rob", stdout=out)
    assert token("rob", "--role", "read-only") in out.getvalue()
