"""Writes to providers. Secret config keys are encrypted before they reach the database."""

import logging
import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from archangel.db import insert_rows
from archangel.errors import InvalidInput
from providers_app.config import SPECS, validate_config
from providers_app.models import Provider, WebhookDelivery

logger = logging.getLogger(__name__)


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


# --- webhook intake ----------------------------------------------------------------------------

# The Celery job that applies a delivery lives in tasks_app (which owns tasks); it is named,
# not imported, so providers_app keeps no dependency on tasks_app.
WEBHOOK_JOB = "tasks_app.jobs.webhook_process"


def webhook_store(*, target, event: str, dedup_key: str, headers: dict, payload: dict) -> tuple[str | None, bool]:
    """Store one authentic delivery once; return ``(id, created)``.

    ``INSERT ... ON CONFLICT DO NOTHING`` on (provider, dedup_key): a redelivery writes
    nothing and enqueues nothing. A new row's job is sent after commit; if the broker
    is down the row stays ``received`` and the periodic sweep sends it later, so no
    delivery is lost (docs/reliability.md: PostgreSQL is the truth, messages are wake-ups).
    """
    now = timezone.now()
    row = WebhookDelivery(
        id=uuid.uuid4(),
        provider_id=target.id,
        dedup_key=dedup_key,
        event=event,
        headers=headers,
        payload=payload,
        received_at=now,
        created_at=now,
        updated_at=now,
    )
    with transaction.atomic():
        if not insert_rows([row], skip_conflicts=True):
            return None, False
        delivery_id = str(row.pk)
        transaction.on_commit(lambda: webhook_enqueue(delivery_id=delivery_id))
    return delivery_id, True


def webhook_enqueue(*, delivery_id: str) -> bool:
    """Send the processing job; a broker failure is logged, never raised (the sweep catches up)."""
    from archangel.celery import app

    try:
        # retry=False: with Redis down, fail in milliseconds instead of holding the request.
        app.send_task(WEBHOOK_JOB, args=[delivery_id], retry=False)
    except Exception as exc:  # noqa: BLE001 - any broker failure: the row is safe in PostgreSQL
        logger.warning(
            "webhook delivery %s stored but its job could not be sent (%s); the sweep will process it",
            delivery_id,
            type(exc).__name__,
        )
        return False
    return True
