import uuid
from typing import Any

from django.db import models

from providers_app import crypto
from providers_app.config import CLICKUP, SPECS, TODOIST, TRELLO


class Provider(models.Model):
    """A configured account at ClickUp, Trello or Todoist that tasks are delivered to.

    Plain settings live in ``config``; secret ones (tokens, API keys, webhook and
    app secrets) live encrypted in ``secrets`` and are only readable through
    :meth:`secret_config`. Neither ``__str__`` nor ``__repr__`` shows them.
    """

    class Type(models.TextChoices):
        CLICKUP = CLICKUP, "ClickUp"
        TRELLO = TRELLO, "Trello"
        TODOIST = TODOIST, "Todoist"

    class Health(models.TextChoices):
        ACTIVE = "active", "Active"
        DEGRADED = "degraded", "Degraded"
        DOWN = "down", "Down"
        DISABLED = "disabled", "Disabled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=50, unique=True)
    type = models.CharField(max_length=20, choices=Type.choices)
    config = models.JSONField(default=dict, blank=True, help_text="Non-secret settings of the provider type.")
    secrets = models.TextField(blank=True, default="", editable=False, help_text="Fernet token of the secret settings.")
    health_status = models.CharField(max_length=20, choices=Health.choices, default=Health.ACTIVE)
    weight = models.PositiveSmallIntegerField(
        default=100, help_text="Relative share of new work routed here among healthy providers (0 = none)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(type__in=[CLICKUP, TRELLO, TODOIST]), name="providers_app_provider_type_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"

    def __repr__(self) -> str:
        return f"<Provider {self.id} {self.name!r} {self.type}>"

    @property
    def secret_keys(self) -> frozenset[str]:
        return SPECS[self.type].secret

    def secret_config(self) -> dict[str, Any]:
        """The decrypted secret settings. Keep the result out of logs and responses."""
        return crypto.decrypt_json(self.secrets)

    def full_config(self) -> dict[str, Any]:
        """Plain and secret settings together, for the adapters."""
        return {**self.config, **self.secret_config()}

    def secrets_set(self) -> dict[str, bool | None]:
        """Which secret keys of this type hold a value (never the values themselves);
        ``None`` for each when the stored secrets cannot be decrypted with the keys
        configured, so one provider's bad key never breaks a list of providers."""
        try:
            stored = self.secret_config()
        except crypto.DecryptionError:
            return dict.fromkeys(sorted(self.secret_keys))
        return {key: bool(stored.get(key)) for key in sorted(self.secret_keys)}

    def apply_config(self, changes: dict[str, Any]) -> None:
        """Merge validated ``changes`` into config and secrets; ``None`` removes a key."""
        plain, secret = dict(self.config), self.secret_config()
        for key, value in changes.items():
            target = secret if key in self.secret_keys else plain
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
        self.config = plain
        self.secrets = crypto.encrypt_json(secret)


class WebhookDelivery(models.Model):
    """One authentic webhook delivery, stored once per (provider, dedup key) before it is processed.

    Intake stores the row and answers 200 at once; a Celery job applies it. A
    redelivery hits the unique constraint and has no second effect (docs/reliability.md,
    "Webhooks"); rows left ``received`` (workers down) are picked up by the sweep.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (nothing to apply)"
        FAILED = "failed", "Failed (will retry)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="webhook_deliveries")
    dedup_key = models.CharField(
        max_length=255, help_text="ClickUp webhook_id:history ids; Trello action.id; Todoist X-Todoist-Delivery-ID."
    )
    event = models.CharField(max_length=100, blank=True, default="")
    headers = models.JSONField(default=dict, blank=True, help_text="A subset of the request headers (no signature).")
    payload = models.JSONField(help_text="The body, parsed after its signature was verified over the raw bytes.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "dedup_key"], name="providers_app_webhook_unique_dedup_key"),
            models.CheckConstraint(
                condition=models.Q(status__in=["received", "processed", "ignored", "failed"]),
                name="providers_app_webhook_status_valid",
            ),
        ]
        indexes = [
            # The sweep: WHERE status IN ('received', 'failed') AND received_at < now() - interval.
            # Partial, so it stays as small as the backlog however many processed rows pile up.
            models.Index(
                fields=["received_at"],
                condition=models.Q(status__in=["received", "failed"]),
                name="providers_webhook_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} {self.event or '?'} {self.dedup_key}"


class ProviderSyncCursor(models.Model):
    """Where the last reconciliation pull of a provider got to, so an interrupted one resumes."""

    provider = models.OneToOneField(Provider, on_delete=models.CASCADE, related_name="sync_cursor")
    cursor = models.CharField(max_length=500, blank=True, default="", help_text="The adapter's next page cursor.")
    since = models.DateTimeField(null=True, blank=True, help_text="The --since of the pull in progress.")
    pages = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.provider_id} @ {self.cursor or 'start'}"
