"""Each process keeps the token entries it has used (``archangel.auth._local``), checked against
the shared generation on every use: what a revocation anywhere must still do at once, what the
copy saves, and the bound on a change that sends no signal."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.authtoken.models import Token

from archangel import auth
from tests.api.test_tasks_api import assert_envelope
from tests.clients import token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(user):
    return Token.objects.create(user=user)


def _entry_reads(monkeypatch, key):
    """How often the shared cache is asked for ``key``'s entry."""
    reads = []
    real_get = cache.get

    def get(name, *args, **kwargs):
        if name == auth._cache_key(key):
            reads.append(name)
        return real_get(name, *args, **kwargs)

    monkeypatch.setattr(cache, "get", get)
    return reads


def test_a_token_used_before_is_served_from_the_processs_copy(token, monkeypatch):
    client = token_client(token.key)
    assert client.get("/api/tasks").status_code == 200
    reads = _entry_reads(monkeypatch, token.key)
    for _ in range(3):
        assert client.get("/api/tasks").status_code == 200
    assert reads == []
    assert auth._local[token.key][0]["id"] == token.user_id


def test_a_revocation_in_another_process_reaches_this_processs_copy_at_once(token, user):
    client = token_client(token.key)
    assert client.get("/api/tasks").status_code == 200
    # What another process's revocation leaves here: this process's copy untouched, the shared
    # entry gone and the generation moved (no signal ran in this process).
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert token.key in auth._local
    auth._forget([auth._cache_key(token.key)])
    assert_envelope(client.get("/api/tasks"), 401, "authentication_failed")
    assert token.key not in auth._local


def test_a_change_that_sends_no_signal_is_seen_within_the_two_ttls(token, user, monkeypatch):
    client = token_client(token.key)
    assert client.get("/api/tasks").status_code == 200
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)  # no signal, no generation
    assert client.get("/api/tasks").status_code == 200  # the copies do not know yet
    cache.delete(auth._cache_key(token.key))  # the shared entry's TTL_SECONDS have passed
    assert client.get("/api/tasks").status_code == 200  # this process's copy has not
    later = auth.time.monotonic() + auth.LOCAL_TTL_SECONDS + 1
    monkeypatch.setattr(auth.time, "monotonic", lambda: later)
    assert_envelope(client.get("/api/tasks"), 401, "authentication_failed")


def test_an_unreachable_cache_keeps_no_copy(token, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "get", down)
    monkeypatch.setattr(cache, "set", down)
    assert token_client(token.key).get("/api/tasks").status_code == 200  # from the database
    assert token.key not in auth._local  # no generation to check a copy against


@pytest.mark.redis
def test_on_redis_a_known_token_costs_one_round_trip_with_the_throttle(token, settings, monkeypatch, redis_commands):
    settings.CACHES = {
        "default": {
            "BACKEND": "archangel.cache.RedisCache",
            "LOCATION": settings.REDIS_URL,
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        }
    }
    settings.ARCHANGEL = {**settings.ARCHANGEL, "THROTTLE_RATE": "4/min"}
    monkeypatch.setattr("archangel.throttling.time.time", lambda: 1_800_000_010.0)  # mid-window
    monkeypatch.setattr("archangel.auth.time.time", lambda: 1_800_000_010.0)
    commands = redis_commands
    client = token_client(token.key)
    assert client.get("/api/tasks").status_code == 200  # fetched: generation, entry, set, count
    # The first check loads the script if this Redis has not seen it yet (a few more commands).
    assert client.get("/api/tasks").status_code == 200
    commands.clear()
    for _ in range(2):
        assert client.get("/api/tasks").status_code == 200
    assert commands == ["EVALSHA"] * 2  # the generation and the throttle's count, together
    assert_envelope(client.get("/api/tasks"), 429, "throttled")  # the fifth request of 4/min
    token.delete()
    assert_envelope(client.get("/api/tasks"), 401, "authentication_failed")
