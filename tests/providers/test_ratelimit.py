"""Per-credential budgets: shared through Redis, never over the limit, urgent work first."""

import threading
import time
import uuid

import pytest

from providers_app import ratelimit
from providers_app.ratelimit import Limit, limits_for_config


def _limit(limit=10, window=60.0, scope="token"):
    return Limit(scope, uuid.uuid4().hex[:24], limit, window)


@pytest.fixture
def no_margin(settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "RATE_LIMIT_MARGIN_PERCENT": 0, "URGENT_RESERVE_PERCENT": 20}


@pytest.fixture(params=["redis", "memory"])
def backend(request, settings):
    if request.param == "redis":
        if not settings.REDIS:
            pytest.skip("needs redis: REDIS_URL is not reachable")
    else:
        settings.REDIS_URL = ""
    return request.param


def test_documented_limits_seed_the_budgets():
    clickup = limits_for_config("clickup", {"api_token": "pk_1"})
    plan = limits_for_config("clickup", {"api_token": "pk_1", "rate_limit_per_minute": 1000})
    trello = limits_for_config("trello", {"api_token": "t", "api_key": "k"})
    todoist = limits_for_config("todoist", {"api_token": "x"})
    assert [(lim.scope, lim.limit, lim.window) for lim in clickup] == [("token", 100, 60.0)]
    assert plan[0].limit == 1000
    assert [(lim.scope, lim.limit, lim.window) for lim in trello] == [("token", 100, 10.0), ("key", 300, 10.0)]
    assert [(lim.scope, lim.limit, lim.window) for lim in todoist] == [("user", 1000, 900.0)]


def test_keys_hold_a_hash_of_the_credential_never_the_credential():
    (limit,) = limits_for_config("clickup", {"api_token": "pk_SECRET_TOKEN"})
    assert "pk_SECRET_TOKEN" not in limit.key and limit.key.startswith("archangel:rl:token:")
    assert limits_for_config("clickup", {"api_token": "pk_SECRET_TOKEN"})[0].key == limit.key


def test_the_margin_and_the_urgent_reserve(settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "RATE_LIMIT_MARGIN_PERCENT": 10, "URGENT_RESERVE_PERCENT": 20}
    limit = Limit("token", "h", 100, 60.0)
    assert (limit.usable, limit.allowed(urgent=True), limit.allowed(urgent=False)) == (90, 90, 72)


@pytest.mark.redis
def test_a_spent_budget_answers_with_the_wait_until_a_unit_returns(backend, no_margin):
    limit = _limit(limit=5, window=30.0)
    assert [ratelimit.take_limits([limit], urgent=True) for _ in range(5)] == [0.0] * 5
    wait = ratelimit.take_limits([limit], urgent=True)
    assert 29.0 < wait <= 30.5 + 0.01


@pytest.mark.redis
def test_non_urgent_work_leaves_the_last_units_to_urgent_work(backend, no_margin):
    limit = _limit(limit=10)
    granted = [ratelimit.take_limits([limit]) == 0.0 for _ in range(10)]
    assert granted == [True] * 8 + [False] * 2  # 20 % reserved
    assert ratelimit.take_limits([limit], urgent=True) == 0.0
    assert ratelimit.take_limits([limit], urgent=True) == 0.0
    assert ratelimit.take_limits([limit], urgent=True) > 0


@pytest.mark.redis
def test_a_request_takes_every_limit_or_none(backend, no_margin):
    token, key = _limit(limit=3, scope="token"), _limit(limit=100, scope="key")
    for _ in range(3):
        assert ratelimit.take_limits([token, key], urgent=True) == 0.0
    assert ratelimit.take_limits([token, key], urgent=True) > 0
    assert ratelimit.usage_limits([token, key])[1].used == 3  # the refused request took nothing from the key


@pytest.mark.redis
def test_a_429_penalty_closes_the_budget_for_its_seconds(backend, no_margin):
    limit = _limit(limit=100)
    ratelimit.penalize_limits([limit], 20)
    assert 19 < ratelimit.take_limits([limit], urgent=True) <= 20
    ratelimit.penalize_limits([limit], 5)  # a shorter hint never shortens the wait
    assert ratelimit.take_limits([limit], urgent=True) > 19
    assert ratelimit.usage_limits([limit])[0].blocked_for > 19


@pytest.mark.redis
def test_usage_counts_the_window_and_the_recent_rate(backend, no_margin):
    limit = _limit(limit=100)
    for _ in range(30):
        ratelimit.take_limits([limit], urgent=True)
    (usage,) = ratelimit.usage_limits([limit])
    assert usage.used == 30
    assert usage.recent_rate > 0


@pytest.mark.redis
def test_threads_sharing_one_redis_budget_never_exceed_it(settings, no_margin):
    """Eight threads, each with its own Redis connection pool as separate processes would have."""
    import redis

    limit = _limit(limit=50, window=60.0)
    granted = []
    lock = threading.Lock()

    def worker():
        client = redis.Redis.from_url(settings.REDIS_URL)
        for _ in range(20):
            args = [uuid.uuid4().hex, 1, limit.window_ms, limit.allowed(urgent=True), ratelimit.RATE_MINUTES]
            keys = [limit.key, f"{limit.key}:blocked"]
            ok, _wait = client.register_script(ratelimit._TAKE)(keys=keys, args=args)
            with lock:
                granted.append(int(ok))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 50 and len(granted) == 160


@pytest.mark.redis
def test_two_processes_share_one_budget(settings, no_margin):
    """Separate processes (as Celery's prefork children are) take from the same Redis window."""
    import multiprocessing

    limit = _limit(limit=40, window=60.0)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()

    def worker():
        ratelimit._scripts.clear()
        results.put(sum(ratelimit.take_limits([limit], urgent=True) == 0.0 for _ in range(30)))

    procs = [ctx.Process(target=worker) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    assert results.get(timeout=5) + results.get(timeout=5) == 40


def test_the_in_process_fallback_is_used_when_redis_is_unreachable(settings, no_margin):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens there
    from providers_app.redis_client import _client

    _client.cache_clear()
    limit = _limit(limit=2)
    started = time.monotonic()
    results = [ratelimit.take_limits([limit], urgent=True) for _ in range(3)]
    assert results[:2] == [0.0, 0.0] and results[2] > 0
    assert time.monotonic() - started < 10
