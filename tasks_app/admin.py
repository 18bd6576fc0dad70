from django.contrib import admin, messages
from django.http import HttpResponseRedirect

from archangel.errors import Conflict
from tasks_app import services
from tasks_app.models import Assignee, AssigneeIdentity, Client, IdempotencyRecord, Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["title", "status", "priority", "score", "deadline", "assignee", "client", "provider", "updated_at"]
    list_filter = ["status", "priority", "provider", "source"]
    list_select_related = ["assignee", "client", "provider"]
    search_fields = ["title", "=id", "=external_id"]
    readonly_fields = [
        "id",
        "external_id",
        "score",
        "score_breakdown",
        "fingerprint",
        "version",
        "source",
        "effort_estimated",
        "last_progress_at",
        "completed_at",
        "created_at",
        "updated_at",
    ]
    raw_id_fields = ["assignee", "client"]
    show_full_result_count = False

    # Writes go through the services (normalization, transition rules, outbox events):
    # the API, and the admin actions that call the same services. The admin never edits
    # or deletes task rows directly; DELETE /api/tasks/{id} archives.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class IdentityInline(admin.TabularInline):
    model = AssigneeIdentity
    extra = 1


class DeleteThroughServiceMixin:
    """Deleting goes through the service, which refuses while open tasks remain."""

    delete_service = None

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_model(self, request, obj):
        try:
            type(self).delete_service(obj)
        except Conflict as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            raise _Refused from None

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except _Refused:
            return HttpResponseRedirect(request.path)


class _Refused(Exception):
    pass


@admin.register(Assignee)
class AssigneeAdmin(DeleteThroughServiceMixin, admin.ModelAdmin):
    delete_service = staticmethod(lambda obj: services.assignee_delete(assignee=obj))
    list_display = ["name", "email", "capacity_hours_per_day", "timezone", "active"]
    list_filter = ["active"]
    search_fields = ["name", "email"]
    inlines = [IdentityInline]


@admin.register(Client)
class ClientAdmin(DeleteThroughServiceMixin, admin.ModelAdmin):
    delete_service = staticmethod(lambda obj: services.client_delete(client=obj))
    list_display = ["name", "importance", "sla_hours", "preferred_provider"]
    search_fields = ["name"]


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ["key", "user", "response_status", "created_at"]
    readonly_fields = [
        "user",
        "key",
        "request_hash",
        "response_status",
        "response_body",
        "response_headers",
        "created_at",
    ]
