from django.contrib import admin

from archangel.admin_site import CappedCountPaginator
from archangel.audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    paginator = CappedCountPaginator  # bounded COUNT(*) on a big table
    """Read-only: the log is append-only."""

    list_display = ["at", "actor", "source", "action", "object_type", "object_repr"]
    list_filter = ["source", "action", "object_type"]
    search_fields = ["=object_id", "=actor", "=request_id"]
    date_hierarchy = "at"
    # The log only grows: an exact COUNT(*) of millions of rows on every page view is not worth it.
    show_full_result_count = False
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
