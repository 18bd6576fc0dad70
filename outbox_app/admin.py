from django.contrib import admin, messages

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


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
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
    list_filter = ["status", "operation_type", "provider", "outcome_unknown"]
    list_select_related = ["provider"]
    search_fields = ["=id", "=aggregate_id", "idempotency_key"]
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    inlines = [DeliveryAttemptInline]
    actions = ["requeue", "discard"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

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

    @admin.action(description="Discard dead events (never sent; later events of the task go ahead)")
    def discard(self, request, queryset):
        self._each(request, queryset, services.outbox_discard, "discarded")

    discard.allowed_permissions = ["change"]
