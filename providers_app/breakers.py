"""One circuit breaker per provider, its state shared by every process through Redis.

pybreaker's ``CircuitBreaker`` with ``CircuitRedisStorage`` (namespace
``archangel:breaker:<provider id>``; a Redis client without ``decode_responses``,
docs/reliability.md) when ``REDIS_URL`` is set, in-memory storage otherwise.
``PROVIDER_BREAKER_FAIL_MAX`` consecutive failures open it; after
``PROVIDER_BREAKER_RESET_SECONDS`` one probe at a time is let through (half-open),
and its result closes or reopens the breaker.

Only failures that say the provider is unwell count: errors whose
``trips_breaker`` is set (network, timeouts, 5xx). A 404, a 429 or a validation
error proves the provider answered (issue 3 §2), so they are excluded.

The gateway does not run the HTTP call inside ``breaker.call()``: pybreaker holds
a lock for the whole call, which would serialize every delivery of a process
through one provider (docs/reliability.md). It asks :func:`wait_seconds` before
sending and reports the outcome with :func:`record_success` / :func:`record_failure`,
each a trivial call through the breaker that applies pybreaker's own rules.

State changes are mirrored into ``Provider.health_status`` (open → down,
half-open → degraded, closed → active; ``disabled`` is an operator's decision and
is never overridden) and into the ``archangel_breaker_state`` metric.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from archangel.metrics import set_breaker_state
from providers_app.adapters.base import ProviderError
from providers_app.redis_client import get_redis

logger = logging.getLogger(__name__)

PREFIX = "archangel:breaker"
# pybreaker's state names. pybreaker itself is imported only when a breaker is built: it imports
# redis, which imports OpenTelemetry when that is installed, and loading the app must not
# (tests/test_tracing.py), since routing imports this module to read breaker states.
OPEN, HALF_OPEN, CLOSED = "open", "half-open", "closed"
# After a Redis error, a process keeps a private in-memory breaker for
# settings.PROVIDERS["BREAKER_REDIS_RETRY_SECONDS"] (30 s) before trying Redis again.
LAST_ERROR_TTL = 7 * 24 * 3600


def _namespace(provider_id) -> str:
    return f"{PREFIX}:{provider_id}"


def state_key(provider_id) -> str:
    # CircuitRedisStorage's layout: "<namespace>:pybreaker:<field>".
    return f"{_namespace(provider_id)}:pybreaker:state"


def _does_not_trip(exc: BaseException) -> bool:
    return not (isinstance(exc, ProviderError) and exc.trips_breaker)


def health_of(state: str) -> str:
    """The provider health a breaker state means: open → down, half-open → degraded, closed → active."""
    from providers_app.models import Provider

    return {OPEN: Provider.Health.DOWN, HALF_OPEN: Provider.Health.DEGRADED}.get(state, Provider.Health.ACTIVE)


def mirror_state(provider_id, provider_name: str, state: str) -> None:
    """Write a breaker state into the provider row and the metric; an operator's ``disabled`` stays."""
    from providers_app.health import set_health
    from providers_app.models import Provider

    set_breaker_state(provider_name, state)
    health = health_of(state)
    try:
        changing = Provider.objects.filter(pk=provider_id).exclude(health_status__in=[Provider.Health.DISABLED, health])
        set_health(changing, health)
    except Exception:
        logger.exception("could not mirror breaker state %s of provider %s", state, provider_id)


def _mirror_listener(provider_id, name: str):
    import pybreaker

    class Mirror(pybreaker.CircuitBreakerListener):
        def state_change(self, cb, old_state, new_state) -> None:
            logger.info("breaker of provider %s: %s -> %s", name, getattr(old_state, "name", None), new_state.name)
            mirror_state(provider_id, name, new_state.name)

    return Mirror()


_breakers: dict[str, tuple[Any, bool, float]] = {}
_lock = threading.Lock()
_memory_probes: dict[str, float] = {}
_memory_errors: dict[str, dict[str, Any]] = {}


def _build(provider_id, name: str):
    import pybreaker

    storage, shared = None, False
    client = get_redis()
    if client is not None:
        import redis

        try:
            storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=_namespace(provider_id))
            shared = True
        except redis.RedisError as exc:
            logger.warning(
                "breaker of provider %s: Redis unreachable (%s); in memory for now", name, type(exc).__name__
            )
    breaker = pybreaker.CircuitBreaker(
        fail_max=settings.PROVIDERS["BREAKER_FAIL_MAX"],
        reset_timeout=settings.PROVIDERS["BREAKER_RESET_SECONDS"],
        exclude=[_does_not_trip],
        listeners=[_mirror_listener(provider_id, name)],
        state_storage=storage,
        name=str(provider_id),
        # A failure that trips the breaker re-raises the provider's own error, not a CircuitBreakerError.
        throw_new_error_on_trip=False,
    )
    return breaker, shared


def breaker_for(provider):
    key = str(provider.pk)
    entry = _breakers.get(key)
    wanted_shared = get_redis() is not None
    if entry is not None:
        breaker, shared, built = entry
        retry = settings.PROVIDERS.get("BREAKER_REDIS_RETRY_SECONDS", 30)
        if shared == wanted_shared or time.monotonic() - built < retry:
            return breaker
    with _lock:
        breaker, shared = _build(provider.pk, provider.name)
        _breakers[key] = (breaker, shared, time.monotonic())
    return breaker


def shared(provider) -> bool:
    """Whether this provider's breaker keeps its state in Redis (so the budget script may read it)."""
    breaker_for(provider)
    entry = _breakers.get(str(provider.pk))
    return bool(entry and entry[1])


def observed_closed(provider) -> None:
    """The budget script saw the breaker closed: keep the metric fresh without a round trip."""
    set_breaker_state(provider.name, CLOSED)


def _opened_at(breaker) -> float | None:
    opened = breaker._state_storage.opened_at
    return opened.timestamp() if opened else None


def state(provider) -> dict[str, Any]:
    """The breaker's state, the consecutive failures and when it lets a probe through."""
    breaker = breaker_for(provider)
    name = breaker.current_state
    retry_in = None
    if name == OPEN:
        opened = _opened_at(breaker)
        retry_in = max(0.0, opened + breaker.reset_timeout - time.time()) if opened else 0.0
    set_breaker_state(provider.name, name)
    return {"state": name, "fail_counter": breaker.fail_counter, "retry_in_seconds": retry_in}


def _take_probe(provider, breaker) -> bool:
    """At most one probe at a time across processes while the breaker is (half-)open."""
    ttl = settings.PROVIDERS["CONNECT_TIMEOUT"] + settings.PROVIDERS["READ_TIMEOUT"] + 5
    client = get_redis()
    if client is not None:
        import redis

        try:
            return bool(client.set(f"{_namespace(provider.pk)}:probe", b"1", nx=True, ex=ttl))
        except redis.RedisError:
            pass
    now = time.monotonic()
    with _lock:
        if _memory_probes.get(str(provider.pk), 0.0) > now:
            return False
        _memory_probes[str(provider.pk)] = now + ttl
        return True


def release_probe(provider) -> None:
    """Give back a probe slot taken by :func:`wait_seconds` (its result is in, or it was not sent)."""
    _memory_probes.pop(str(provider.pk), None)
    client = get_redis()
    if client is not None:
        import redis

        with contextlib.suppress(redis.RedisError):
            client.delete(f"{_namespace(provider.pk)}:probe")


def wait_seconds(provider) -> float:
    """0.0 when a call may go out now; else seconds until the breaker lets one through."""
    breaker = breaker_for(provider)
    current = breaker.state.name  # refreshes from the shared storage (and notifies on change)
    set_breaker_state(provider.name, current)
    if current == CLOSED:
        return 0.0
    if current == OPEN:
        opened = _opened_at(breaker)
        remaining = opened + breaker.reset_timeout - time.time() if opened else 0.0
        if remaining > 0:
            return remaining
    if not _take_probe(provider, breaker):
        return 1.0  # another process is probing; its result decides
    if current == OPEN:
        breaker.half_open()
    return 0.0


def _passthrough() -> None:
    return None


def _reraise(exc: BaseException) -> None:
    raise exc


def _storage_reachable(provider) -> bool:
    """False when this provider's breaker lives in Redis and Redis does not answer: pybreaker
    would fall back to "closed" and log a traceback for every read, so the failure is not
    counted (the breaker fails open, as pybreaker's own Redis storage does)."""
    entry = _breakers.get(str(provider.pk))
    client = get_redis()
    if entry is None or not entry[1] or client is None:
        return True
    import redis

    try:
        client.exists(state_key(provider.pk))
    except redis.RedisError:
        logger.warning("breaker of provider %s: Redis unreachable; failure not counted", provider.name)
        return False
    return True


def _may_need_recording(provider) -> bool:
    """False when a success changes nothing: closed, no failure counted, provider not marked down,
    no probe held. One round trip (MGET) instead of pybreaker's two reads."""
    from providers_app.models import Provider

    if getattr(provider, "health_status", None) in (Provider.Health.DOWN, Provider.Health.DEGRADED):
        return True
    if _memory_probes.get(str(provider.pk)):
        return True
    entry = _breakers.get(str(provider.pk))
    client = get_redis()
    if entry is None or not entry[1] or client is None:
        return True
    import redis

    try:
        state_raw, failures, probe = client.mget(
            [
                state_key(provider.pk),
                f"{_namespace(provider.pk)}:pybreaker:fail_counter",
                f"{_namespace(provider.pk)}:probe",
            ]
        )
    except redis.RedisError:
        # Redis is away: its breaker state cannot be written either (pybreaker would log a
        # traceback per read), and the budgets run in process meanwhile. Nothing to record.
        return False
    return bool(probe) or (state_raw or b"closed") != b"closed" or (failures or b"0") not in (b"0", b"")


def record_success(provider) -> None:
    """A call answered. Usually nothing to write (one MGET tells); else pybreaker's rules apply,
    and a provider marked down or degraded whose breaker is closed is active again."""
    import pybreaker

    from providers_app.models import Provider

    breaker = breaker_for(provider)
    if not _may_need_recording(provider):
        return
    try:
        if breaker.current_state != CLOSED or breaker.fail_counter:
            breaker.call(_passthrough)
    except pybreaker.CircuitBreakerError:
        pass  # still open: a call that started before it opened proves little
    finally:
        release_probe(provider)
    marked = getattr(provider, "health_status", None) in (Provider.Health.DOWN, Provider.Health.DEGRADED)
    if marked and breaker.current_state == CLOSED:
        # Marked down (by a provider-down event, or a breaker that has closed since), yet it
        # answered: it is back. A closing breaker mirrors itself; a closed one would not.
        mirror_state(provider.pk, provider.name, CLOSED)
        provider.health_status = Provider.Health.ACTIVE


def record_failure(provider, exc: ProviderError) -> None:
    """Count ``exc`` against the provider when it trips breakers, and remember it as the last error."""
    _remember_error(provider, exc)
    if not exc.trips_breaker:
        # The provider answered (a 404, a 429, a 400): as good as a success for its health.
        record_success(provider)
        return
    import pybreaker

    breaker = breaker_for(provider)
    if not _storage_reachable(provider):
        return
    try:
        breaker.call(_reraise, exc)
    except pybreaker.CircuitBreakerError:
        pass
    except ProviderError:
        pass  # the error we passed in, re-raised by the breaker after counting it
    finally:
        release_probe(provider)


def _remember_error(provider, exc: ProviderError) -> None:
    entry = {
        "at": datetime.now(UTC).isoformat(),
        "code": exc.code,
        "status_code": exc.status_code,
        "message": str(exc.message)[:500],
    }
    client = get_redis()
    if client is not None:
        import redis

        try:
            client.set(f"{_namespace(provider.pk)}:last_error", json.dumps(entry).encode(), ex=LAST_ERROR_TTL)
            return
        except redis.RedisError:
            pass
    _memory_errors[str(provider.pk)] = entry


def last_error(provider) -> dict[str, Any] | None:
    client = get_redis()
    if client is not None:
        import redis

        try:
            raw = client.get(f"{_namespace(provider.pk)}:last_error")
            return json.loads(raw) if raw else _memory_errors.get(str(provider.pk))
        except (redis.RedisError, ValueError):
            pass
    return _memory_errors.get(str(provider.pk))


def states(provider_ids) -> dict[str, str]:
    """Breaker state per provider id, for many providers in one Redis round trip (closed when unknown)."""
    ids = [str(pid) for pid in provider_ids]
    if not ids:
        return {}
    client = get_redis()
    if client is not None:
        import redis

        try:
            values = client.mget([state_key(pid) for pid in ids])
            return {pid: (value.decode() if value else CLOSED) for pid, value in zip(ids, values, strict=True)}
        except redis.RedisError:
            pass
    result = {}
    for pid in ids:
        entry = _breakers.get(pid)
        result[pid] = entry[0].current_state if entry else CLOSED
    return result


def holding_back(provider_ids) -> dict[str, bool | None]:
    """Per provider id: True while its breaker is open and its reset time has not passed (it
    holds calls back), False when open past that time (the next call is a probe, so new work
    may go there), None when not open. One Redis round trip for all of them."""
    ids = [str(pid) for pid in provider_ids]
    if not ids:
        return {}
    reset = settings.PROVIDERS["BREAKER_RESET_SECONDS"]
    now = time.time()
    rows: list[tuple[str, float | None]] | None = None
    client = get_redis()
    if client is not None:
        import redis

        try:
            keys = [key for pid in ids for key in (state_key(pid), f"{_namespace(pid)}:pybreaker:opened_at")]
            values = client.mget(keys)
            rows = []
            for i in range(len(ids)):
                state_raw, opened_raw = values[2 * i], values[2 * i + 1]
                try:
                    opened = float(opened_raw) if opened_raw else None
                except ValueError:
                    opened = None
                rows.append((state_raw.decode() if state_raw else CLOSED, opened))
        except redis.RedisError:
            rows = None
    if rows is None:
        rows = []
        for pid in ids:
            entry = _breakers.get(pid)
            rows.append((entry[0].current_state, _opened_at(entry[0])) if entry else (CLOSED, None))
    result: dict[str, bool | None] = {}
    for pid, (state_name, opened) in zip(ids, rows, strict=True):
        if state_name != OPEN:
            result[pid] = None
        else:
            result[pid] = opened is None or now < opened + reset
    return result


def reset_memory() -> None:
    """Tests only: forget the breakers built in this process."""
    with _lock:
        _breakers.clear()
        _memory_probes.clear()
        _memory_errors.clear()


def reset(provider) -> None:
    """An operator closes the breaker by hand (the provider is back, no need to wait for a probe)."""
    breaker = breaker_for(provider)
    breaker.close()
    mirror_state(provider.pk, provider.name, CLOSED)
