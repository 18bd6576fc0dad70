"""Per-credential request budgets, shared by every worker process through Redis.

A provider limits requests per credential (docs/provider-apis.md): ClickUp 100 per
minute per token (more on higher plans: config ``rate_limit_per_minute``, §1.6),
Trello 100 per 10 s per token **and** 300 per 10 s per API key (§2.6), Todoist
1,000 per 15 minutes per user (§3.6). Each (credential, scope) is a sliding log in
a Redis sorted set, checked and appended by one Lua script, so any number of
workers on any number of hosts never send more than the limit in *any* window of
that length, not only in aligned ones (a fixed-window counter allows twice the
limit across a window boundary). Timestamps come from Redis's own clock
(``TIME``), so the workers' clocks do not matter; a safety margin
(``PROVIDER_RATE_LIMIT_MARGIN_PERCENT`` of the limit, plus half a second on the
window) absorbs the provider counting a request a little later than we did.

When a budget is spent the worker does not sleep: :func:`take` returns the seconds
until a unit returns, and the outbox event waits (docs/reliability.md). A 429
pushes the window's reopening further with :func:`penalize`. Urgent work goes
first when budget is scarce: other work may not take the last
``PROVIDER_URGENT_RESERVE_PERCENT`` of a window.

Keys hold a hash of the credential, never the credential. Without Redis
(embedded mode, or Redis unreachable) the same algorithm runs in process memory.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from providers_app.config import CLICKUP, TODOIST, TRELLO
from providers_app.redis_client import get_redis

logger = logging.getLogger(__name__)

PREFIX = "archangel:rl"
SKEW_SECONDS = 0.5
# Requests per minute are counted for this many minutes (the "recent rate" of predictions).
RATE_MINUTES = 5


@dataclass(frozen=True)
class Limit:
    """One documented limit of one credential."""

    scope: str  # "token", "key" or "user"
    credential: str  # a hash of the credential, never the credential itself
    limit: int  # requests allowed per window, as the provider documents (or config overrides) it
    window: float  # seconds

    @property
    def key(self) -> str:
        return f"{PREFIX}:{self.scope}:{self.credential}"

    @property
    def usable(self) -> int:
        """The requests we allow ourselves: the limit less the safety margin."""
        margin = settings.PROVIDERS["RATE_LIMIT_MARGIN_PERCENT"] / 100
        return max(1, math.floor(self.limit * (1 - margin)))

    def allowed(self, *, urgent: bool) -> int:
        if urgent:
            return self.usable
        reserve = settings.PROVIDERS["URGENT_RESERVE_PERCENT"] / 100
        return max(1, math.floor(self.usable * (1 - reserve)))

    @property
    def window_ms(self) -> int:
        return int((self.window + SKEW_SECONDS) * 1000)


def _hash(provider_type: str, scope: str, secret: Any) -> str:
    return hashlib.sha256(f"{provider_type}:{scope}:{secret}".encode()).hexdigest()[:24]


def limits_for_config(provider_type: str, config: dict[str, Any]) -> list[Limit]:
    """The documented limits of a provider account's credentials (config overrides by plan)."""
    if provider_type == CLICKUP:
        per_minute = config.get("rate_limit_per_minute") or 100
        return [Limit("token", _hash(CLICKUP, "token", config.get("api_token")), per_minute, 60.0)]
    if provider_type == TRELLO:
        return [
            Limit(
                "token", _hash(TRELLO, "token", config.get("api_token")), config.get("rate_limit_per_10s") or 100, 10.0
            ),
            Limit(
                "key", _hash(TRELLO, "key", config.get("api_key")), config.get("key_rate_limit_per_10s") or 300, 10.0
            ),
        ]
    if provider_type == TODOIST:
        per_15min = config.get("rate_limit_per_15min") or 1000
        return [Limit("user", _hash(TODOIST, "user", config.get("api_token")), per_15min, 900.0)]
    raise ValueError(f"unknown provider type {provider_type!r}")


def limits_for(provider) -> list[Limit]:
    from providers_app.adapters import get_adapter

    # The adapter holds the decrypted config, cached per process and configuration.
    return limits_for_config(provider.type, get_adapter(provider).config)


# --- Redis -----------------------------------------------------------------------------------------
# KEYS: n sliding logs, then their n penalty keys, then optionally a breaker's state key.
# ARGV: member, n, then (window_ms, allowed) per log, then the minutes of usage counters.
# Returns {granted (0/1), wait_ms}, or {2, 0} when the breaker key holds a state other than
# closed (the caller then asks the breaker). All or nothing: a request takes a unit of every
# limit or none. Checking the breaker here saves the hot path a round trip.
_TAKE = """
local n = tonumber(ARGV[2])
if #KEYS > 2 * n then
  local state = redis.call('GET', KEYS[2 * n + 1])
  if state and state ~= 'closed' then return {2, 0} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
for i = 1, n do
  local blocked = tonumber(redis.call('GET', KEYS[n + i]) or '0')
  if blocked > now and blocked - now > wait then wait = blocked - now end
end
if wait > 0 then return {0, wait} end
for i = 1, n do
  local window = tonumber(ARGV[1 + 2 * i])
  local allowed = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= allowed then
    local entry = redis.call('ZRANGE', KEYS[i], count - allowed, count - allowed, 'WITHSCORES')
    local w = tonumber(entry[2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return {0, math.max(1, wait)} end
local minute = math.floor(now / 60000)
for i = 1, n do
  local window = tonumber(ARGV[1 + 2 * i])
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], window + 1000)
  local counter = KEYS[i] .. ':m:' .. minute
  redis.call('INCR', counter)
  redis.call('EXPIRE', counter, 60 * (tonumber(ARGV[3 + 2 * n]) + 2))
end
return {1, 0}
"""

# KEYS: penalty keys. ARGV: seconds. Pushes each key's "blocked until" to now + seconds (never earlier).
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local target = now + math.floor(tonumber(ARGV[1]) * 1000)
for i = 1, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if target > current then redis.call('SET', KEYS[i], target, 'PX', target - now + 1000) end
end
return target
"""

# KEYS: n sliding logs, n penalty keys. ARGV: n, window_ms per log, minutes. Returns per log:
# used, blocked_ms, then the counts of the last `minutes` minute buckets, and Redis's now (ms).
_USAGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local minutes = tonumber(ARGV[2 + n])
local minute = math.floor(now / 60000)
local out = {}
for i = 1, n do
  local window = tonumber(ARGV[1 + i])
  local used = redis.call('ZCOUNT', KEYS[i], now - window, '+inf')
  local blocked = tonumber(redis.call('GET', KEYS[n + i]) or '0') - now
  if blocked < 0 then blocked = 0 end
  table.insert(out, used)
  table.insert(out, blocked)
  for m = 0, minutes - 1 do
    table.insert(out, tonumber(redis.call('GET', KEYS[i] .. ':m:' .. (minute - m)) or '0'))
  end
end
table.insert(out, now)
return out
"""

_scripts: dict[tuple[int, str], Any] = {}


def _script(client, source: str):
    key = (id(client), source)
    if key not in _scripts:
        _scripts[key] = client.register_script(source)
    return _scripts[key]


# --- Process memory (embedded mode, or Redis unreachable) -----------------------------------------
class _MemoryBudgets:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logs: dict[str, deque[float]] = {}
        self.blocked: dict[str, float] = {}
        self.minutes: dict[tuple[str, int], int] = {}

    def take(self, limits: list[Limit], *, urgent: bool) -> float:
        now = time.time()
        with self.lock:
            wait = max((self.blocked.get(limit.key, 0.0) - now for limit in limits), default=0.0)
            if wait > 0:
                return wait
            for limit in limits:
                log = self.logs.setdefault(limit.key, deque())
                window = limit.window_ms / 1000
                while log and log[0] <= now - window:
                    log.popleft()
                allowed = limit.allowed(urgent=urgent)
                if len(log) >= allowed:
                    wait = max(wait, log[len(log) - allowed] + window - now)
            if wait > 0:
                return max(wait, 0.001)
            minute = int(now // 60)
            for limit in limits:
                self.logs[limit.key].append(now)
                self.minutes[(limit.key, minute)] = self.minutes.get((limit.key, minute), 0) + 1
            for stale in [k for k in self.minutes if k[1] < minute - RATE_MINUTES - 1]:
                del self.minutes[stale]
            return 0.0

    def penalize(self, limits: list[Limit], seconds: float) -> None:
        with self.lock:
            target = time.time() + seconds
            for limit in limits:
                self.blocked[limit.key] = max(self.blocked.get(limit.key, 0.0), target)

    def usage(self, limits: list[Limit]) -> tuple[list[tuple[int, float, list[int]]], float]:
        now = time.time()
        minute = int(now // 60)
        with self.lock:
            rows = []
            for limit in limits:
                log = self.logs.get(limit.key, deque())
                used = sum(1 for stamp in log if stamp > now - limit.window_ms / 1000)
                blocked = max(0.0, self.blocked.get(limit.key, 0.0) - now)
                counts = [self.minutes.get((limit.key, minute - m), 0) for m in range(RATE_MINUTES)]
                rows.append((used, blocked, counts))
            return rows, now


_memory = _MemoryBudgets()
_last_redis_warning = 0.0


def _warn_redis(exc: Exception) -> None:
    global _last_redis_warning
    if time.monotonic() - _last_redis_warning > 60:
        _last_redis_warning = time.monotonic()
        logger.warning("rate budgets: Redis unreachable (%s); counting in this process only", type(exc).__name__)


def _redis_or_none():
    return get_redis()


# --- The API the gateway and the predictions use ---------------------------------------------------
def take_limits(limits: list[Limit], *, urgent: bool = False, unless_breaker: str | None = None) -> float | None:
    """0.0 and one unit taken from every limit, or the seconds until one is free (nothing taken).

    With ``unless_breaker`` (a breaker's Redis state key) nothing is taken and None is returned
    when that breaker is not closed; without Redis the breaker is not looked at.
    """
    client = _redis_or_none()
    if client is not None:
        import redis

        args: list[Any] = [uuid.uuid4().hex, len(limits)]
        for limit in limits:
            args += [limit.window_ms, limit.allowed(urgent=urgent)]
        args.append(RATE_MINUTES)
        keys = [limit.key for limit in limits] + [f"{limit.key}:blocked" for limit in limits]
        if unless_breaker:
            keys.append(unless_breaker)
        try:
            granted, wait_ms = _script(client, _TAKE)(keys=keys, args=args)
            if int(granted) == 2:
                return None
            return 0.0 if int(granted) else int(wait_ms) / 1000
        except redis.RedisError as exc:
            _warn_redis(exc)
    return _memory.take(limits, urgent=urgent)


def take(provider, *, urgent: bool = False, unless_breaker: str | None = None) -> float | None:
    return take_limits(limits_for(provider), urgent=urgent, unless_breaker=unless_breaker)


def penalize_limits(limits: list[Limit], seconds: float) -> None:
    if not limits or seconds is None or seconds <= 0:
        return
    client = _redis_or_none()
    if client is not None:
        import redis

        try:
            _script(client, _PENALIZE)(keys=[f"{limit.key}:blocked" for limit in limits], args=[float(seconds)])
            return
        except redis.RedisError as exc:
            _warn_redis(exc)
    _memory.penalize(limits, seconds)


def penalize(provider, seconds: float, *, scope: str | None = None) -> None:
    """A 429 asked us to wait ``seconds``: no request of this credential (or only ``scope``) before then."""
    limits = [limit for limit in limits_for(provider) if scope is None or limit.scope == scope]
    penalize_limits(limits, seconds)


@dataclass(frozen=True)
class Usage:
    limit: Limit
    used: int  # requests in the current window
    blocked_for: float  # seconds a 429 still keeps this budget closed
    recent_rate: float  # requests per second over the last RATE_MINUTES minutes


def usage_limits(limits: list[Limit]) -> list[Usage]:
    client = _redis_or_none()
    rows = None
    if client is not None:
        import redis

        keys = [limit.key for limit in limits] + [f"{limit.key}:blocked" for limit in limits]
        args = [len(limits), *[limit.window_ms for limit in limits], RATE_MINUTES]
        try:
            raw = _script(client, _USAGE)(keys=keys, args=args)
            now = int(raw[-1]) / 1000
            step = 2 + RATE_MINUTES
            rows = [
                (
                    int(raw[i * step]),
                    int(raw[i * step + 1]) / 1000,
                    [int(x) for x in raw[i * step + 2 : (i + 1) * step]],
                )
                for i in range(len(limits))
            ]
        except redis.RedisError as exc:
            _warn_redis(exc)
    if rows is None:
        rows, now = _memory.usage(limits)
    # The current minute is partly over: rate = requests / seconds actually covered.
    covered = (RATE_MINUTES - 1) * 60 + (now % 60)
    return [
        Usage(limit=limit, used=used, blocked_for=blocked, recent_rate=sum(counts) / covered if covered else 0.0)
        for limit, (used, blocked, counts) in zip(limits, rows, strict=True)
    ]


def usage(provider) -> list[Usage]:
    return usage_limits(limits_for(provider))


def reset_memory() -> None:
    """Tests only: forget the in-process budgets."""
    global _memory
    _memory = _MemoryBudgets()
