"""providers_app/metadata.py: one read per account and kind until the TTL or an invalidation,
scoped to the container it describes, and never a delivery failure when the cache is down."""

import threading
import time

import pytest
from django.core.cache import cache

from providers_app import metadata


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def counter(value):
    calls = []

    def fetch():
        calls.append(1)
        return value

    return fetch, calls


def test_it_reads_once_and_serves_the_cache_until_invalidated():
    fetch, calls = counter(["to do", "complete"])
    for _ in range(50):
        assert metadata.get("acct", "statuses", "list-1", fetch) == ["to do", "complete"]
    assert len(calls) == 1
    metadata.invalidate("acct")
    metadata.get("acct", "statuses", "list-1", fetch)
    assert len(calls) == 2


def test_another_container_is_never_served_the_old_ones_metadata():
    fetch, calls = counter(["a"])
    metadata.get("acct", "lists", "board-1", fetch)
    metadata.get("acct", "lists", "board-2", fetch)
    assert len(calls) == 2


def test_it_expires_after_the_ttl(settings):
    settings.PROVIDER_METADATA_TTL_SECONDS = 1
    fetch, calls = counter(["a"])
    metadata.get("acct", "labels", "b", fetch)
    time.sleep(1.1)
    metadata.get("acct", "labels", "b", fetch)
    assert len(calls) == 2


def test_threads_that_miss_together_share_one_read():
    started = threading.Event()
    calls = []

    def slow():
        calls.append(1)
        started.wait(0.2)
        return ["x"]

    threads = [threading.Thread(target=metadata.get, args=("acct", "users", "p", slow)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_a_cache_that_fails_costs_a_read_never_the_delivery(monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(cache, "get", broken)
    monkeypatch.setattr(cache, "set", broken)
    monkeypatch.setattr(cache, "delete_many", broken)
    fetch, calls = counter(["a"])
    assert metadata.get("acct", "projects", "account", fetch) == ["a"]
    metadata.invalidate("acct")
    assert len(calls) == 1
