import pytest
from rest_framework.authtoken.models import Token

from tests.api.test_tasks_api import assert_envelope
from tests.clients import token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(user):
    return Token.objects.create(user=user)


def test_a_deleted_token_stops_working_at_once_even_when_cached(token):
    client = token_client(token.key)
    assert client.get("/api/tasks").status_code == 200  # now cached
    token.delete()
    assert_envelope(client.get("/api/tasks"), 401, "authentication_failed")


def test_a_deactivated_user_is_refused_at_once(token, user):
    client = token_client(token.key)
    assert client.get("/api/tasks").status_code == 200
    user.is_active = False
    user.save()
    assert_envelope(client.get("/api/tasks"), 401, "authentication_failed")


def test_the_cache_never_holds_the_password_hash(token, user):
    from django.core.cache import cache

    from archangel.auth import _cache_key

    token_client(token.key).get("/api/tasks")
    entry = cache.get(_cache_key(token.key))
    assert entry is not None and user.password not in [str(v) for v in entry.values()]


def test_request_user_is_the_token_owner(token, user):
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from archangel.auth import CachedTokenAuthentication

    request = Request(APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Token {token.key}"))
    for _ in range(2):  # uncached, then cached
        found, auth = CachedTokenAuthentication().authenticate(request)
        assert found.pk == user.pk and found.username == "alice" and auth.key == token.key


def test_a_stale_entry_cached_during_the_change_is_dropped_when_it_commits(
    token, user, django_capture_on_commit_callbacks
):
    from django.core.cache import cache
    from django.db import transaction

    from archangel.auth import _cache_key

    client = token_client(token.key)
    assert client.get("/api/tasks").status_code == 200
    stale = cache.get(_cache_key(token.key))
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        user.is_active = False
        user.save()
        cache.set(_cache_key(token.key), stale, 60)  # a racing request re-caching the old row
    assert_envelope(client.get("/api/tasks"), 401, "authentication_failed")


def test_deleting_the_operators_group_takes_the_role_away_at_once(db):
    import io

    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from tests.factories import PROVIDER_CONFIGS

    out = io.StringIO()
    call_command("create_api_token", "ops", "--role", "operator", stdout=out)
    client = token_client(out.getvalue().strip())
    body = {"name": "p", "type": "todoist", "config": PROVIDER_CONFIGS["todoist"]}
    assert client.post("/api/providers", body).status_code == 201
    Group.objects.get(name="operators").delete()
    assert_envelope(client.post("/api/providers", {**body, "name": "q"}), 403, "permission_denied")


@pytest.mark.parametrize("key", ["a\x00b", "x" * 41, "tab\there", "\x7f" * 40])
def test_a_key_no_token_can_have_is_a_401_before_any_lookup(key, django_assert_num_queries):
    client = token_client(key)
    with django_assert_num_queries(0):
        assert_envelope(client.get("/api/tasks"), 401, "authentication_failed")
