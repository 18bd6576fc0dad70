from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from archangel.api import UUID_PATTERN, error_responses
from archangel.permissions import IsOperator
from outbox_app import services
from outbox_app.api.filters import OutboxEventFilter
from outbox_app.api.serializers import (
    AdoptRequestSerializer,
    OutboxEventDetailSerializer,
    OutboxEventSerializer,
    ProcessRequestSerializer,
    ProcessResponseSerializer,
    RequeueRequestSerializer,
)
from outbox_app.drain import drain
from outbox_app.models import DeliveryAttempt, OutboxEvent


@extend_schema_view(
    list=extend_schema(
        summary="List outbox events (newest first)",
        responses={200: OutboxEventSerializer(many=True), **error_responses(400, 401)},
    ),
    retrieve=extend_schema(
        summary="Get an outbox event with its delivery attempts",
        responses={200: OutboxEventDetailSerializer, **error_responses(401, 404)},
    ),
)
class OutboxEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Outbox events and their delivery. Everyone may read; only operators requeue, adopt, discard or process."""

    queryset = OutboxEvent.objects.all()
    serializer_class = OutboxEventSerializer
    permission_classes = [IsOperator]
    filterset_class = OutboxEventFilter
    ordering_fields = ["created_at", "scheduled_at"]
    ordering = ["-created_at"]
    lookup_value_regex = UUID_PATTERN

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "retrieve":
            attempts = DeliveryAttempt.objects.order_by("started_at", "id")
            queryset = queryset.prefetch_related(Prefetch("attempts", attempts, to_attr="attempts_list"))
        return queryset

    def get_serializer_class(self):
        return OutboxEventDetailSerializer if self.action == "retrieve" else OutboxEventSerializer

    def _detail(self, event) -> Response:
        event.attempts_list = list(event.attempts.order_by("started_at", "id"))
        return Response(OutboxEventDetailSerializer(event).data)

    @extend_schema(
        summary="Requeue a dead or failed event (pending, due now, attempts reset)",
        description=(
            "The body is optional. `assume_not_created: true` (creates only) says an operator checked the "
            "provider and no task from an earlier attempt exists, so the create does not look for one first: "
            "the way out of a `lookup_incomplete` dead letter."
        ),
        request=RequeueRequestSerializer,
        responses={200: OutboxEventDetailSerializer, **error_responses(400, 401, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def requeue(self, request, pk=None):
        serializer = RequeueRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._detail(services.outbox_requeue(event_id=pk, **serializer.validated_data))

    @extend_schema(
        summary="Settle a dead or failed create with a task found at the provider",
        description=(
            "For a create whose earlier attempt may have made the task (a `lookup_incomplete` dead letter): "
            "an operator found the task carrying the event's reference marker and gives its id. The event "
            "becomes delivered without a request, the task takes that id, and its later events go ahead."
        ),
        request=AdoptRequestSerializer,
        responses={200: OutboxEventDetailSerializer, **error_responses(400, 401, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def adopt(self, request, pk=None):
        serializer = AdoptRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._detail(services.outbox_adopt(event_id=pk, **serializer.validated_data))

    @extend_schema(
        summary="Discard a dead event: never sent; later events of its task go ahead",
        request=inline_serializer(
            "OutboxDiscardRequest",
            {
                "reason": serializers.CharField(
                    max_length=services.DISCARD_REASON_MAX, help_text="Kept in the audit log."
                )
            },
        ),
        responses={200: OutboxEventDetailSerializer, **error_responses(400, 401, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def discard(self, request, pk=None):
        body = request.data if isinstance(request.data, dict) else {}
        return self._detail(services.outbox_discard(event_id=pk, reason=body.get("reason")))

    @extend_schema(
        summary="Drain one batch now, synchronously",
        request=ProcessRequestSerializer,
        responses={200: ProcessResponseSerializer, **error_responses(400, 401)},
    )
    @action(detail=False, methods=["post"])
    def process(self, request):
        serializer = ProcessRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # max_seconds=0: exactly one claimed batch (plus reclaiming expired leases), so a
        # request is bounded by batch_size deliveries whatever the backlog.
        counts = drain(batch_size=serializer.validated_data["batch_size"], max_seconds=0)
        return Response(counts)
