import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxEvent(models.Model):
    """A change to deliver to a provider, written in the same transaction as the change itself.

    The outbox is generic: it knows an aggregate (type + id + version), not the
    Task model. Events of one aggregate are delivered in ``aggregate_version``
    order; events of different aggregates do not wait for each other.

    Life cycle (outbox_app/drain.py): ``pending``/``failed`` and due → claimed as
    ``processing`` with a lease (``locked_until``) and a fencing token
    (``lease_token``) → ``delivered``, ``failed`` (retried after a backoff),
    ``pending`` again (deferred by a rate limit or an open breaker, not counted) or
    ``dead``. A dead event blocks the later events of its aggregate until an operator
    requeues it (back to ``pending``) or discards it (``discarded``, never sent).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (will retry)"
        DEAD = "dead", "Dead letter"
        DISCARDED = "discarded", "Discarded"

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
    retry_count = models.PositiveIntegerField(
        default=0, help_text="Failed delivery attempts so far (deferrals by rate limits or breakers do not count)."
    )
    scheduled_at = models.DateTimeField(default=timezone.now, help_text="Not delivered before this time.")
    processed_at = models.DateTimeField(null=True, blank=True, help_text="When the last result was recorded.")
    delivered_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    # The claim: a worker owns a processing event until locked_until; every result write is
    # conditioned on lease_token, so a worker whose lease expired cannot overwrite the
    # result of the worker that reclaimed the event (docs/reliability.md, "fencing token").
    locked_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # Set by the first claim and never changed: no attempt can have reached the provider
    # before it, so a create with an unknown outcome searches only tasks changed since then
    # (providers_app/adapters/common.py, "reference lookup").
    first_claimed_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When a worker first took this event for delivery."
    )
    outcome_unknown = models.BooleanField(
        default=False,
        db_default=False,
        help_text="An earlier attempt may have taken effect unseen: a create looks for its task before creating.",
    )
    # Coalescing (outbox_app/batching.py): an update that was folded into an earlier undelivered
    # event of its aggregate is marked delivered without a request of its own; this is the
    # event whose delivery carried its state, so the audit trail stays whole.
    carried_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="carried",
        db_index=False,  # the partial index outbox_event_carried_by serves it
        help_text="Delivered as part of this event (coalesced): no request of its own was sent.",
    )
    # W3C trace context of the request that wrote the event, so its delivery joins that trace.
    trace_context = models.JSONField(default=dict, db_default={}, blank=True)
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
                condition=Q(status__in=["pending", "processing", "delivered", "failed", "dead", "discarded"]),
                name="outbox_app_event_status_valid",
            ),
        ]
        indexes = [
            # The drain: WHERE status IN ('pending','failed') AND scheduled_at <= now() ORDER BY scheduled_at.
            # Partial, so it stays as small as the backlog however many delivered rows pile up.
            models.Index(
                fields=["scheduled_at"], condition=Q(status__in=["pending", "failed"]), name="outbox_event_due"
            ),
            # The drain's reclaim of expired leases: WHERE status = 'processing' AND locked_until < now().
            models.Index(fields=["locked_until"], condition=Q(status="processing"), name="outbox_event_lease_expiry"),
            # Who an event carried (the admin's detail, retention's SET NULL when a carrier is purged);
            # partial: only coalesced events have one.
            models.Index(fields=["carried_by"], condition=Q(carried_by__isnull=False), name="outbox_event_carried_by"),
            # GET /api/outbox?status=... and the admin's status filter.
            models.Index(fields=["status", "created_at"], name="outbox_event_status_created"),
        ]

    def __str__(self) -> str:
        return f"{self.operation_type} {self.aggregate_type}:{self.aggregate_id} v{self.aggregate_version}"


class DeliveryAttempt(models.Model):
    """One call to a provider for an outbox event, or a lost lease: what happened and how long it took.

    Deferrals decided before any request (the rate budget is spent, the breaker is
    open) are not attempts and leave no row; a 429 answer is (outcome ``deferred``).
    """

    class Outcome(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        RETRY = "retry", "Failed, will retry"
        DEAD = "dead", "Failed, dead letter"
        DEFERRED = "deferred", "Rate limited, deferred"
        STALE = "stale", "Result dropped: the lease was lost"

    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="attempts")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    error = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=255, blank=True, default="", help_text="host:pid of the drain.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=["delivered", "retry", "dead", "deferred", "stale"]),
                name="outbox_app_attempt_outcome_valid",
            ),
        ]
        # The FK index serves GET /api/outbox/{id} (an event's attempts).

    def __str__(self) -> str:
        return f"{self.event_id} {self.outcome} at {self.started_at:%Y-%m-%d %H:%M:%S}"
