from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from archangel.admin_site import CappedCountPaginator
from archangel.errors import DomainError
from outbox_app import services
from outbox_app.models import DeliveryAttempt, OutboxEvent


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ["started_at", "duration_ms", "status_code", "outcome", "error", "worker"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["-started_at"]

    def has_add_permission(self, request, obj=None):
        return False


class CoalescedFilter(admin.SimpleListFilter):
    title = "coalesced"
    parameter_name = "coalesced"

    def lookups(self, request, model_admin):
        return [("yes", "Delivered by another event (carried_by set)"), ("no", "Sent on its own")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(carried_by__isnull=False)
        if self.value() == "no":
            return queryset.filter(carried_by__isnull=True)
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    paginator = CappedCountPaginator  # bounded COUNT(*) on a big table
    list_display = [
        "id",
        "operation_type",
        "provider",
        "status",
        "retry_count",
        "last_status_code",
        "scheduled_at",
        "delivered_at",
    ]
    list_filter = ["status", "operation_type", "provider", "outcome_unknown", CoalescedFilter]
    list_select_related = ["provider"]
    search_fields = ["=id", "=aggregate_id", "=carried_by__id", "idempotency_key"]
    readonly_fields = [*(f.name for f in OutboxEvent._meta.fields if f.name != "carried_by"), "carried_by_link"]
    readonly_fields.append("carried_events")
    inlines = [DeliveryAttemptInline]
    actions = ["retry_now", "requeue", "requeue_assuming_not_created", "discard"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    @admin.display(description="carried by")
    def carried_by_link(self, obj):
        if obj.carried_by_id is None:
            return "-"
        url = reverse("admin:outbox_app_outboxevent_change", args=[obj.carried_by_id])
        return format_html('<a href="{}">{}</a> (its request delivered this event\'s state)', url, obj.carried_by_id)

    @admin.display(description="carried events")
    def carried_events(self, obj):
        ids = list(obj.carried.order_by("aggregate_version").values_list("id", "aggregate_version")[:100])
        if not ids:
            return "-"
        return format_html_join(
            ", ",
            '<a href="{}">v{}</a>',
            ((reverse("admin:outbox_app_outboxevent_change", args=[i]), v) for i, v in ids),
        )

    def _each(self, request, queryset, action, verb: str) -> None:
        # The same service as the API, one event at a time: each is checked and locked.
        done, refused = 0, []
        for event_id in queryset.values_list("id", flat=True):
            try:
                action(event_id=event_id)
                done += 1
            except DomainError as exc:
                refused.append(f"{event_id}: {exc.message}")
        if done:
            self.message_user(request, f"{done} event(s) {verb}.", messages.SUCCESS)
        for line in refused[:20]:
            self.message_user(request, line, messages.WARNING)

    @admin.action(description="Requeue (dead or failed → pending, attempts reset)", permissions=["change"])
    def requeue(self, request, queryset):
        self._each(request, queryset, services.outbox_requeue, "requeued")

    @admin.action(
        description="Requeue creates, no earlier task exists (checked at the provider: create without looking)",
        permissions=["change"],
    )
    def requeue_assuming_not_created(self, request, queryset):
        self._each(
            request,
            queryset,
            lambda event_id: services.outbox_requeue(event_id=event_id, assume_not_created=True),
            "requeued to create without a lookup",
        )

    @admin.action(description="Discard dead events with a reason (never sent; later events of the task go ahead)")
    def discard(self, request, queryset):
        if request.POST.get("post") == "yes":  # the confirmation page, with the reason
            reason = request.POST.get("reason", "")
            self._each(
                request,
                queryset,
                lambda event_id: services.outbox_discard(event_id=event_id, reason=reason),
                "discarded",
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Discard dead events",
            "events": list(queryset.select_related("provider")[:200]),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/outbox_app/discard.html", context)

    @admin.action(description="Retry now (failed events due at once, attempts kept)")
    def retry_now(self, request, queryset):
        moved = queryset.filter(status=OutboxEvent.Status.FAILED).update(scheduled_at=timezone.now())
        transaction.on_commit(services.request_drain)
        self.message_user(request, f"{moved} failed event(s) due now.", messages.SUCCESS)

    retry_now.allowed_permissions = ["change"]

    discard.allowed_permissions = ["change"]
