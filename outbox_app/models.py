import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxEvent(models.Model):
    """A change to deliver to a provider, written in the same transaction as the change itself.

    The outbox is generic: it knows an aggregate (type + id + version), not the
    Task model. Events of one aggregate are delivered in ``aggregate_version``
    order; events of different aggregates do not wait for each other.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead letter"

    class Operation(models.TextChoices):
        CREATE = "create", "Create"
        UPDATE = "update", "Update"
        COMPLETE = "complete", "Complete"
        ARCHIVE = "archive", "Archive"
        DELETE = "delete", "Delete"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.ForeignKey(
        "providers_app.Provider", null=True, blank=True, on_delete=models.PROTECT, related_name="outbox_events"
    )
    aggregate_type = models.CharField(max_length=30, default="task")
    aggregate_id = models.UUIDField(help_text="The task (or other aggregate) this event changes.")
    aggregate_version = models.PositiveIntegerField(help_text="Orders the events of one aggregate.")
    operation_type = models.CharField(max_length=50, choices=Operation.choices)
    payload = models.JSONField()
    idempotency_key = models.CharField(max_length=255, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    retry_count = models.PositiveIntegerField(default=0)
    scheduled_at = models.DateTimeField(default=timezone.now, help_text="Not delivered before this time.")
    processed_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "aggregate_version"]
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_type", "aggregate_id", "aggregate_version"],
                name="outbox_app_event_unique_aggregate_version",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "processing", "delivered", "failed", "dead"]),
                name="outbox_app_event_status_valid",
            ),
        ]
        indexes = [
            # The drain: WHERE status IN ('pending','failed') AND scheduled_at <= now() ORDER BY scheduled_at.
            # Partial, so it stays as small as the backlog however many delivered rows pile up.
            models.Index(
                fields=["scheduled_at"], condition=Q(status__in=["pending", "failed"]), name="outbox_event_due"
            ),
            # GET /api/outbox?status=... and the admin's status filter.
            models.Index(fields=["status", "created_at"], name="outbox_event_status_created"),
        ]

    def __str__(self) -> str:
        return f"{self.operation_type} {self.aggregate_type}:{self.aggregate_id} v{self.aggregate_version}"
