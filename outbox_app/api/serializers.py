from rest_framework import serializers

from outbox_app import services
from outbox_app.models import DeliveryAttempt, OutboxEvent


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["started_at", "duration_ms", "status_code", "outcome", "error", "worker"]
        read_only_fields = fields


class OutboxEventSerializer(serializers.ModelSerializer):
    """An event as operators see it. The payload is the task's provider-neutral state (no
    secrets: provider credentials live on the provider, encrypted, and never here)."""

    operation = serializers.CharField(source="operation_type")
    attempts = serializers.IntegerField(source="retry_count", help_text="Failed attempts so far.")

    class Meta:
        model = OutboxEvent
        fields = [
            "id",
            "provider",
            "aggregate_type",
            "aggregate_id",
            "aggregate_version",
            "operation",
            "status",
            "attempts",
            "scheduled_at",
            "locked_until",
            "first_claimed_at",
            "outcome_unknown",
            "last_status_code",
            "error_message",
            "idempotency_key",
            "payload",
            "processed_at",
            "delivered_at",
            "carried_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "carried_by": {
                "help_text": "Set on an event delivered by coalescing: the event whose request carried its "
                "state (see its attempts); this one sent no request of its own."
            }
        }


class OutboxEventDetailSerializer(OutboxEventSerializer):
    delivery_attempts = DeliveryAttemptSerializer(source="attempts_list", many=True, read_only=True)
    carried = serializers.SerializerMethodField(help_text="Events this one delivered by coalescing (their ids).")

    class Meta(OutboxEventSerializer.Meta):
        fields = [*OutboxEventSerializer.Meta.fields, "carried", "delivery_attempts"]
        read_only_fields = fields

    def get_carried(self, event) -> list[str]:
        # Served by the partial index outbox_event_carried_by.
        ids = event.carried.order_by("aggregate_version").values_list("id", flat=True)
        return [str(i) for i in ids]


class ProcessRequestSerializer(serializers.Serializer):
    batch_size = serializers.IntegerField(min_value=1, max_value=500, default=100)


class RequeueRequestSerializer(serializers.Serializer):
    assume_not_created = serializers.BooleanField(
        default=False,
        help_text="Creates only: no task from an earlier attempt exists at the provider (checked by an "
        "operator), so the create does not look for one first.",
    )


class AdoptRequestSerializer(serializers.Serializer):
    external_id = serializers.CharField(
        max_length=services.EXTERNAL_ID_MAX,
        help_text="The id at the provider of the task this create made (carrying its marker).",
    )


class ProcessResponseSerializer(serializers.Serializer):
    delivered = serializers.IntegerField()
    retried = serializers.IntegerField()
    deferred = serializers.IntegerField(help_text="Put off by a rate limit or an open breaker; not an attempt.")
    dead = serializers.IntegerField()
    discarded = serializers.IntegerField()
    stale = serializers.IntegerField(help_text="Results dropped because the lease was lost.")
    reclaimed = serializers.IntegerField(help_text="Events of lost workers made claimable again.")
