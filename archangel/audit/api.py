"""GET /api/audit: the audit log, newest first, for operators."""

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets

from archangel.api import error_responses
from archangel.audit.models import AuditEntry
from archangel.filters import IsoDateTimeFilter
from archangel.permissions import OperatorOnly


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "at",
            "actor",
            "source",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "request_id",
        ]
        read_only_fields = fields


class AuditFilter(django_filters.FilterSet):
    since = IsoDateTimeFilter(field_name="at", lookup_expr="gte", help_text="ISO 8601, inclusive.")
    until = IsoDateTimeFilter(field_name="at", lookup_expr="lt", help_text="ISO 8601, exclusive.")
    actor = django_filters.CharFilter(help_text="Exact, e.g. user:alice or job:tasks.rescore.")
    object_type = django_filters.CharFilter(help_text="app.model, e.g. tasks_app.task.")

    class Meta:
        model = AuditEntry
        fields = ["actor", "source", "action", "object_type", "object_id", "request_id", "since", "until"]


@extend_schema_view(
    list=extend_schema(
        summary="The audit log",
        responses={200: AuditEntrySerializer(many=True), **error_responses(400, 401)},
    ),
    retrieve=extend_schema(
        summary="One audit entry", responses={200: AuditEntrySerializer, **error_responses(401, 404)}
    ),
)
class AuditViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every write through the API, the admin, webhooks and jobs: who, what, when, which fields (secrets masked)."""

    queryset = AuditEntry.objects.all()
    serializer_class = AuditEntrySerializer
    permission_classes = [OperatorOnly]
    filterset_class = AuditFilter
    ordering_fields = ["at"]
    ordering = ["-at", "-id"]
    lookup_value_regex = r"\d+"
