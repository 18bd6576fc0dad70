"""Reads of providers. The webhook intake asks here which account a delivery is for."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from providers_app import crypto
from providers_app.models import Provider
from providers_app.webhooks import SIGNING_SECRET

# The intake runs for every delivery; the accounts of a type change rarely. A process keeps
# them this many seconds, and re-reads at once when a signature fails (a rotated secret).
_TTL_SECONDS = 30.0
_cache: dict[str, tuple[float, list[WebhookTarget]]] = {}


@dataclass(frozen=True)
class WebhookTarget:
    """What the intake needs of one provider: its id, its signing secret, its plain config."""

    id: uuid.UUID
    type: str
    secret: str = field(repr=False)
    callback_url: str
    config: dict[str, Any] = field(repr=False)

    def matches(self, hints: dict[str, str]) -> bool:
        """True when the payload's hints name this account (every hint it has config for agrees,
        and at least one does)."""
        known = [key for key in hints if self.config.get(key)]
        return bool(known) and all(str(self.config[key]) == hints[key] for key in known)


def _load(provider_type: str) -> list[WebhookTarget]:
    targets = []
    for provider in Provider.objects.filter(type=provider_type).exclude(health_status=Provider.Health.DISABLED):
        try:
            secrets = provider.secret_config()
        except crypto.DecryptionError:
            secrets = {}
        targets.append(
            WebhookTarget(
                id=provider.id,
                type=provider.type,
                secret=secrets.get(SIGNING_SECRET[provider_type], ""),
                callback_url=provider.config.get("callback_url", ""),
                config=dict(provider.config),
            )
        )
    return targets


def webhook_targets(provider_type: str, *, fresh: bool = False) -> list[WebhookTarget]:
    now = time.monotonic()
    cached = _cache.get(provider_type)
    if fresh or cached is None or now - cached[0] > _TTL_SECONDS:
        cached = (now, _load(provider_type))
        _cache[provider_type] = cached
    return cached[1]


def webhook_cache_clear() -> None:
    _cache.clear()


def webhook_target(
    provider_type: str, *, provider_id: str | None, hints: dict[str, str], fresh: bool = False
) -> WebhookTarget | None:
    """The account a delivery is for: by id (long URL form), else the only account of the
    type, else the one the payload's hints name; None when none (or several) match."""
    targets = webhook_targets(provider_type, fresh=fresh)
    if provider_id is not None:
        return next((t for t in targets if str(t.id) == provider_id), None)
    if len(targets) == 1:
        return targets[0]
    matching = [t for t in targets if t.matches(hints)]
    return matching[0] if len(matching) == 1 else None
