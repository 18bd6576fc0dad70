"""The Redis client the rate budgets and the circuit breakers share (None in embedded mode).

Bytes in, bytes out (``decode_responses=False``): pybreaker's ``CircuitRedisStorage``
decodes values itself and breaks on a decoding client (docs/reliability.md).
Short timeouts: a Redis outage must cost a delivery a second, never hang it.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=4)
def _client(url: str):
    import redis

    return redis.Redis.from_url(
        url, decode_responses=False, socket_connect_timeout=1, socket_timeout=1, health_check_interval=30
    )


def get_redis():
    """The shared client, or None when ``REDIS_URL`` is empty (one process holds all state then)."""
    url = settings.REDIS_URL
    return _client(url) if url else None
