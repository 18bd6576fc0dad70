import django_filters
from django.utils import timezone

from archangel.filters import IsoDateTimeFilter
from tasks_app.models import Assignee, Client, Task
from tasks_app.status import CLOSED, TaskStatus


class TaskFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=TaskStatus.choices, help_text="Repeat to match several.")
    provider = django_filters.UUIDFilter(field_name="provider_id")
    assignee = django_filters.UUIDFilter(field_name="assignee_id")
    client = django_filters.UUIDFilter(field_name="client_id")
    deadline_before = IsoDateTimeFilter(field_name="deadline", lookup_expr="lte")
    deadline_after = IsoDateTimeFilter(field_name="deadline", lookup_expr="gte")
    min_score = django_filters.NumberFilter(field_name="score", lookup_expr="gte")
    overdue = django_filters.BooleanFilter(method="filter_overdue", help_text="Open tasks past their deadline.")

    class Meta:
        model = Task
        fields = [
            "status",
            "provider",
            "assignee",
            "client",
            "deadline_before",
            "deadline_after",
            "min_score",
            "overdue",
        ]

    def filter_overdue(self, queryset, name, value):
        overdue = queryset.filter(deadline__lt=timezone.now()).exclude(status__in=CLOSED)
        return overdue if value else queryset.exclude(pk__in=overdue.values("pk"))


class AssigneeFilter(django_filters.FilterSet):
    class Meta:
        model = Assignee
        fields = ["active"]


class ClientFilter(django_filters.FilterSet):
    class Meta:
        model = Client
        fields = ["preferred_provider"]
