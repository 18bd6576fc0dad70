from django.contrib import admin

from outbox_app.models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = ["id", "operation_type", "provider", "status", "retry_count", "scheduled_at", "processed_at"]
    list_filter = ["status", "operation_type", "provider"]
    list_select_related = ["provider"]
    search_fields = ["=id", "=aggregate_id", "idempotency_key"]
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False
