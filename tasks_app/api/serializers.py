"""Task, assignee and client serializers.

Task input is validated by :mod:`tasks_app.normalizer` (one set of rules for the
API, bulk, webhooks and imports, and fast enough for 1,000-task bulk requests);
``TaskWriteSerializer`` only documents that input in the OpenAPI schema.
"""

from rest_framework import serializers

from providers_app.models import Provider
from tasks_app import services
from tasks_app.models import Assignee, AssigneeIdentity, Client, DailyPlan, RoutingDecision, Task
from tasks_app.normalizer import DEADLINE_MAX, DEADLINE_MIN, DESCRIPTION_MAX, TITLE_MAX
from tasks_app.status import TaskStatus


class DayField(serializers.DateField):
    """A day (YYYY-MM-DD) in the years deadlines may fall in: days computed from it (the week
    before, the day after, the time zones around it) stay within what dates can hold."""

    def to_internal_value(self, value):
        day = super().to_internal_value(value)
        if not DEADLINE_MIN.date() <= day <= DEADLINE_MAX.date():
            raise serializers.ValidationError(
                f"Must be between {DEADLINE_MIN.date().isoformat()} and {DEADLINE_MAX.date().isoformat()}."
            )
        return day


class RoutingDecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = RoutingDecision
        fields = [
            "id",
            "trigger",
            "provider",
            "assignee",
            "chose_provider",
            "reason",
            "over_capacity",
            "margin_hours",
            "duration_ms",
            "candidates",
            "created_at",
        ]
        read_only_fields = fields


def routing_json(decision: RoutingDecision | None) -> dict | None:
    if decision is None:
        return None
    return {
        "id": str(decision.id),
        "trigger": decision.trigger,
        "provider": _id(decision.provider_id),
        "assignee": _id(decision.assignee_id),
        "chose_provider": decision.chose_provider,
        "reason": decision.reason,
        "over_capacity": decision.over_capacity,
        "margin_hours": decision.margin_hours,
        "duration_ms": decision.duration_ms,
        "candidates": decision.candidates,
        "created_at": _datetime(decision.created_at),
    }


_UNSET = object()


def latest_decision(task: Task) -> RoutingDecision | None:
    """The task's latest routing decision: set by the create path, prefetched by the list
    (``to_attr="_decisions"``), or read."""
    decision = getattr(task, "_routing", _UNSET)
    if decision is not _UNSET:
        return decision
    prefetched = getattr(task, "_decisions", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return RoutingDecision.objects.filter(task_id=task.pk).order_by("-created_at").first()


class TaskSerializer(serializers.ModelSerializer):
    effort_hours = serializers.FloatField(allow_null=True)
    score_breakdown = serializers.JSONField()
    routing = serializers.SerializerMethodField(help_text="The latest routing decision (null: not routed).")

    def get_routing(self, instance: Task) -> dict | None:
        return routing_json(latest_decision(instance))

    class Meta:
        model = Task
        fields = [
            "id",
            "title",
            "description",
            "status",
            "priority",
            "effort_hours",
            "effort_estimated",
            "deadline",
            "assignee",
            "client",
            "provider",
            "external_id",
            "score",
            "score_breakdown",
            "routing",
            "source",
            "version",
            "last_progress_at",
            "completed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Task) -> dict:
        """The same JSON as DRF's generic path (a test holds them equal), built directly:
        ModelSerializer rebuilds its fields for every instance, which dominated the cost
        of a create."""
        return {
            "id": str(instance.id),
            "title": instance.title,
            "description": instance.description,
            "status": instance.status,
            "priority": instance.priority,
            "effort_hours": float(instance.effort_hours) if instance.effort_hours is not None else None,
            "effort_estimated": instance.effort_estimated,
            "deadline": _datetime(instance.deadline),
            "assignee": _id(instance.assignee_id),
            "client": _id(instance.client_id),
            "provider": _id(instance.provider_id),
            "external_id": instance.external_id,
            "score": instance.score,
            "score_breakdown": instance.score_breakdown,
            "routing": routing_json(latest_decision(instance)),
            "source": instance.source,
            "version": instance.version,
            "last_progress_at": _datetime(instance.last_progress_at),
            "completed_at": _datetime(instance.completed_at),
            "created_at": _datetime(instance.created_at),
            "updated_at": _datetime(instance.updated_at),
        }


_DATETIME_FIELD = serializers.DateTimeField()


def _datetime(value):
    return _DATETIME_FIELD.to_representation(value) if value is not None else None


def _id(value):
    return str(value) if value is not None else None


class TaskWriteSerializer(serializers.Serializer):
    """The body of POST /api/tasks and PUT/PATCH /api/tasks/{id} (documentation only)."""

    title = serializers.CharField(max_length=TITLE_MAX, help_text="Trimmed; inner whitespace collapsed.")
    description = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=DESCRIPTION_MAX)
    status = serializers.ChoiceField(
        choices=TaskStatus.choices,
        required=False,
        help_text="On create: pending (default, or assigned when an assignee is given) or one step from it. "
        "On update: must follow the transition rules (409 lists the allowed targets).",
    )
    priority = serializers.IntegerField(
        required=False, min_value=1, max_value=4, help_text="1 low, 2 normal (default), 3 high, 4 urgent."
    )
    effort_hours = serializers.DecimalField(
        max_digits=6,
        decimal_places=2,
        required=False,
        allow_null=True,
        min_value=0,
        max_value=1000,
        help_text="Estimated from priority and description when missing (effort_estimated: true).",
    )
    deadline = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="ISO 8601 date-time (naive = UTC) or date (= end of that day, UTC).",
    )
    assignee = serializers.UUIDField(required=False, allow_null=True)
    client = serializers.UUIDField(required=False, allow_null=True)
    provider = serializers.UUIDField(required=False, allow_null=True, help_text="Fixed at creation.")


class TaskBulkRequestSerializer(serializers.Serializer):
    tasks = TaskWriteSerializer(many=True, help_text="1 to ARCHANGEL_BULK_MAX_ITEMS (default 1,000) tasks.")


class TaskBulkItemSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the item in the request.")
    status = serializers.ChoiceField(choices=["created", "duplicate", "error"])
    id = serializers.UUIDField(required=False, help_text="The created task, or the open task it duplicates.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


class TaskBulkResponseSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    errors = serializers.IntegerField()
    results = TaskBulkItemSerializer(many=True)


class IdentitySerializer(serializers.ModelSerializer):
    provider = serializers.PrimaryKeyRelatedField(queryset=Provider.objects.all())

    class Meta:
        model = AssigneeIdentity
        fields = ["provider", "external_user_id"]


class AssigneeSerializer(serializers.ModelSerializer):
    capacity_hours_per_day = serializers.DecimalField(
        max_digits=4, decimal_places=2, min_value=0, max_value=24, coerce_to_string=False, required=False
    )
    identities = IdentitySerializer(many=True, required=False, help_text="The person's user id in each provider.")

    class Meta:
        model = Assignee
        fields = [
            "id",
            "name",
            "email",
            "capacity_hours_per_day",
            "timezone",
            "active",
            "identities",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_identities(self, value):
        seen_providers = set()
        for item in value:
            if item["provider"].pk in seen_providers:
                raise serializers.ValidationError("At most one identity per provider.")
            seen_providers.add(item["provider"].pk)
            others = AssigneeIdentity.objects.filter(
                provider=item["provider"], external_user_id=item["external_user_id"]
            )
            if self.instance is not None:
                others = others.exclude(assignee=self.instance)
            if others.exists():
                raise serializers.ValidationError(
                    f"User id {item['external_user_id']!r} at {item['provider'].name} belongs to another assignee."
                )
        return value

    def create(self, validated_data):
        return services.assignee_save(assignee=None, data=validated_data)

    def update(self, instance, validated_data):
        return services.assignee_save(assignee=instance, data=validated_data)


class ClientSerializer(serializers.ModelSerializer):
    importance = serializers.DecimalField(
        max_digits=3, decimal_places=2, min_value=0, max_value=1, coerce_to_string=False, required=False
    )

    class Meta:
        model = Client
        fields = ["id", "name", "importance", "sla_hours", "preferred_provider", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"sla_hours": {"min_value": 1}}


class RoutingPreviewSerializer(serializers.Serializer):
    provider = serializers.UUIDField(allow_null=True)
    assignee = serializers.UUIDField(allow_null=True)
    chose_provider = serializers.BooleanField()
    over_capacity = serializers.BooleanField()
    margin_hours = serializers.FloatField(allow_null=True)
    reason = serializers.CharField()
    candidates = serializers.ListField(child=serializers.DictField())
    duration_ms = serializers.FloatField()
    effort_hours = serializers.FloatField(allow_null=True)
    score = serializers.FloatField()


class ProviderDownRequestSerializer(serializers.Serializer):
    provider = serializers.UUIDField()
    policy = serializers.ChoiceField(
        choices=["wait", "move"], required=False, help_text="Default: ARCHANGEL_PROVIDER_DOWN_POLICY."
    )


class ProviderDownResponseSerializer(serializers.Serializer):
    provider = serializers.UUIDField()
    policy = serializers.ChoiceField(choices=["wait", "move"])
    moved = serializers.IntegerField(help_text="Tasks moved to another provider.")
    waiting = serializers.IntegerField(help_text="Undelivered tasks still on the provider.")


class PlannerRequestSerializer(serializers.Serializer):
    date = DayField(required=False, allow_null=True, help_text="YYYY-MM-DD; default: each person's today.")
    assignee = serializers.UUIDField(required=False, allow_null=True, help_text="Default: every active assignee.")


class DailyPlanItemSerializer(serializers.Serializer):
    task = serializers.UUIDField()
    title = serializers.CharField()
    hours = serializers.FloatField()
    score = serializers.FloatField()
    deadline = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField()
    kind = serializers.ChoiceField(choices=["overdue", "critical", "rolled_over", "by_score"])
    over_capacity = serializers.BooleanField(required=False, help_text="Overdue work planned beyond capacity.")


class DailyPlanSerializer(serializers.ModelSerializer):
    assignee_name = serializers.CharField(source="assignee.name", read_only=True)
    capacity_hours = serializers.FloatField()
    items = DailyPlanItemSerializer(many=True)
    not_fitting = DailyPlanItemSerializer(many=True)

    class Meta:
        model = DailyPlan
        fields = [
            "id",
            "assignee",
            "assignee_name",
            "date",
            "capacity_hours",
            "planned_hours",
            "over_capacity_hours",
            "items",
            "not_fitting",
            "generated_at",
        ]
        read_only_fields = fields


class DailyPlanListSerializer(serializers.Serializer):
    plans = DailyPlanSerializer(many=True)
