"""The admin index is the ops dashboard."""

import datetime as dt

import pytest
from django.utils import timezone

from outbox_app.models import OutboxEvent
from tasks_app.models import Assignee, Task
from tests.factories import make_provider


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    client.force_login(user)
    return client


def _event(provider, status, n, error=""):
    import uuid

    for _ in range(n):
        OutboxEvent.objects.create(
            provider=provider,
            aggregate_id=uuid.uuid4(),
            aggregate_version=1,
            operation_type="create",
            payload={},
            idempotency_key=str(uuid.uuid4()),
            status=status,
            error_message=error,
        )


def test_the_dashboard_shows_backlog_dead_letters_providers_workload_and_failures(staff, django_assert_max_num_queries):
    provider = make_provider("todoist", name="Todo A")
    _event(provider, "pending", 3)
    _event(provider, "dead", 2, error="404 Not Found: task gone")
    person = Assignee.objects.create(name="Ada", email="ada@example.com", capacity_hours_per_day=4)
    Task.objects.create(title="Late", assignee=person, effort_hours=6, deadline=timezone.now() - dt.timedelta(days=1))
    with django_assert_max_num_queries(25):
        response = staff.get("/admin/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="dash-backlog">3<' in html
    assert 'id="dash-dead">2<' in html
    assert "Todo A" in html and "404 Not Found: task gone" in html
    assert "6.0 h / 4.0 h (150%)" in html  # over capacity, drawn red
    assert 'class="over"' in html
    assert "<svg" in html


def test_the_dashboard_is_for_staff_only(client, django_user_model):
    django_user_model.objects.create_user("plain", password="pw-plain-123")
    client.login(username="plain", password="pw-plain-123")
    assert client.get("/admin/").status_code == 302


def test_big_changelists_count_at_most_a_cap(staff, monkeypatch, django_assert_max_num_queries):
    from archangel.admin_site import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "CAP", 5)
    provider = make_provider("todoist", name="Many")
    _event(provider, "pending", 12)
    page = staff.get("/admin/outbox_app/outboxevent/")
    assert page.status_code == 200
    assert page.context["cl"].paginator.count == 6  # CAP + 1: "more than 5", never a full count
    assert staff.get("/admin/audit/auditentry/").status_code == 200
    assert staff.get("/admin/tasks_app/task/").status_code == 200
    assert staff.get("/admin/providers_app/webhookdelivery/").status_code == 200
