"""Outbox admin: discard asks for a reason (kept and audited); retry now; requeue."""

import pytest

from archangel.audit.models import AuditEntry
from outbox_app.models import OutboxEvent
from tasks_app import services as task_services
from tests.factories import make_provider

CHANGELIST = "/admin/outbox_app/outboxevent/"


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-123"))
    return client


@pytest.fixture
def dead_event(db):
    provider = make_provider("todoist", name="TD outbox admin")
    task, _ = task_services.task_create(data={"title": "Dead one", "provider": str(provider.pk)})
    event = OutboxEvent.objects.get(aggregate_id=task.pk)
    OutboxEvent.objects.filter(pk=event.pk).update(status="dead", error_message="404 project gone")
    return event


def test_discard_asks_for_a_reason_then_keeps_and_audits_it(staff, dead_event):
    ask = staff.post(CHANGELIST, {"action": "discard", "_selected_action": [str(dead_event.pk)]})
    assert ask.status_code == 200 and 'name="reason"' in ask.content.decode()
    assert OutboxEvent.objects.get(pk=dead_event.pk).status == "dead"  # nothing yet
    staff.post(
        CHANGELIST,
        {"action": "discard", "_selected_action": [str(dead_event.pk)], "post": "yes", "reason": "project deleted"},
        follow=True,
    )
    event = OutboxEvent.objects.get(pk=dead_event.pk)
    assert event.status == "discarded" and event.error_message.startswith("Discarded: project deleted")
    entry = AuditEntry.objects.get(action="discard")
    assert (entry.actor, entry.source, entry.changes["reason"]) == ("user:ops", "admin", [None, "project deleted"])


def test_discard_without_a_reason_changes_nothing(staff, dead_event):
    page = staff.post(
        CHANGELIST,
        {"action": "discard", "_selected_action": [str(dead_event.pk)], "post": "yes", "reason": "  "},
        follow=True,
    ).content.decode()
    assert "Say why" in page
    assert OutboxEvent.objects.get(pk=dead_event.pk).status == "dead"


def test_retry_now_makes_failed_events_due_and_requeue_is_audited(staff, dead_event):
    import datetime as dt

    from django.utils import timezone

    later = timezone.now() + dt.timedelta(hours=1)
    OutboxEvent.objects.filter(pk=dead_event.pk).update(status="failed", scheduled_at=later)
    staff.post(CHANGELIST, {"action": "retry_now", "_selected_action": [str(dead_event.pk)]}, follow=True)
    assert OutboxEvent.objects.get(pk=dead_event.pk).scheduled_at <= timezone.now()
    staff.post(CHANGELIST, {"action": "requeue", "_selected_action": [str(dead_event.pk)]}, follow=True)
    assert OutboxEvent.objects.get(pk=dead_event.pk).status == "pending"
    assert AuditEntry.objects.filter(action="requeue", object_id=str(dead_event.pk)).exists()


def test_requeue_assuming_not_created_clears_the_unknown_outcome_of_creates_only(staff, dead_event):
    task_services.task_update(task_id=dead_event.aggregate_id, data={"title": "Dead two"}, partial=True)
    update = OutboxEvent.objects.get(aggregate_id=dead_event.aggregate_id, operation_type="update")
    OutboxEvent.objects.filter(pk__in=[dead_event.pk, update.pk]).update(status="dead", outcome_unknown=True)
    page = staff.post(
        CHANGELIST,
        {"action": "requeue_assuming_not_created", "_selected_action": [str(dead_event.pk), str(update.pk)]},
        follow=True,
    ).content.decode()
    create = OutboxEvent.objects.get(pk=dead_event.pk)
    update.refresh_from_db()
    assert (create.status, create.outcome_unknown) == ("pending", False)
    assert (update.status, update.outcome_unknown) == ("dead", True)
    assert "1 event(s) requeued to create without a lookup" in page
    assert "Only a create looks for an earlier task" in page


def test_a_coalesced_event_links_to_its_carrier_and_the_carrier_lists_it(staff, gateway):
    provider = make_provider("clickup", name="CU coalesced admin")
    task, _ = task_services.task_create(data={"title": "Folded", "provider": str(provider.pk)})
    task_services.task_update(task_id=task.pk, data={"title": "Folded twice"}, partial=True)
    from outbox_app.drain import drain

    drain(threads=1)
    create, update = OutboxEvent.objects.filter(aggregate_id=task.pk).order_by("aggregate_version")
    assert update.carried_by_id == create.pk

    follower_page = staff.get(f"{CHANGELIST}{update.pk}/change/").content.decode()
    assert f"{CHANGELIST}{create.pk}/change/" in follower_page
    carrier_page = staff.get(f"{CHANGELIST}{create.pk}/change/").content.decode()
    assert f"{CHANGELIST}{update.pk}/change/" in carrier_page
    coalesced = staff.get(CHANGELIST, {"coalesced": "yes"}).content.decode()
    assert str(update.pk) in coalesced and str(create.pk) not in coalesced
