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
"""

import hashlib
import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from archangel.permissions import role_from_db

log = logging.getLogger(__name__)

TTL_SECONDS = 60
# Only these user fields are cached; anything else (the password hash included) is
# deferred and loaded from the database if some code ever reads it.
CACHED_FIELDS = frozenset(
    {"id", "username", "email", "first_name", "last_name", "is_active", "is_staff", "is_superuser"}
)


def _cached_names() -> list[str]:
    # Model.from_db wants the names in the model's field order.
    return [f.attname for f in get_user_model()._meta.concrete_fields if f.attname in CACHED_FIELDS]


def _cache_key(key: str) -> str:
    # Versioned: a change of what is cached must never read an old entry.
    return "auth:token:v2:" + hashlib.sha256(key.encode()).hexdigest()


def _cache_call(method: str, *args):
    try:
        return getattr(cache, method)(*args)
    except Exception:  # noqa: BLE001 - a cache outage must not fail authentication
        log.warning("auth cache unavailable for %s; using the database", method)
        return None


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        entry = _cache_call("get", _cache_key(key))
        if entry is None:
            user, _ = super().authenticate_credentials(key)
            entry = {name: getattr(user, name) for name in CACHED_FIELDS}
            entry["role"] = role_from_db(user)
            _cache_call("set", _cache_key(key), entry, TTL_SECONDS)
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
    _cache_call("delete_many", keys)
    # Again after commit: a request that read the old row before the commit may have
    # cached it meanwhile.
    transaction.on_commit(lambda: _cache_call("delete_many", keys))


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
