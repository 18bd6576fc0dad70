"""Internal events (issue 5 §5): other systems of ours tell Archangel that something happened.

``POST /api/events/task-created`` ingests a task from an internal system through the one
create path (normalizer, de-duplication, outbox event), with the same validation, error
envelope and Idempotency-Key support as ``POST /api/tasks``.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.views import APIView

from archangel.api import error_responses
from tasks_app.api.serializers import TaskSerializer, TaskWriteSerializer
from tasks_app.api.views import _idempotency_param, create_task_response


class TaskCreatedEventView(APIView):
    """A task created in an internal system (writers and operators)."""

    @extend_schema(
        summary="Ingest a task created by an internal system",
        request=TaskWriteSerializer,
        parameters=[_idempotency_param],
        responses={
            201: TaskSerializer,
            200: OpenApiResponse(TaskSerializer, description="An open duplicate exists; it is returned."),
            **error_responses(400, 401, 413, 422),
        },
    )
    def post(self, request):
        return create_task_response(request)
