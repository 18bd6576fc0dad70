from django.contrib import admin

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

    def has_change_permission(self, request, obj=None):
        # Changes go through the API's service (transition rules, outbox events); the admin
        # actions of the ops console call the same services.
        return False


class IdentityInline(admin.TabularInline):
    model = AssigneeIdentity
    extra = 1


@admin.register(Assignee)
class AssigneeAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "capacity_hours_per_day", "timezone", "active"]
    list_filter = ["active"]
    search_fields = ["name", "email"]
    inlines = [IdentityInline]


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
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
