"""DRF token authentication with the token lookup (and the token's role) cached.

Every API request authenticates; DRF's TokenAuthentication joins token and user on
each one. Here the token -> user lookup is kept in the Django cache (Redis in
production, shared by every process), without the password hash.

Revocation is immediate for everything that goes through the ORM's signals:
deleting a token, saving or deleting its user, changing the user's groups, saving
or deleting a group. The entry is dropped at once and again when the transaction
commits (so a request racing the change cannot re-cache the old row). A bulk
``QuerySet.update()`` sends no signal; the short TTL bounds that case to a minute.
When the cache is unreachable, authentication falls back to the database.

Each process also keeps the entries it has used (``_local``), so a request does not fetch
and unpickle its token's entry from the shared cache again. What keeps that copy honest is a
generation counter in the shared cache, moved by every revocation above (at once and again
on commit): a request checks it in the same Redis round trip that counts it for the throttle
(``archangel.throttling``), and a copy taken under another generation is dropped and fetched
again. So a revocation reaches every process at once, as before; the copy adds no round trip,
and saves one. It is also dropped after ``LOCAL_TTL_SECONDS``, so the ``QuerySet.update()``
bound above becomes a minute plus that.
"""

import functools
import hashlib
import logging
import time

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from archangel import throttling
from archangel.permissions import role_from_db
from archangel.redis_script import run_script

log = logging.getLogger(__name__)

TTL_SECONDS = 60
# How long a process keeps an entry it has used (checked against the generation on every use).
LOCAL_TTL_SECONDS = 5
LOCAL_MAX_ENTRIES = 10_000
GENERATION_KEY = "auth:token:generation"
# token key -> (entry, generation it was fetched under, time.monotonic() when fetched)
_local: dict[str, tuple[dict, str, float]] = {}
# KEYS[1] = the generation; KEYS[2], if given, the user's throttle window (ARGV[1] its lifetime).
_CHECK_SCRIPT = """
local generation = redis.call('GET', KEYS[1]) or '0'
if #KEYS == 1 then return {generation, 0} end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return {generation, n}
"""
_scripts: dict[int, object] = {}
# Only these user fields are cached; anything else (the password hash included) is
# deferred and loaded from the database if some code ever reads it.
CACHED_FIELDS = frozenset(
    {"id", "username", "email", "first_name", "last_name", "is_active", "is_staff", "is_superuser"}
)


@functools.cache
def _cached_names() -> tuple[str, ...]:
    # Model.from_db wants the names in the model's field order. Built once: the user model and
    # its fields are fixed once the apps are loaded.
    return tuple(f.attname for f in get_user_model()._meta.concrete_fields if f.attname in CACHED_FIELDS)


def _cache_key(key: str) -> str:
    # Versioned: a change of what is cached must never read an old entry.
    return "auth:token:v2:" + hashlib.sha256(key.encode()).hexdigest()


def _cache_call(method: str, *args):
    try:
        return getattr(cache, method)(*args)
    except Exception:  # noqa: BLE001 - a cache outage must not fail authentication
        log.warning("auth cache unavailable for %s; using the database", method)
        return None


def _redis_client():
    backend = getattr(cache, "_cache", None)
    return backend.get_client(GENERATION_KEY, write=True) if hasattr(backend, "get_client") else None


def _generation() -> str | None:
    """The shared generation now (None: the cache is unreachable)."""
    client = _redis_client()
    try:
        if client is not None:
            value = client.get(cache.make_and_validate_key(GENERATION_KEY))
            return value.decode() if value is not None else "0"
        return str(cache.get(GENERATION_KEY, 0))
    except Exception:  # noqa: BLE001 - a cache outage must not fail authentication
        log.warning("auth cache unavailable for the generation; using the database")
        return None


def _check(entry: dict, request) -> str | None:
    """The shared generation, read in one round trip with the throttle's count of this request
    for the entry's user (left on the request for ``TokenRateThrottle``). None: unreachable."""
    client = _redis_client()
    if client is None:  # local memory in tests, files in development: no throttle shortcut
        return _generation()
    window = throttling.user_window_key(entry["id"], time.time())
    keys = [cache.make_and_validate_key(GENERATION_KEY)]
    if window is not None:
        keys.append(cache.make_and_validate_key(window[0]))
    try:
        script = _scripts.get(id(client))
        if script is None:
            script = _scripts[id(client)] = client.register_script(_CHECK_SCRIPT)
        generation, count = run_script(script, keys, [window[1] if window else 0])
    except Exception:  # noqa: BLE001 - a cache outage must not fail authentication
        log.warning("auth cache unavailable for the generation; using the database")
        return None
    if window is not None and request is not None:
        setattr(request, throttling.COUNTED, (window[0], int(count)))
    return generation.decode() if isinstance(generation, bytes) else str(generation)


def _bump_generation() -> None:
    client = _redis_client()
    try:
        if client is not None:
            client.incr(cache.make_and_validate_key(GENERATION_KEY))
            return
        try:
            cache.incr(GENERATION_KEY)
        except ValueError:  # never set (or evicted): any new value differs from every copy's
            cache.set(GENERATION_KEY, 1, None)
    except Exception:  # noqa: BLE001
        # Copies then live out LOCAL_TTL_SECONDS (the shared entries were deleted as before).
        log.warning("auth cache unavailable; the generation was not moved")


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate(self, request):
        self._request = request  # authenticators are made per request
        return super().authenticate(request)

    def _local_entry(self, key: str) -> dict | None:
        found = _local.get(key)
        if found is None:
            return None
        entry, generation, fetched = found
        expired = time.monotonic() - fetched > LOCAL_TTL_SECONDS
        if expired or _check(entry, getattr(self, "_request", None)) != generation:
            _local.pop(key, None)
            return None
        return entry

    def authenticate_credentials(self, key):
        # Keys are 40 hex characters (DRF's Token.generate_key); anything longer, or with a
        # control character (a NUL made PostgreSQL refuse the lookup: a 500), is no key of ours.
        if len(key) > 40 or not key.isprintable():
            raise exceptions.AuthenticationFailed("Invalid token.")
        entry = self._local_entry(key)
        if entry is None:
            # Read before the entry: a revocation after this read moves it again, so a copy of
            # an entry read after the revocation began is never kept under the newer generation.
            generation = _generation()
            entry = _cache_call("get", _cache_key(key))
            if entry is None:
                user, _ = super().authenticate_credentials(key)
                entry = {name: getattr(user, name) for name in CACHED_FIELDS}
                entry["role"] = role_from_db(user)
                _cache_call("set", _cache_key(key), entry, TTL_SECONDS)
            if generation is not None:
                if len(_local) >= LOCAL_MAX_ENTRIES:
                    _local.clear()
                _local[key] = (entry, generation, time.monotonic())
        names = _cached_names()
        user = get_user_model().from_db("default", names, [entry[name] for name in names])
        user._archangel_role = entry["role"]
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return user, Token(key=key, user=user)


def forget_tokens(keys) -> None:
    keys = [_cache_key(k) for k in keys]
    if not keys:
        return
    _forget(keys)
    # Again after commit: a request that read the old row before the commit may have
    # cached it meanwhile.
    transaction.on_commit(lambda: _forget(keys))


def _forget(cache_keys: list[str]) -> None:
    _cache_call("delete_many", cache_keys)
    _bump_generation()  # every process's copies are checked against it on their next use


def _forget_users(user_ids) -> None:
    forget_tokens(Token.objects.filter(user_id__in=list(user_ids)).values_list("key", flat=True))


def _on_token_deleted(sender, instance, **kwargs):
    forget_tokens([instance.key])


def _on_user_changed(sender, instance, **kwargs):
    _forget_users([instance.pk])


def _on_groups_changed(sender, instance, action, reverse, pk_set, **kwargs):
    # A role is a group membership: user.groups.add(...) or group.user_set.add(...).
    if not action.startswith(("post_", "pre_clear")):
        return
    if not reverse:
        _forget_users([instance.pk])
    elif pk_set:
        _forget_users(pk_set)
    else:  # group.user_set.clear(): pre_clear still sees the members
        _forget_users(instance.user_set.values_list("pk", flat=True))


def _on_group_changed(sender, instance, **kwargs):
    # Renaming or deleting a group changes its members' roles (pre_delete: members still known).
    _forget_users(instance.user_set.values_list("pk", flat=True))


def connect_signals() -> None:
    user_model = get_user_model()
    post_delete.connect(_on_token_deleted, sender=Token, dispatch_uid="archangel.auth.token_deleted")
    post_save.connect(_on_user_changed, sender=user_model, dispatch_uid="archangel.auth.user_saved")
    post_delete.connect(_on_user_changed, sender=user_model, dispatch_uid="archangel.auth.user_deleted")
    m2m_changed.connect(_on_groups_changed, sender=user_model.groups.through, dispatch_uid="archangel.auth.groups")
    post_save.connect(_on_group_changed, sender=Group, dispatch_uid="archangel.auth.group_saved")
    pre_delete.connect(_on_group_changed, sender=Group, dispatch_uid="archangel.auth.group_deleted")
