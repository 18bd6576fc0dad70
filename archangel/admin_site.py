"""The admin as the ops console: the same site, with the dashboard on its index."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.paginator import Paginator
from django.utils.functional import cached_property


class ArchangelAdminSite(admin.AdminSite):
    site_header = "Archangel operations"
    site_title = "Archangel"
    index_title = "Dashboard"
    index_template = "admin/archangel_index.html"

    def index(self, request, extra_context=None):
        from archangel.dashboard import dashboard_context

        return super().index(request, {**dashboard_context(), **(extra_context or {})})


class ArchangelAdminConfig(AdminConfig):
    default_site = "archangel.admin_site.ArchangelAdminSite"


class CappedCountPaginator(Paginator):
    """For the admin's big tables (outbox, audit log, tasks, webhook deliveries): counts at most
    ``CAP + 1`` rows (``SELECT count(*) FROM (... LIMIT CAP+1)``), so a changelist over a million
    rows costs a bounded count, not a full scan. Past the cap the page links stop there; filters
    and search narrow the list."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        try:
            return self.object_list.order_by()[: self.CAP + 1].count()
        except (AttributeError, TypeError):
            return len(self.object_list)
