import django_filters

from outbox_app.models import OutboxEvent


class OutboxEventFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=OutboxEvent.Status.choices, help_text="Repeat to match several."
    )
    provider = django_filters.UUIDFilter(field_name="provider_id")
    operation = django_filters.ChoiceFilter(field_name="operation_type", choices=OutboxEvent.Operation.choices)
    task = django_filters.UUIDFilter(field_name="aggregate_id", help_text="The task (aggregate) the events change.")
    carried_by = django_filters.UUIDFilter(
        field_name="carried_by_id", help_text="The events one event delivered by coalescing."
    )
    coalesced = django_filters.BooleanFilter(
        field_name="carried_by", lookup_expr="isnull", exclude=True, help_text="Delivered by another event's request."
    )

    class Meta:
        model = OutboxEvent
        fields = ["status", "provider", "operation", "task", "carried_by", "coalesced"]
