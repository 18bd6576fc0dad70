"""GET /api/analytics/workload and /api/analytics/performance."""

import datetime as dt

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from archangel.api import error_responses
from tasks_app import analytics
from tasks_app.api.serializers import DayField

MAX_RANGE_DAYS = 366
DEFAULT_PERFORMANCE_DAYS = 30


class DateRangeSerializer(serializers.Serializer):
    """``from`` (inclusive) and ``to`` (inclusive) days, YYYY-MM-DD, UTC."""

    def get_fields(self):
        return {
            "from": DayField(required=False, help_text="First day (YYYY-MM-DD, UTC), inclusive."),
            "to": DayField(required=False, help_text="Last day (YYYY-MM-DD, UTC), inclusive."),
        }

    def validate(self, attrs):
        start, end = attrs.get("from"), attrs.get("to")
        if start and end and start > end:
            raise serializers.ValidationError({"to": ["Must not be before from."]})
        if start and end and (end - start).days >= MAX_RANGE_DAYS:
            raise serializers.ValidationError({"to": [f"The range may span at most {MAX_RANGE_DAYS} days."]})
        return attrs


def _bounds(request, *, default_days: int | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    unknown = sorted(set(request.query_params) - {"from", "to"})
    if unknown:
        raise serializers.ValidationError({name: ["Unknown parameter."] for name in unknown})
    serializer = DateRangeSerializer(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    start, end = serializer.validated_data.get("from"), serializer.validated_data.get("to")
    if default_days is not None:
        end = end or timezone.now().date()
        start = start or end - dt.timedelta(days=default_days - 1)
        if start > end:
            raise serializers.ValidationError({"from": ["Must not be after to."]})

    def midnight(day):
        return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC) if day else None

    return midnight(start), midnight(end + dt.timedelta(days=1)) if end else None


_range_params = [
    OpenApiParameter("from", OpenApiTypes.DATE, description="First day (UTC), inclusive."),
    OpenApiParameter("to", OpenApiTypes.DATE, description="Last day (UTC), inclusive."),
]


class WorkloadView(APIView):
    """Open work per assignee and per provider."""

    @extend_schema(
        summary="Workload per assignee and per provider",
        description="Open tasks, open effort hours, capacity utilization (open effort hours over daily "
        "capacity), overdue and SLA-at-risk counts; `from`/`to` limit it to tasks created in those days.",
        parameters=_range_params,
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401)},
    )
    def get(self, request):
        start, end = _bounds(request, default_days=None)
        return Response(analytics.workload(start=start, end=end))


class PerformanceView(APIView):
    """Throughput, cycle time, SLA compliance, delivery and routing latency."""

    @extend_schema(
        summary="Performance over a date range (default: the last 30 days)",
        description="Throughput per day, cycle time percentiles (hours), SLA compliance, outbox delivery "
        "latency p50/p95 (seconds), failure and dead-letter rates per provider, routing decision latency (ms).",
        parameters=_range_params,
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401)},
    )
    def get(self, request):
        start, end = _bounds(request, default_days=DEFAULT_PERFORMANCE_DAYS)
        return Response(analytics.performance(start=start, end=end))
