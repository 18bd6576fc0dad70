"""Applying deliveries: the reference's examples change the tasks they name; replays, echoes and
stale values change nothing; unknown tasks are adopted once; conflicts are resolved by time
and recorded (issue 5 §3, §8)."""

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from outbox_app.models import OutboxEvent
from providers_app.models import WebhookDelivery
from tasks_app import services, sync
from tasks_app.models import SyncConflict, Task
from tests.sync.payloads import example, post

pytestmark = pytest.mark.django_db
EXTERNAL = {"clickup": "1vj37mc", "trello": "5a3333333333333333333333", "todoist": "6XR4GqQQCW6Gv9h4"}


def _ours(provider, title="Buy Milk", **data):
    """A task created in Archangel and delivered: its create event done, its external id stored."""
    task, _ = services.task_create(data={"title": title, "provider": str(provider.pk), **data})
    Task.objects.filter(pk=task.pk).update(external_id=EXTERNAL[provider.type])
    OutboxEvent.objects.filter(aggregate_id=task.pk).update(status="delivered")
    return Task.objects.get(pk=task.pk)


def _deliver(provider_type, payload, **kw):
    response = post(Client(), provider_type, payload, **kw)
    assert response.status_code == 200, response.content
    delivery_id = response.json()["id"]
    return delivery_id, sync.webhook_delivery_process(delivery_id=delivery_id)


def _todoist(event="item:updated", **item):
    """A Todoist delivery carrying the whole task (no old_item): priority 2 and no due date
    unless given, so that only what a test names differs from a task made by ``_ours``."""
    payload = example("todoist")
    payload["event_name"] = event
    payload["event_data"].update({"priority": 2, "due": None, **item})
    payload.pop("event_data_extra")
    return payload


def test_clickups_status_example_moves_the_task_by_status_type(providers):
    task = _ours(providers["clickup"])
    events_before = OutboxEvent.objects.count()
    _, status = _deliver("clickup", example("clickup"))
    task.refresh_from_db()
    assert status == "processed"
    assert task.status == "in_progress"
    assert task.version == 2
    assert OutboxEvent.objects.count() == events_before  # nothing travels back
    from archangel.audit.models import AuditEntry

    entry = AuditEntry.objects.filter(object_id=str(task.pk), action="update").latest("id")
    assert (entry.actor, entry.source) == (f"webhook:{providers['clickup'].name}", "webhook")
    assert entry.changes["status"][1] == "in_progress"


def test_trellos_move_example_maps_the_list_to_a_status(providers):
    task = _ours(providers["trello"], title="New Task")
    _, status = _deliver("trello", example("trello"))
    task.refresh_from_db()
    assert status == "processed"
    assert task.status == "completed"  # the provider's status_lists: completed -> 5a44...
    assert task.completed_at is not None


def test_todoists_update_example_applies_only_what_changed(providers):
    task = _ours(providers["todoist"], description="keep me")
    _, status = _deliver("todoist", example("todoist"))
    task.refresh_from_db()
    assert status == "processed"
    assert task.priority == 4  # Todoist 4 = urgent = ours 4
    assert task.description == "keep me"  # not in the old_item diff: left alone


def test_title_description_due_and_completion_from_todoist(providers):
    task = _ours(providers["todoist"])
    payload = _todoist(event="item:completed", content="Buy oat milk", description="2 l", checked=True)
    payload["event_data"]["due"] = {"date": "2026-12-01", "datetime": "2026-12-01T17:00:00Z", "string": "x"}
    _deliver("todoist", payload)
    task.refresh_from_db()
    assert (task.title, task.description, task.status) == ("Buy oat milk", "2 l", "completed")
    assert task.deadline == dt.datetime(2026, 12, 1, 17, tzinfo=dt.UTC)


def test_a_deleted_task_is_archived_here_without_an_outbox_event(providers):
    task = _ours(providers["todoist"])
    events_before = OutboxEvent.objects.count()
    _deliver("todoist", _todoist(event="item:deleted", is_deleted=True))
    task.refresh_from_db()
    assert task.status == "archived"
    assert OutboxEvent.objects.count() == events_before


def test_a_replayed_delivery_has_no_second_effect(providers):
    task = _ours(providers["clickup"])
    delivery_id, _ = _deliver("clickup", example("clickup"))
    assert sync.webhook_delivery_process(delivery_id=delivery_id) == "processed"
    again = post(Client(), "clickup", example("clickup"))
    assert again.json()["status"] == "duplicate"
    task.refresh_from_db()
    assert task.version == 2
    assert WebhookDelivery.objects.get().attempts == 1


def test_a_task_made_in_the_provider_is_adopted_once(providers):
    payload = _todoist(event="item:added", id="NEW1", content="Water the plants", priority=3)
    _, status = _deliver("todoist", payload, delivery_id="a-1")
    again = _todoist(event="item:updated", id="NEW1", content="Water the plants", priority=3)
    _deliver("todoist", again, delivery_id="a-2")
    task = Task.objects.get(external_id="NEW1")
    assert status == "processed"
    assert (task.title, task.priority, task.source, task.provider) == (
        "Water the plants",
        3,
        "webhook",
        providers["todoist"],
    )
    assert task.effort_hours is not None  # normalized like any new task
    assert Task.objects.filter(external_id="NEW1").count() == 1
    assert OutboxEvent.objects.filter(aggregate_id=task.pk).count() == 0  # it exists there already


def test_a_closed_unknown_task_is_not_adopted(providers):
    _deliver("todoist", _todoist(event="item:completed", id="OLD1", checked=True))
    assert not Task.objects.filter(external_id="OLD1").exists()


def test_our_own_create_coming_back_before_its_id_is_stored_is_linked_not_adopted(providers):
    task, _ = services.task_create(data={"title": "Mine", "provider": str(providers["todoist"].pk)})
    # The adapter wrote a reference to our task into what it created.
    payload = _todoist(event="item:added", id="MINE1", content="Mine", description=f"archangel:{task.pk}")
    _deliver("todoist", payload)
    task.refresh_from_db()
    assert task.external_id == "MINE1"
    assert Task.objects.count() == 1


def test_our_own_undelivered_create_makes_the_delivery_wait(providers):
    services.task_create(data={"title": "Still in flight", "provider": str(providers["todoist"].pk)})
    delivery_id, status = _deliver("todoist", _todoist(event="item:added", id="FL1", content="Still in flight"))
    assert status == "failed"
    assert Task.objects.count() == 1
    assert "RetryLater" in WebhookDelivery.objects.get(pk=delivery_id).error


def test_our_delivered_change_coming_back_is_an_echo_not_a_change(providers):
    task = _ours(providers["todoist"])
    services.task_update(task_id=task.pk, data={"title": "Buy milk and bread"}, partial=True)
    events = OutboxEvent.objects.count()
    _, status = _deliver("todoist", _todoist(content="Buy milk and bread"), delivery_id="e-1")
    task.refresh_from_db()
    assert status == "ignored"
    assert task.version == 2
    assert OutboxEvent.objects.count() == events
    assert task.sync_state.fields["title"]["by"] == "archangel"


def test_a_late_echo_of_an_older_value_of_ours_does_not_undo_a_newer_one(providers):
    task = _ours(providers["todoist"])
    services.task_update(task_id=task.pk, data={"title": "Second"}, partial=True)
    services.task_update(task_id=task.pk, data={"title": "Third"}, partial=True)
    _deliver("todoist", _todoist(content="Second"), delivery_id="late-1")
    task.refresh_from_db()
    assert task.title == "Third"
    assert SyncConflict.objects.count() == 0


def test_a_conflict_is_won_by_the_later_remote_change_and_recorded(providers):
    task = _ours(providers["todoist"])
    services.task_update(task_id=task.pk, data={"title": "Local title"}, partial=True)
    later = (timezone.now() + dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    _deliver("todoist", _todoist(content="Remote title", updated_at=later), delivery_id="c-1")
    task.refresh_from_db()
    conflict = SyncConflict.objects.get()
    assert task.title == "Remote title"
    assert (conflict.field, conflict.local_value, conflict.remote_value, conflict.winner) == (
        "title",
        "Local title",
        "Remote title",
        "remote",
    )
    # Our update is still undelivered: the merged state follows it so it cannot undo the remote title.
    last = OutboxEvent.objects.filter(aggregate_id=task.pk).order_by("-aggregate_version").first()
    assert last.payload["title"] == "Remote title"


def test_a_conflict_is_won_by_the_later_local_change_and_recorded(providers):
    task = _ours(providers["todoist"])
    services.task_update(task_id=task.pk, data={"title": "Local title"}, partial=True)
    _deliver("todoist", _todoist(content="Remote title", updated_at="2020-01-01T00:00:00Z"), delivery_id="c-2")
    task.refresh_from_db()
    conflict = SyncConflict.objects.get()
    assert task.title == "Local title"
    assert conflict.winner == "local"
    assert conflict.remote_value == "Remote title"


def test_a_remote_change_to_an_untouched_field_is_no_conflict(providers):
    task = _ours(providers["todoist"])
    _deliver("todoist", _todoist(content="Renamed there"), delivery_id="n-1")
    task.refresh_from_db()
    assert task.title == "Renamed there"
    assert SyncConflict.objects.count() == 0
    assert task.sync_state.fields["title"]["by"] == "provider"


def test_an_older_remote_change_arriving_after_a_newer_one_is_stale(providers):
    task = _ours(providers["todoist"])
    _deliver("todoist", _todoist(content="Newer", updated_at="2026-05-02T00:00:00Z"), delivery_id="s-1")
    _deliver("todoist", _todoist(content="Older", updated_at="2026-05-01T00:00:00Z"), delivery_id="s-2")
    task.refresh_from_db()
    assert task.title == "Newer"


def test_workers_down_deliveries_are_swept_and_processed(providers, settings):
    from tasks_app.jobs import webhook_sweep

    task = _ours(providers["clickup"])
    post(Client(), "clickup", example("clickup"))
    WebhookDelivery.objects.update(received_at=timezone.now() - dt.timedelta(minutes=5))
    WebhookDelivery.objects.update(updated_at=timezone.now() - dt.timedelta(minutes=5))
    due = sync.webhook_deliveries_due()
    assert len(due) == 1
    # The sweep sends the job (to the real broker); here the job body runs in-process.
    assert webhook_sweep.run() == 1
    sync.webhook_delivery_process(delivery_id=due[0])
    task.refresh_from_db()
    assert task.status == "in_progress"
    assert sync.webhook_deliveries_due() == []


def test_adopted_work_is_routed_to_a_person_only_when_the_policy_says(providers, settings):
    from tests.factories import IdentityFactory

    IdentityFactory(provider=providers["todoist"])  # someone who works in that Todoist
    _deliver("todoist", _todoist(event="item:added", id="R1", content="Not routed"), delivery_id="r-1")
    assert Task.objects.get(external_id="R1").assignee_id is None
    settings.ARCHANGEL = {**settings.ARCHANGEL, "WEBHOOK_ADOPT_ROUTE": True}
    _deliver("todoist", _todoist(event="item:added", id="R2", content="Routed"), delivery_id="r-2")
    task = Task.objects.get(external_id="R2")
    assert task.assignee_id is not None
    assert task.provider == providers["todoist"]
    assert task.routing_decisions.count() == 1
    [event] = OutboxEvent.objects.filter(aggregate_id=task.pk)
    assert event.operation_type == "update"
