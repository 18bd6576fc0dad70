"""Provider adapters: one per provider type behind the interface in ``base.py``.

``get_adapter(provider)`` returns the adapter of a Provider row, built once per
process and configuration (decrypting the secrets and opening a connection pool
are not free) and rebuilt when the provider's settings change.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from providers_app.adapters.base import Adapter

if TYPE_CHECKING:
    from providers_app.models import Provider

_cache: dict[str, tuple[str, Adapter]] = {}
_lock = threading.Lock()


def adapter_class(provider_type: str) -> type[Adapter]:
    from providers_app.adapters.clickup import ClickUpAdapter
    from providers_app.adapters.todoist import TodoistAdapter
    from providers_app.adapters.trello import TrelloAdapter

    classes: dict[str, type[Adapter]] = {
        ClickUpAdapter.type: ClickUpAdapter,
        TrelloAdapter.type: TrelloAdapter,
        TodoistAdapter.type: TodoistAdapter,
    }
    try:
        return classes[provider_type]
    except KeyError:
        raise ValueError(f"no adapter for provider type {provider_type!r}") from None


def get_adapter(provider: Provider) -> Adapter:
    from providers_app.http import fingerprint

    # The ciphertext stands for the secrets: it changes whenever they do (or are re-encrypted).
    version = fingerprint(provider.type, provider.config, provider.secrets)
    key = str(provider.pk)
    cached = _cache.get(key)
    if cached is not None and cached[0] == version:
        return cached[1]
    adapter = adapter_class(provider.type)(provider.full_config(), account_key=key)
    with _lock:
        _cache[key] = (version, adapter)
    return adapter


def clear_cache() -> None:
    with _lock:
        _cache.clear()
