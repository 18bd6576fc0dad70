"""Writes to providers. Secret config keys are encrypted before they reach the database."""

from typing import Any

from django.db import transaction

from archangel.errors import InvalidInput
from providers_app.config import SPECS, validate_config
from providers_app.models import Provider


# A client may send back the placeholder it read ({"set": true}) for a secret key:
# that means "leave it as it is", so a GET -> PUT round trip never erases a token.
def _is_placeholder(value: Any) -> bool:
    return isinstance(value, dict) and set(value) <= {"set"}


def provider_check_config(*, provider: Provider | None, provider_type: str, config: Any, partial: bool) -> None:
    """Raise InvalidInput naming each bad ``config.<key>`` if the change would leave an invalid config."""
    _merged_config(provider, provider_type, config, partial=partial)


def _merged_config(provider: Provider | None, provider_type: str, config: Any, *, partial: bool) -> tuple[dict, dict]:
    """Return (full config after the change, the changes to apply)."""
    if not isinstance(config, dict):
        raise InvalidInput({"config": ["Must be a JSON object."]})
    secret_keys = SPECS[provider_type].secret
    current = provider.full_config() if provider is not None else {}
    changes = {k: v for k, v in config.items() if not (k in secret_keys and _is_placeholder(v))}
    if provider is not None and not partial:
        # PUT replaces the plain settings; secrets it does not mention are kept,
        # since nobody can read them back to resend them.
        for key in set(current) - set(config) - secret_keys:
            changes[key] = None
    merged = {k: v for k, v in {**current, **changes}.items() if v is not None}
    validate_config(provider_type, changes, require=False)
    validate_config(provider_type, merged, require=True)
    return merged, changes


def provider_create(*, name: str, type: str, config: Any, weight: int = 100) -> Provider:
    _, changes = _merged_config(None, type, config, partial=False)
    provider = Provider(name=name, type=type, weight=weight)
    provider.apply_config(changes)
    provider.save()
    return provider


def provider_update(*, provider: Provider, data: dict[str, Any], partial: bool) -> Provider:
    if "type" in data and data["type"] != provider.type:
        raise InvalidInput({"type": ["Cannot be changed; create a new provider instead."]})
    with transaction.atomic():
        provider = Provider.objects.select_for_update().get(pk=provider.pk)
        if "config" in data:
            _, changes = _merged_config(provider, provider.type, data["config"], partial=partial)
            provider.apply_config(changes)
        for name in ("name", "weight"):
            if name in data:
                setattr(provider, name, data[name])
        provider.save()
    return provider
