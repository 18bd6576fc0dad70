from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from archangel.api import UUID_PATTERN, error_responses
from archangel.permissions import IsOperator
from providers_app import services
from providers_app import status as provider_status
from providers_app.api.serializers import ProviderHealthSerializer, ProviderSerializer
from providers_app.models import Provider


@extend_schema_view(
    list=extend_schema(
        summary="List providers", responses={200: ProviderSerializer(many=True), **error_responses(400, 401)}
    ),
    retrieve=extend_schema(summary="Get a provider", responses={200: ProviderSerializer, **error_responses(401, 404)}),
    create=extend_schema(summary="Add a provider", responses={201: ProviderSerializer, **error_responses(400, 401)}),
    update=extend_schema(
        summary="Replace a provider's settings", responses={200: ProviderSerializer, **error_responses(400, 401, 404)}
    ),
    partial_update=extend_schema(
        summary="Change some settings", responses={200: ProviderSerializer, **error_responses(400, 401, 404)}
    ),
)
class ProviderViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Provider accounts. Secrets are encrypted at rest and never returned."""

    queryset = Provider.objects.all()
    serializer_class = ProviderSerializer
    # Everyone may read (secrets never leave); only operators add or change providers.
    permission_classes = [IsOperator]
    filterset_fields = ["type", "health_status"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    lookup_value_regex = UUID_PATTERN

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.provider_create(
            name=data["name"],
            type=data["type"],
            config=data["config"],
            weight=data.get("weight", 100),
            health_status=data.get("health_status", Provider.Health.ACTIVE),
        )

    def perform_update(self, serializer):
        serializer.instance = services.provider_update(
            provider=serializer.instance, data=serializer.validated_data, partial=serializer.partial
        )

    @extend_schema(
        summary="Provider health",
        description="Breaker state, rate budgets with their forecast, and the last error; with `?check=1` "
        "also a live call to the provider's cheapest endpoint (within its rate budget).",
        parameters=[OpenApiParameter("check", bool, required=False)],
        responses={200: ProviderHealthSerializer, **error_responses(401, 404)},
    )
    @action(detail=True, methods=["get"])
    def health(self, request, pk=None):
        provider = self.get_object()
        check = request.query_params.get("check", "").lower() in {"1", "true", "yes"}
        body = provider_status.provider_health(provider, check=check)
        return Response(ProviderHealthSerializer(body).data, status=status.HTTP_200_OK)
