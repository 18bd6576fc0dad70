from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import bad_request, page_not_found, server_error
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from archangel.api import error_body
from archangel.audit.api import AuditViewSet
from archangel.metrics_view import metrics_view
from outbox_app.api.predictions import UsagePredictionsView
from outbox_app.api.views import OutboxEventViewSet
from providers_app.api.views import ProviderViewSet
from providers_app.api.webhooks import webhook_view
from tasks_app.api.analytics_views import PerformanceView, WorkloadView
from tasks_app.api.events import TaskCreatedEventView
from tasks_app.api.health import HealthView
from tasks_app.api.views import (
    AssigneeViewSet,
    ClientViewSet,
    DailyPlannerView,
    ProviderDownView,
    RoutingPreviewView,
    TaskViewSet,
)

router = SimpleRouter(trailing_slash=False)
router.register("tasks", TaskViewSet, basename="task")
router.register("providers", ProviderViewSet, basename="provider")
router.register("assignees", AssigneeViewSet, basename="assignee")
router.register("clients", ClientViewSet, basename="client")
router.register("audit", AuditViewSet, basename="audit")
router.register("outbox", OutboxEventViewSet, basename="outbox-event")

urlpatterns = [
    path("api/health", HealthView.as_view(), name="health"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # Signed by the provider instead of a token (docs/provider-apis.md §4).
    path("api/webhooks/<str:provider_type>", webhook_view, name="webhook"),
    path("api/webhooks/<str:provider_type>/<uuid:provider_id>", webhook_view, name="webhook-provider"),
    path("api/events/task-created", TaskCreatedEventView.as_view(), name="event-task-created"),
    path("api/routing/preview", RoutingPreviewView.as_view(), name="routing-preview"),
    path("api/planner/daily", DailyPlannerView.as_view(), name="planner-daily"),
    path("api/analytics/workload", WorkloadView.as_view(), name="analytics-workload"),
    path("api/analytics/performance", PerformanceView.as_view(), name="analytics-performance"),
    path("api/events/provider-down", ProviderDownView.as_view(), name="provider-down"),
    path("api/usage/predictions", UsagePredictionsView.as_view(), name="usage-predictions"),
    path("api/", include(router.urls)),
    path("admin/", admin.site.urls),
    # django-prometheus's metrics plus the domain and outbox metrics, restricted in production.
    path("metrics", metrics_view, name="metrics"),
]


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def handler404(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body(404, "not_found", f"No endpoint at {request.path}."), status=404)
    return page_not_found(request, exception)


def handler400(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body(400, "bad_request", "Bad request."), status=400)
    return bad_request(request, exception)


def handler500(request):
    if _is_api(request):
        return JsonResponse(error_body(500, "server_error", "Internal server error; it has been logged."), status=500)
    return server_error(request)
