"""DRF token authentication with the token lookup (and the token's role) cached.

Every API request authenticates; DRF's TokenAuthentication joins token and user on
each one. Here the token -> user lookup is kept in the Django cache (Redis in
production, shared by every process), without the password hash. Deleting a token,
or saving or deleting its user, drops the entry at once, so revocation is not delayed.
"""

import hashlib

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models.signals import m2m_changed, post_delete, post_save
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from archangel.permissions import role_from_db

TTL_SECONDS = 300
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


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        entry = cache.get(_cache_key(key))
        if entry is None:
            user, _ = super().authenticate_credentials(key)
            entry = {name: getattr(user, name) for name in CACHED_FIELDS}
            entry["role"] = role_from_db(user)
            cache.set(_cache_key(key), entry, TTL_SECONDS)
        names = _cached_names()
        user = get_user_model().from_db("default", names, [entry[name] for name in names])
        user._archangel_role = entry["role"]
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return user, Token(key=key, user=user)


def forget_token(key: str) -> None:
    cache.delete(_cache_key(key))


def _on_token_deleted(sender, instance, **kwargs):
    forget_token(instance.key)


def _forget_users(user_ids) -> None:
    for key in Token.objects.filter(user_id__in=list(user_ids)).values_list("key", flat=True):
        forget_token(key)


def _on_user_changed(sender, instance, **kwargs):
    _forget_users([instance.pk])


def _on_groups_changed(sender, instance, action, reverse, pk_set, **kwargs):
    # A role is a group membership: user.groups.add(...) or group.user_set.add(...).
    if not action.startswith("post_"):
        return
    if not reverse:
        _forget_users([instance.pk])
    elif pk_set:
        _forget_users(pk_set)
    else:  # group.user_set.clear(): the members are gone, so forget every cached token
        for key in Token.objects.values_list("key", flat=True):
            forget_token(key)


def connect_signals() -> None:
    post_delete.connect(_on_token_deleted, sender=Token, dispatch_uid="archangel.auth.token_deleted")
    post_save.connect(_on_user_changed, sender=get_user_model(), dispatch_uid="archangel.auth.user_saved")
    post_delete.connect(_on_user_changed, sender=get_user_model(), dispatch_uid="archangel.auth.user_deleted")
    m2m_changed.connect(
        _on_groups_changed, sender=get_user_model().groups.through, dispatch_uid="archangel.auth.groups_changed"
    )
