"""Data retention: old records that no one needs any more are deleted in batches.

Only finished records go: delivered outbox events (with their attempts),
processed or ignored webhook deliveries, expired idempotency records, and audit
entries past their own, longer period. Pending, failed and dead outbox events,
and webhook deliveries not yet processed, are never purged, however old.

Each rule names its model by label so this module does not depend on which
apps define which history tables; a model that does not exist is skipped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import transaction
from django.utils import timezone

BATCH = 5_000


@dataclass(frozen=True)
class Rule:
    model: str  # app_label.ModelName
    date_field: str
    setting: str  # key of settings.ARCHANGEL_RETENTION (days, or hours for *_HOURS)
    filters: dict[str, Any] = field(default_factory=dict)

    def age(self) -> dt.timedelta:
        value = settings.ARCHANGEL_RETENTION[self.setting]
        return dt.timedelta(hours=value) if self.setting.endswith("_HOURS") else dt.timedelta(days=value)


RULES = [
    Rule("outbox_app.DeliveryAttempt", "started_at", "OUTBOX_DAYS", {"event__status": "delivered"}),
    Rule("outbox_app.OutboxEvent", "processed_at", "OUTBOX_DAYS", {"status": "delivered"}),
    Rule("providers_app.WebhookDelivery", "received_at", "WEBHOOK_DAYS", {"status__in": ["processed", "ignored"]}),
    Rule("tasks_app.IdempotencyRecord", "created_at", "IDEMPOTENCY_HOURS"),
    Rule("audit.AuditEntry", "at", "AUDIT_DAYS"),
]


def _model(rule: Rule):
    try:
        model = apps.get_model(rule.model)
        model._meta.get_field(rule.date_field)
    except (LookupError, FieldDoesNotExist):
        return None
    return model


def purge(*, now: dt.datetime | None = None, batch: int = BATCH) -> dict[str, int]:
    """Delete what each rule allows, ``batch`` rows per short transaction; returns rows deleted per model."""
    now = now or timezone.now()
    deleted: dict[str, int] = {}
    for rule in RULES:
        model = _model(rule)
        if model is None:
            continue
        old = model.objects.filter(**rule.filters, **{f"{rule.date_field}__lt": now - rule.age()})
        total = 0
        while True:
            with transaction.atomic():
                # Short transactions on a bounded set of ids: never a long lock on a busy table.
                ids = list(old.order_by().values_list("pk", flat=True)[:batch])
                if not ids:
                    break
                # delete(), not a raw DELETE: the ORM cascades to rows that point here.
                model.objects.filter(pk__in=ids).delete()
                total += len(ids)
        deleted[rule.model] = total
    return deleted
