from django.conf import settings
from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from archangel.api import UUID_PATTERN, Pagination, error_responses
from archangel.errors import InvalidInput
from archangel.permissions import IsOperator
from tasks_app import plans, services
from tasks_app.api.filters import AssigneeFilter, ClientFilter, TaskFilter
from tasks_app.api.serializers import (
    AssigneeSerializer,
    ClientSerializer,
    DailyPlanListSerializer,
    DailyPlanSerializer,
    PlannerRequestSerializer,
    ProviderDownRequestSerializer,
    ProviderDownResponseSerializer,
    RoutingPreviewSerializer,
    TaskBulkRequestSerializer,
    TaskBulkResponseSerializer,
    TaskSerializer,
    TaskWriteSerializer,
)
from tasks_app.idempotency import HEADER as IDEMPOTENCY_HEADER
from tasks_app.idempotency import idempotent
from tasks_app.models import Assignee, Client, RoutingDecision, Task

DUPLICATE_HEADER = "X-Archangel-Duplicate"

_idempotency_param = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="A retry with the same key and body returns the first response and creates nothing; "
    "the same key with another body is a 422. Remembered for 24 hours.",
)


def create_task_response(request) -> Response:
    """POST a task (``/api/tasks`` and ``/api/events/task-created``): 201, or 200 with the open
    duplicate and its header; replayed for a repeated Idempotency-Key."""

    def handler():
        task, created = services.task_create(data=request.data)
        headers = {"Location": f"/api/tasks/{task.pk}"}
        if not created:
            headers[DUPLICATE_HEADER] = "true"
        return Response(
            TaskSerializer(task).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers=headers,
        )

    return idempotent(request, handler)


@extend_schema_view(
    list=extend_schema(summary="List tasks", responses={200: TaskSerializer(many=True), **error_responses(400, 401)}),
    retrieve=extend_schema(summary="Get a task", responses={200: TaskSerializer, **error_responses(401, 404)}),
)
class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Tasks. Every change writes its outbox event in the same transaction."""

    # Each task's routing decisions come with the page in one more query, newest first.
    queryset = Task.objects.prefetch_related(
        Prefetch("routing_decisions", queryset=RoutingDecision.objects.order_by("-created_at"), to_attr="_decisions")
    )
    serializer_class = TaskSerializer
    filterset_class = TaskFilter
    ordering_fields = ["score", "deadline", "created_at", "priority"]
    ordering = ["-created_at"]
    lookup_value_regex = UUID_PATTERN

    @extend_schema(
        summary="Create a task",
        request=TaskWriteSerializer,
        parameters=[_idempotency_param],
        responses={
            201: TaskSerializer,
            200: OpenApiResponse(
                TaskSerializer,
                description=f"An open task with the same fingerprint exists; it is returned and the "
                f"{DUPLICATE_HEADER}: true header is set.",
            ),
            **error_responses(400, 401, 422),
        },
    )
    def create(self, request):
        return create_task_response(request)

    @extend_schema(
        summary="Update a task (title required; fields left out keep their values)",
        request=TaskWriteSerializer,
        responses={200: TaskSerializer, **error_responses(400, 401, 404, 409)},
    )
    def update(self, request, pk=None):
        return self._update(request, pk, partial=False)

    @extend_schema(
        summary="Change some of a task's fields",
        request=TaskWriteSerializer(partial=True),
        responses={200: TaskSerializer, **error_responses(400, 401, 404, 409)},
    )
    def partial_update(self, request, pk=None):
        return self._update(request, pk, partial=True)

    def _update(self, request, pk, *, partial):
        task = services.task_update(task_id=pk, data=request.data, partial=partial)
        return Response(TaskSerializer(task).data)

    @extend_schema(summary="Archive a task (the row is kept)", responses={204: None, **error_responses(401, 404)})
    def destroy(self, request, pk=None):
        services.task_archive(task_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Create up to 1,000 tasks in one transaction",
        request=TaskBulkRequestSerializer,
        parameters=[_idempotency_param],
        responses={
            201: OpenApiResponse(TaskBulkResponseSerializer, description="At least one task was created."),
            200: OpenApiResponse(
                TaskBulkResponseSerializer, description="Nothing new: every valid item was a duplicate."
            ),
            **error_responses(400, 401, 422),
        },
    )
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk(self, request):
        body = request.data
        items = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise InvalidInput({"tasks": ["Must be a non-empty list of tasks."]})
        unknown = sorted(set(body) - {"tasks"})
        if unknown:
            raise InvalidInput({name: ["Unknown field."] for name in unknown})
        limit = settings.ARCHANGEL["BULK_MAX_ITEMS"]
        if len(items) > limit:
            raise InvalidInput({"tasks": [f"At most {limit} tasks per request; got {len(items)}."]})

        def handler():
            results = services.task_bulk_create(items=items)
            errors = {f"tasks.{r.index}.{name}": msgs for r in results for name, msgs in r.errors.items()}
            if all(r.status == "error" for r in results):
                raise InvalidInput(errors, message=f"None of the {len(results)} tasks is valid; nothing was created.")
            counts = {s: sum(1 for r in results if r.status == s) for s in ("created", "duplicate", "error")}
            data = {
                "created": counts["created"],
                "duplicates": counts["duplicate"],
                "errors": counts["error"],
                "results": [
                    {"index": r.index, "status": r.status, "errors": r.errors}
                    if r.status == "error"
                    else {"index": r.index, "status": r.status, "id": str(r.task.pk)}
                    for r in results
                ],
            }
            return Response(data, status=status.HTTP_201_CREATED if counts["created"] else status.HTTP_200_OK)

        return idempotent(request, handler)


_crud_errors = {
    "list": error_responses(400, 401),
    "retrieve": error_responses(401, 404),
    "create": error_responses(400, 401),
    "update": error_responses(400, 401, 404),
    "partial_update": error_responses(400, 401, 404),
    "destroy": error_responses(401, 404, 409),
}


def _crud_schema(noun: str, serializer):
    return extend_schema_view(
        list=extend_schema(summary=f"List {noun}s", responses={200: serializer(many=True), **_crud_errors["list"]}),
        retrieve=extend_schema(summary=f"Get a {noun}", responses={200: serializer, **_crud_errors["retrieve"]}),
        create=extend_schema(summary=f"Create a {noun}", responses={201: serializer, **_crud_errors["create"]}),
        update=extend_schema(summary=f"Replace a {noun}", responses={200: serializer, **_crud_errors["update"]}),
        partial_update=extend_schema(
            summary=f"Change a {noun}", responses={200: serializer, **_crud_errors["partial_update"]}
        ),
        destroy=extend_schema(
            summary=f"Delete a {noun} (refused with 409 while it has open tasks)",
            responses={204: None, **_crud_errors["destroy"]},
        ),
    )


@_crud_schema("assignee", AssigneeSerializer)
class AssigneeViewSet(viewsets.ModelViewSet):
    """People work is routed to."""

    queryset = Assignee.objects.prefetch_related("identities")
    serializer_class = AssigneeSerializer
    filterset_class = AssigneeFilter
    ordering_fields = ["name", "email", "created_at"]
    ordering = ["name"]
    lookup_value_regex = UUID_PATTERN

    def perform_destroy(self, instance):
        services.assignee_delete(assignee=instance)


@_crud_schema("client", ClientSerializer)
class ClientViewSet(viewsets.ModelViewSet):
    """Who the work is for."""

    queryset = Client.objects.all()
    serializer_class = ClientSerializer
    filterset_class = ClientFilter
    ordering_fields = ["name", "importance", "created_at"]
    ordering = ["name"]
    lookup_value_regex = UUID_PATTERN

    def perform_destroy(self, instance):
        services.client_delete(client=instance)


class RoutingPreviewView(APIView):
    """The routing decision for a task body, as ``POST /api/tasks`` would make it; writes nothing."""

    @extend_schema(
        summary="Preview the routing of a task",
        request=TaskWriteSerializer,
        responses={200: RoutingPreviewSerializer, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        return Response(services.routing_preview(data=request.data))


class ProviderDownView(APIView):
    """Operators report a provider down: new work routes around it and its undelivered tasks
    follow ``ARCHANGEL_PROVIDER_DOWN_POLICY`` (or the ``policy`` given)."""

    permission_classes = [IsOperator]

    @extend_schema(
        summary="Report a provider down",
        request=ProviderDownRequestSerializer,
        responses={200: ProviderDownResponseSerializer, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        serializer = ProviderDownRequestSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return Response(services.provider_went_down(provider_id=data["provider"], policy=data.get("policy")))


class DailyPlannerView(APIView):
    """Daily plans: POST builds (and stores) them, GET reads the stored ones."""

    @extend_schema(
        summary="Build the daily plans",
        request=PlannerRequestSerializer,
        responses={200: DailyPlanListSerializer, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        serializer = PlannerRequestSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        unknown = sorted(set(body) - set(serializer.fields))
        if unknown:
            raise InvalidInput({name: ["Unknown field."] for name in unknown})
        data = serializer.validated_data
        built = plans.plans_build(date=data.get("date"), assignee_id=data.get("assignee"))
        return Response({"plans": DailyPlanSerializer(built, many=True).data})

    @extend_schema(
        summary="Read stored daily plans",
        parameters=[
            OpenApiParameter("date", OpenApiTypes.DATE, description="Only this day (YYYY-MM-DD)."),
            OpenApiParameter("assignee", OpenApiTypes.UUID, description="Only this person."),
            OpenApiParameter("page", OpenApiTypes.INT),
            OpenApiParameter("page_size", OpenApiTypes.INT),
        ],
        # An APIView's pagination is invisible to drf-spectacular: describe the page itself.
        responses={
            200: inline_serializer(
                "PaginatedDailyPlanList",
                {
                    "count": serializers.IntegerField(),
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": DailyPlanSerializer(many=True),
                },
            ),
            **error_responses(400, 401),
        },
    )
    def get(self, request):
        serializer = PlannerRequestSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        rows = plans.plans_stored(date=data.get("date"), assignee_id=data.get("assignee"))
        paginator = Pagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(DailyPlanSerializer(page, many=True).data)
