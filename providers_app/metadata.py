"""Provider metadata fetched once and cached: ClickUp list statuses, Trello board lists and
labels, Todoist projects and the user ids a task may be assigned to.

Adapters need these to build a request that the provider will accept (a status name the
list has, a label id for a priority, an assignee the project knows) and asking for them
on every delivery would spend the rate budget on reads (docs/provider-apis.md §1.6, §2.6,
§3.6). So each is read once per account and kept in Django's cache (Redis when
configured: every worker shares one copy and one invalidation) for
``PROVIDER_METADATA_TTL_SECONDS``.

Invalidation: ``invalidate(account_key)`` drops every kind of one account; the Provider
admin's "Refresh provider metadata" action calls it, and so does an adapter whose request
was refused with a 4xx that says a cached value is stale (an unknown status, list or
label); the adapter then retries that request once with fresh metadata.

The cache is keyed by the account (the Provider's primary key, the adapter's
``account_key``) and the kind; the value records the container it describes (list id,
board id, project id), so a provider pointed at another container never reads the old
one's metadata.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

KINDS = ("statuses", "lists", "labels", "projects", "users")
PREFIX = "provider-meta"


def _key(account_key: str, kind: str) -> str:
    return f"{PREFIX}:{account_key}:{kind}"


def ttl() -> int:
    return int(getattr(settings, "PROVIDER_METADATA_TTL_SECONDS", 3600))


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _cached(key: str, scope: str) -> tuple[bool, Any]:
    try:
        entry = cache.get(key)
    except Exception:  # noqa: BLE001 - the cache is an optimisation, never a point of failure
        logger.warning("provider metadata cache unavailable; reading %s uncached", key)
        return False, None
    if isinstance(entry, dict) and entry.get("scope") == scope:
        return True, entry["value"]
    return False, None


def get(account_key: str, kind: str, scope: str, fetch: Callable[[], Any]) -> Any:
    """The cached ``kind`` of ``scope`` for this account, fetched with ``fetch()`` on a miss
    (its request shows in ``archangel_provider_calls`` as operation ``metadata``).

    One fetch per process at a time per key: the drain's delivery threads that miss together
    wait for the first one's answer instead of all asking the provider. A cache failure (Redis
    down) is not a delivery failure: the value is fetched and used uncached. ``fetch`` raising
    (a ProviderError) propagates: without the metadata the caller cannot build its request.
    """
    key = _key(account_key, kind)
    hit, value = _cached(key, scope)
    if hit:
        return value
    with _lock(key):
        hit, value = _cached(key, scope)
        if hit:
            return value
        value = fetch()
        try:
            cache.set(key, {"scope": scope, "value": value}, ttl())
        except Exception:  # noqa: BLE001
            logger.warning("provider metadata cache unavailable; %s not stored", kind)
    return value


def invalidate(account_key: str) -> None:
    """Forget every kind of metadata of one account (the next delivery fetches afresh)."""
    try:
        cache.delete_many([_key(account_key, kind) for kind in KINDS])
    except Exception:  # noqa: BLE001
        logger.warning("provider metadata cache unavailable; could not invalidate account %s", account_key)
