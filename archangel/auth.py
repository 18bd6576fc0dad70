"""DRF token authentication with the token lookup cached.

Every API request authenticates; DRF's TokenAuthentication joins token and user on
each one. Here the token -> user lookup is kept in the Django cache (Redis in
production, shared by every process), without the password hash. Deleting a token,
or saving or deleting its user, drops the entry at once, so revocation is not delayed.
"""

import hashlib

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

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
    return "auth:token:v1:" + hashlib.sha256(key.encode()).hexdigest()


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        entry = cache.get(_cache_key(key))
        if entry is None:
            user, _ = super().authenticate_credentials(key)
            entry = {name: getattr(user, name) for name in CACHED_FIELDS}
            cache.set(_cache_key(key), entry, TTL_SECONDS)
        names = _cached_names()
        user = get_user_model().from_db("default", names, [entry[name] for name in names])
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return user, Token(key=key, user=user)


def forget_token(key: str) -> None:
    cache.delete(_cache_key(key))


def _on_token_deleted(sender, instance, **kwargs):
    forget_token(instance.key)


def _on_user_changed(sender, instance, **kwargs):
    for key in Token.objects.filter(user_id=instance.pk).values_list("key", flat=True):
        forget_token(key)


def connect_signals() -> None:
    post_delete.connect(_on_token_deleted, sender=Token, dispatch_uid="archangel.auth.token_deleted")
    post_save.connect(_on_user_changed, sender=get_user_model(), dispatch_uid="archangel.auth.user_saved")
    post_delete.connect(_on_user_changed, sender=get_user_model(), dispatch_uid="archangel.auth.user_deleted")
