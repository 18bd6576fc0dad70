"""GET /api/usage/predictions: rate budgets, their forecast and the backlog waiting for them."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from archangel.api import error_responses
from outbox_app.predictions import usage_predictions
from providers_app.api.serializers import BudgetSerializer


class ProviderBacklogSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    failed = serializers.IntegerField()
    total = serializers.IntegerField()
    capped = serializers.BooleanField(help_text="Counts stop at 10,000.")


class ProviderUsageSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    type = serializers.CharField()
    health_status = serializers.CharField()
    breaker = serializers.CharField(help_text="closed, half-open or open.")
    budgets = BudgetSerializer(many=True)
    runs_out_in_seconds = serializers.FloatField(
        allow_null=True, help_text="The soonest of the budgets' forecasts; null when none runs out at this rate."
    )
    backlog = ProviderBacklogSerializer(help_text="Outbox events waiting for this provider (pending, failed).")
    error = serializers.CharField(allow_null=True)


class UsagePredictionsSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField()
    providers = ProviderUsageSerializer(many=True)


class UsagePredictionsView(APIView):
    """Read-only: any authenticated role."""

    @extend_schema(
        summary="Rate-limit usage predictions",
        description="Per provider credential: requests in the current window against the limit, the recent rate, "
        "when the budget runs out at that rate (null if never), and the outbox events waiting for that provider.",
        responses={200: UsagePredictionsSerializer, **error_responses(401)},
    )
    def get(self, request):
        return Response(UsagePredictionsSerializer(usage_predictions()).data)
