import uuid
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from tasks_app.status import CLOSED, OPEN, TaskStatus

# Ten years. A longer SLA says nothing more, and computing "created + SLA" must stay within the
# dates PostgreSQL can hold (80,000,000 hours did not).
SLA_HOURS_MAX = 87_600


def validate_timezone(value: str) -> None:
    if value not in available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone name (e.g. Europe/Berlin).")


class Client(models.Model):
    """Who the work is for: importance and SLA feed the score; a preferred provider feeds routing."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, unique=True)
    importance = models.DecimalField(
        max_digits=3,
        decimal_places=2,
        default=0.5,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="0 (least) to 1 (most important).",
    )
    sla_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(SLA_HOURS_MAX)],
        help_text="Hours from creation within which this client's tasks should be done (at most ten years).",
    )
    preferred_provider = models.ForeignKey(
        "providers_app.Provider", null=True, blank=True, on_delete=models.SET_NULL, related_name="preferred_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(importance__gte=0) & Q(importance__lte=1), name="tasks_app_client_importance_range"
            ),
            models.CheckConstraint(
                condition=Q(sla_hours__isnull=True) | (Q(sla_hours__gt=0) & Q(sla_hours__lte=SLA_HOURS_MAX)),
                name="tasks_app_client_sla_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Assignee(models.Model):
    """A person work is routed to, with a daily capacity and a time zone for their morning plan."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    email = models.EmailField(unique=True)
    capacity_hours_per_day = models.DecimalField(
        max_digits=4, decimal_places=2, default=8, validators=[MinValueValidator(0), MaxValueValidator(24)]
    )
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "email"]
        constraints = [
            models.CheckConstraint(
                condition=Q(capacity_hours_per_day__gte=0) & Q(capacity_hours_per_day__lte=24),
                name="tasks_app_assignee_capacity_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class AssigneeIdentity(models.Model):
    """The user id an assignee has in one provider (ClickUp user id, Trello member id, Todoist uid)."""

    assignee = models.ForeignKey(Assignee, on_delete=models.CASCADE, related_name="identities")
    provider = models.ForeignKey("providers_app.Provider", on_delete=models.CASCADE, related_name="identities")
    external_user_id = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "assignee identities"
        ordering = ["assignee_id", "provider_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["assignee", "provider"], name="tasks_app_identity_unique_assignee_provider"
            ),
            models.UniqueConstraint(
                fields=["provider", "external_user_id"], name="tasks_app_identity_unique_provider_user"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.assignee_id}@{self.provider_id}: {self.external_user_id}"


class Task(models.Model):
    """A unit of work, normalized, scored, routed to a provider and a person, and delivered through the outbox."""

    class Source(models.TextChoices):
        API = "api", "API"
        WEBHOOK = "webhook", "Webhook"
        IMPORT = "import", "Import"

    class Priority(models.IntegerChoices):
        LOW = 1, "Low"
        NORMAL = 2, "Normal"
        HIGH = 3, "High"
        URGENT = 4, "Urgent"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.ForeignKey(
        "providers_app.Provider", null=True, blank=True, on_delete=models.PROTECT, related_name="tasks"
    )
    external_id = models.CharField(max_length=255, null=True, blank=True, help_text="The task's id at its provider.")
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=20, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    effort_hours = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    effort_estimated = models.BooleanField(default=False, help_text="effort_hours was estimated, not given.")
    deadline = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(Assignee, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    client = models.ForeignKey(Client, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    score = models.FloatField(null=True, blank=True)
    score_breakdown = models.JSONField(default=dict, blank=True)
    fingerprint = models.CharField(
        max_length=64, null=True, blank=True, help_text="normalized title + client + deadline day"
    )
    last_progress_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    # Bumped by every change; outbox events carry it so a provider sees changes in order.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "external_id"],
                condition=Q(external_id__isnull=False),
                name="tasks_app_task_unique_provider_external_id",
            ),
            # De-duplication holds under concurrency: at most one open task per fingerprint.
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=Q(fingerprint__isnull=False) & ~Q(status__in=sorted(CLOSED)),
                name="tasks_app_task_unique_open_fingerprint",
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=1) & Q(priority__lte=4), name="tasks_app_task_priority_range"
            ),
            models.CheckConstraint(
                condition=Q(effort_hours__isnull=True) | Q(effort_hours__gte=0),
                name="tasks_app_task_effort_non_negative",
            ),
            models.CheckConstraint(condition=Q(status__in=TaskStatus.values), name="tasks_app_task_status_valid"),
        ]
        indexes = [
            # GET /api/tasks?ordering=-score and the planner: open work by score.
            models.Index(fields=["status", "score"], name="tasks_task_status_score"),
            # Deadline filters and overdue queries.
            models.Index(fields=["deadline"], name="tasks_task_deadline"),
            # Routing and the planner: open effort hours per assignee (index-only scan).
            models.Index(
                fields=["assignee", "effort_hours"],
                condition=Q(status__in=sorted(OPEN)),
                name="tasks_task_open_assignee",
            ),
            # Routing: open tasks per provider.
            models.Index(fields=["provider"], condition=Q(status__in=sorted(OPEN)), name="tasks_task_open_provider"),
        ]

    def __str__(self) -> str:
        return self.title


class IdempotencyRecord(models.Model):
    """The first response to a POST carrying an Idempotency-Key, replayed for retries of that request."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64, help_text="sha256 of method, path and canonical JSON body")
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    response_headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="tasks_app_idempotency_unique_user_key")]

    def __str__(self) -> str:
        return self.key


class TaskSyncState(models.Model):
    """Per-field sync state of a task with its provider: the value both sides last agreed on,
    who set it (``archangel`` when the provider echoed what we delivered, ``provider`` when
    they changed it) and the provider's time of that change.

    ``fields`` is ``{field: {"value": ..., "by": "archangel"|"provider", "at": iso}}``.
    A field missing here has not been synced since the task was created or adopted.
    """

    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="sync_state", primary_key=True)
    fields = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"sync state of {self.task_id}"


class SyncConflict(models.Model):
    """A field both sides changed since the last sync: the values of both, and which one won
    (field-level last writer wins by timestamp)."""

    class Winner(models.TextChoices):
        LOCAL = "local", "Archangel"
        REMOTE = "remote", "Provider"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="sync_conflicts")
    provider = models.ForeignKey("providers_app.Provider", on_delete=models.CASCADE, related_name="sync_conflicts")
    field = models.CharField(max_length=50)
    local_value = models.JSONField(null=True, blank=True)
    remote_value = models.JSONField(null=True, blank=True)
    local_changed_at = models.DateTimeField(null=True, blank=True)
    remote_changed_at = models.DateTimeField(null=True, blank=True)
    winner = models.CharField(max_length=10, choices=Winner.choices)
    delivery = models.ForeignKey(
        "providers_app.WebhookDelivery",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="conflicts",
        help_text="The webhook delivery that revealed it (none for a reconciliation pull).",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(winner__in=["local", "remote"]), name="tasks_app_conflict_winner_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id}.{self.field}: {self.winner} won"


class RoutingDecision(models.Model):
    """Why a task went to its provider and person: every candidate considered, why each lost,
    the winner's margin. One row per routing (at create, and again when a task is moved)."""

    class Trigger(models.TextChoices):
        CREATE = "create", "Created"
        PROVIDER_DOWN = "provider_down", "Moved: provider down"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="routing_decisions")
    provider = models.ForeignKey(
        "providers_app.Provider", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    assignee = models.ForeignKey(Assignee, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.CREATE)
    chose_provider = models.BooleanField(
        default=True, help_text="Routing chose the provider (false: the caller fixed it, and it is kept)."
    )
    reason = models.CharField(max_length=500, blank=True, default="")
    candidates = models.JSONField(default=list, blank=True)
    margin_hours = models.FloatField(
        null=True, blank=True, help_text="Free hours the chosen assignee had over the runner-up."
    )
    over_capacity = models.BooleanField(default=False, help_text="Nobody had room: the assignee is over capacity.")
    duration_ms = models.FloatField(help_text="Time to decide, including this decision's share of loading the inputs.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The task API's nested `routing`: the latest decision of a task.
            models.Index(fields=["task", "-created_at"], name="tasks_routing_task_latest"),
            # Round-robin cursor (the last decision with an assignee) and analytics by date range.
            models.Index(fields=["created_at"], name="tasks_routing_created"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} -> {self.provider_id} / {self.assignee_id}"


class DailyPlan(models.Model):
    """One person's plan for one day (``tasks_app/planner.py``): the ordered items with the reason
    each is in, and what did not fit. Stored so the email, the API and the admin show the same plan;
    building it again for the same day replaces it."""

    assignee = models.ForeignKey(Assignee, on_delete=models.CASCADE, related_name="daily_plans")
    date = models.DateField(help_text="The day, in the assignee's time zone.")
    capacity_hours = models.DecimalField(max_digits=4, decimal_places=2)
    planned_hours = models.FloatField(default=0)
    over_capacity_hours = models.FloatField(default=0, help_text="Overdue work planned beyond capacity.")
    items = models.JSONField(default=list, blank=True)
    not_fitting = models.JSONField(default=list, blank=True)
    generated_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-date", "assignee_id"]
        constraints = [
            models.UniqueConstraint(fields=["assignee", "date"], name="tasks_app_dailyplan_unique_assignee_date"),
        ]
        indexes = [
            # GET /api/planner/daily?date=...: every plan of a day.
            models.Index(fields=["date"], name="tasks_dailyplan_date"),
        ]

    def __str__(self) -> str:
        return f"{self.assignee_id} {self.date}"


class PlanEmail(models.Model):
    """The claim on one person's plan email of one day: inserted (ON CONFLICT DO NOTHING) before
    sending, so however many email jobs run at once, at most one sends it. Delete the row in the
    admin to send that day's email again."""

    class Status(models.TextChoices):
        SENDING = "sending", "Sending (claimed)"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (will retry)"
        GAVE_UP = "gave_up", "Failed, not retried"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    assignee = models.ForeignKey(Assignee, on_delete=models.CASCADE, related_name="plan_emails")
    date = models.DateField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SENDING)
    attempts = models.PositiveSmallIntegerField(default=1)
    error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-date", "assignee_id"]
        constraints = [
            models.UniqueConstraint(fields=["assignee", "date"], name="tasks_app_planemail_unique_assignee_date"),
            models.CheckConstraint(
                condition=Q(status__in=["sending", "sent", "failed", "gave_up"]),
                name="tasks_app_planemail_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"plan email {self.assignee_id} {self.date}: {self.status}"
