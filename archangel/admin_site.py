"""The admin as the ops console: the same site, with the dashboard on its index."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


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
