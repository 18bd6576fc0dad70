from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from archangel.admin_site import CappedCountPaginator
from archangel.errors import Conflict
from tasks_app import ops, services
from tasks_app.models import (
    Assignee,
    AssigneeIdentity,
    Client,
    DailyPlan,
    IdempotencyRecord,
    PlanEmail,
    RoutingDecision,
    SyncConflict,
    Task,
)
from tasks_app.status import CLOSED


class ReadOnlyAdminMixin:
    """Rows written by services only; the admin shows them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RoutingDecisionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = RoutingDecision
    fk_name = "task"
    fields = ["created_at", "trigger", "provider", "assignee", "over_capacity", "margin_hours", "reason", "duration_ms"]
    readonly_fields = fields
    ordering = ["-created_at"]
    extra = 0
    show_change_link = True


@admin.register(RoutingDecision)
class RoutingDecisionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "task",
        "trigger",
        "provider",
        "assignee",
        "over_capacity",
        "margin_hours",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["trigger", "over_capacity", "provider"]
    list_select_related = ["task", "provider", "assignee"]
    search_fields = ["=task__id", "task__title"]
    readonly_fields = [f.name for f in RoutingDecision._meta.fields]
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(DailyPlan)
class DailyPlanAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The stored plans, exactly as emailed and served by GET /api/planner/daily."""

    list_display = ["date", "assignee", "item_count", "planned_hours", "capacity_hours", "over_capacity_hours"]
    list_filter = ["date"]
    list_select_related = ["assignee"]
    search_fields = ["assignee__name", "assignee__email"]
    date_hierarchy = "date"
    fields = ["assignee", "date", "capacity_hours", "planned_hours", "over_capacity_hours", "plan", "generated_at"]
    readonly_fields = fields

    @admin.display(description="items")
    def item_count(self, obj):
        return len(obj.items)

    @admin.display(description="plan")
    def plan(self, obj):
        lines = [
            f"{i}. {item['title']} ({item['hours']} h){' [beyond capacity]' if item.get('over_capacity') else ''}"
            f" - {item['reason']}"
            for i, item in enumerate(obj.items, 1)
        ]
        if obj.not_fitting:
            lines.append("Did not fit:")
            lines += [f"- {item['title']} ({item['hours']} h) - {item['reason']}" for item in obj.not_fitting]
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines)) or "-"


@admin.register(PlanEmail)
class PlanEmailAdmin(admin.ModelAdmin):
    """Who got their plan email, per day. Deleting a row lets the next job run send that day's email again."""

    list_display = ["date", "assignee", "status", "attempts", "sent_at"]
    list_filter = ["status", "date"]
    list_select_related = ["assignee"]
    readonly_fields = ["assignee", "date", "status", "attempts", "error", "sent_at", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "Overdue (open, deadline passed)")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(status__in=CLOSED).filter(deadline__lt=timezone.now())
        return queryset


class SlaAtRiskFilter(admin.SimpleListFilter):
    """Open tasks that have used 80% or more of their client's SLA window (the score's
    sla_pressure factor, refreshed by the rescoring job)."""

    title = "SLA at risk"
    parameter_name = "sla_at_risk"

    def lookups(self, request, model_admin):
        return [("yes", "80% or more of the SLA window used")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(status__in=CLOSED).filter(score_breakdown__sla_pressure__gte=0.8)
        return queryset


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    paginator = CappedCountPaginator  # bounded COUNT(*) on a big table
    inlines = [RoutingDecisionInline]
    list_display = ["title", "status", "priority", "score", "deadline", "assignee", "client", "provider", "updated_at"]
    list_filter = ["status", OverdueFilter, SlaAtRiskFilter, "priority", "provider", "assignee", "client", "source"]
    actions = ["rescore", "reroute", "archive", "resend"]
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

    @admin.action(description="Rescore now")
    def rescore(self, request, queryset):
        changed = ops.tasks_rescore(task_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Rescored; {changed} score(s) changed.", messages.SUCCESS)

    @admin.action(description="Reroute undelivered tasks to another provider")
    def reroute(self, request, queryset):
        ids = list(queryset.values_list("id", flat=True))
        moved = ops.tasks_reroute(task_ids=ids)
        level = messages.SUCCESS if moved else messages.WARNING
        self.message_user(
            request,
            f"Moved {moved} of {len(ids)}; delivered, closed or in-flight tasks stay where they are.",
            level,
        )

    @admin.action(description="Archive")
    def archive(self, request, queryset):
        done = 0
        for task_id in queryset.values_list("id", flat=True):
            services.task_archive(task_id=task_id)
            done += 1
        self.message_user(request, f"Archived {done} task(s).", messages.SUCCESS)

    @admin.action(description="Resend current state to the provider")
    def resend(self, request, queryset):
        for task in queryset:
            try:
                ops.task_resend(task_id=task.id)
            except Conflict as exc:
                self.message_user(request, f"{task.title}: {exc.message}", messages.WARNING)
            else:
                self.message_user(request, f"{task.title}: queued for delivery.", messages.SUCCESS)


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


@admin.register(SyncConflict)
class SyncConflictAdmin(admin.ModelAdmin):
    """Every field both sides changed since the last sync, with both values and the winner."""

    list_display = ["created_at", "task", "provider", "field", "winner", "local_changed_at", "remote_changed_at"]
    list_filter = ["winner", "field", "provider"]
    list_select_related = ["task", "provider"]
    readonly_fields = [f.name for f in SyncConflict._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
