"""Per-token request budget: a fixed-window counter in the shared cache.

DRF's SimpleRateThrottle keeps every request's timestamp in one cache value and
rewrites it on each request, which grows with the rate; a counter per window is
one atomic ``incr``. On Redis the count is one round trip (a two-line script that
increments and, on the window's first request, sets the expiry): Django's ``add`` and
``incr`` took three (``SET NX``, ``EXISTS``, ``INCRBY``) on every API request.
"""

import functools
import hashlib
import logging
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

log = logging.getLogger(__name__)

# KEYS[1] = the window's counter, ARGV[1] = its lifetime in seconds.
_COUNT_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""
_scripts: dict[int, object] = {}


def count_in_window(key: str, ttl: int) -> int:
    """Add one to ``key``'s counter (created with ``ttl`` seconds to live) and return it."""
    backend = getattr(cache, "_cache", None)
    if hasattr(backend, "get_client") and hasattr(cache, "make_and_validate_key"):
        client = backend.get_client(key, write=True)
        script = _scripts.get(id(client))
        if script is None:
            script = _scripts[id(client)] = client.register_script(_COUNT_SCRIPT)
        return int(script(keys=[cache.make_and_validate_key(key)], args=[ttl]))
    # Other caches (local memory in tests, files in development): add, then incr.
    cache.add(key, 0, ttl)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, ttl)
        return 1


@functools.lru_cache(maxsize=16)
def parse_rate(rate: str) -> tuple[int, int]:
    """ "600/min" -> (600, 60). Units: s, sec, m, min, h, hour, d, day."""
    count, _, unit = rate.partition("/")
    seconds = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}[unit]
    return int(count), seconds


def window_key(ident: str, now: float, window: int) -> str:
    """The counter of ``ident``'s requests in the window of ``window`` seconds holding ``now``."""
    return _window_key(ident, int(now // window))


@functools.lru_cache(maxsize=4096)
def _window_key(ident: str, index: int) -> str:
    # Asked twice per request (token authentication, then the throttle) and by every request of
    # the same user in the same window: hashed once.
    return "throttle:" + hashlib.sha256(f"{ident}:{index}".encode()).hexdigest()[:32]


def user_window_key(user_id, now: float) -> tuple[str, int] | None:
    """(counter key, its lifetime) of a user's current window, or None when nothing is throttled:
    what token authentication needs to count the request in its own round trip (archangel.auth)."""
    rate = settings.ARCHANGEL.get("THROTTLE_RATE")
    if not rate:
        return None
    window = parse_rate(rate)[1]
    return window_key(f"user:{user_id}", now, window), window + 1


# Set on the request by token authentication when it counted the request already.
COUNTED = "_archangel_throttle_counted"


class TokenRateThrottle(BaseThrottle):
    """Limits each authenticated user (each token's owner) to ``ARCHANGEL["THROTTLE_RATE"]``;
    anonymous requests (health, signed webhooks) are limited per client address."""

    def allow_request(self, request, view):
        rate = settings.ARCHANGEL.get("THROTTLE_RATE")
        if not rate:
            return True
        self.limit, self.window = parse_rate(rate)
        ident = f"user:{request.user.pk}" if request.user and request.user.is_authenticated else self.get_ident(request)
        now = time.time()
        self.reset_at = (int(now // self.window) + 1) * self.window
        key = window_key(ident, now, self.window)
        self.now = now
        counted = getattr(request, COUNTED, None)
        if counted is not None and counted[0] == key:
            return counted[1] <= self.limit  # counted by authentication, in its round trip
        try:
            count = count_in_window(key, self.window + 1)
        except Exception:  # noqa: BLE001 - fail open: a cache outage must not refuse every request
            log.warning("throttle cache unavailable; request allowed")
            return True
        return count <= self.limit

    def wait(self):
        return max(1.0, self.reset_at - self.now)
