"""The pure parsers: what each provider's payload or task says, in our vocabulary."""

import datetime as dt

from providers_app import webhooks
from tests.sync.payloads import example

CLICKUP_CONFIG = {"status_map": {"review": "QA"}}
TRELLO_CONFIG = {
    "status_lists": {"pending": "L-todo", "in_progress": "L-doing", "completed": "L-done"},
    "priority_labels": {"high": "lab-high", "urgent": "lab-urgent"},
}


def test_clickups_status_example_reads_as_in_progress_by_status_type():
    [change] = webhooks.parse_webhook("clickup", example("clickup"), {})
    assert change.external_id == "1vj37mc"
    assert change.fields == {"status": "in_progress"}
    assert change.occurred_at == dt.datetime.fromtimestamp(1642736073.330, tz=dt.UTC)
    assert not change.needs_fetch


def test_clickup_status_names_of_the_config_win_over_the_type():
    assert webhooks.clickup_status({"status": "qa", "type": "custom"}, CLICKUP_CONFIG) == "review"


def test_a_clickup_status_two_of_ours_share_reads_as_the_first_as_the_adapter_reads_it():
    from providers_app.adapters.clickup import ClickUpAdapter

    status_map = {"pending": "to do", "assigned": "to do", "in_progress": "in progress"}
    to_do = {"status": "to do", "type": "open"}
    assert webhooks.clickup_status(to_do, {"status_map": status_map}) == "pending"
    adapter = ClickUpAdapter({"api_token": "pk_x", "list_id": "1", "status_map": status_map})
    assert adapter._remote({"id": "t1", "name": "x", "status": to_do}).status == "pending"


def test_clickup_description_changes_need_the_task_fetched():
    payload = example("clickup")
    payload["history_items"][0].update({"field": "content", "before": None, "after": '{"ops":[]}'})
    [change] = webhooks.parse_webhook("clickup", payload, {})
    assert change.needs_fetch and change.fields == {}


def test_a_clickup_task_maps_priority_due_assignees_and_strips_our_marker():
    task = {
        "id": "9hx",
        "name": "Ship it",
        "text_content": "Details\n\narchangel-ref: task:abc:v1:create",
        "status": {"status": "complete", "type": "closed"},
        "priority": {"id": "2", "priority": "high"},
        "due_date": "1767225600000",
        "assignees": [{"id": 183}],
        "date_updated": "1767225600000",
        "date_created": "1767225500000",
    }
    change = webhooks.parse_task("clickup", task, {})
    assert change.fields == {
        "title": "Ship it",
        "description": "Details",
        "priority": 3,  # ClickUp 2 high = ours 3 high
        "deadline": "2026-01-01T00:00:00+00:00",
        "assignee_external_ids": ["183"],
        "status": "completed",
    }


def test_trellos_move_example_reads_the_list_as_a_status():
    [change] = webhooks.parse_webhook(
        "trello", example("trello"), {"status_lists": {"completed": "5a4444444444444444444444"}}
    )
    assert (change.external_id, change.fields) == ("5a3333333333333333333333", {"status": "completed"})


def test_trello_update_card_reads_only_what_data_old_names():
    payload = example("trello")
    payload["action"]["data"]["old"] = {"name": "Old name"}
    payload["action"]["data"]["card"]["name"] = "New name"
    [change] = webhooks.parse_webhook("trello", payload, TRELLO_CONFIG)
    assert change.fields == {"title": "New name"}


def test_a_trello_card_maps_archive_labels_members_and_creation_time():
    card = {
        "id": "5a3333333333333333333333",
        "name": "Card",
        "desc": "",
        "closed": True,
        "idList": "L-doing",
        "idLabels": ["lab-high", "other"],
        "idMembers": ["m1"],
        "due": "2026-06-01T17:00:00.000Z",
        "dateLastActivity": "2026-03-20T12:10:00.000Z",
    }
    change = webhooks.parse_task("trello", card, TRELLO_CONFIG)
    assert change.fields["status"] == "archived"
    assert change.fields["priority"] == 3
    assert change.fields["assignee_external_ids"] == ["m1"]
    assert change.created_at == dt.datetime.fromtimestamp(0x5A333333, tz=dt.UTC)


def test_trello_delete_card_is_a_deletion():
    payload = example("trello")
    payload["action"]["type"] = "deleteCard"
    [change] = webhooks.parse_webhook("trello", payload, {})
    assert change.deleted


def test_todoists_update_example_keeps_only_the_fields_old_item_shows_changed():
    [change] = webhooks.parse_webhook("todoist", example("todoist"), {})
    assert change.fields == {"priority": 4}
    assert change.occurred_at == dt.datetime(2025, 2, 10, 10, 39, 38, tzinfo=dt.UTC)


def test_todoist_uncompleted_reopens_and_deleted_deletes():
    payload = example("todoist")
    payload.pop("event_data_extra")
    payload["event_name"] = "item:uncompleted"
    assert webhooks.parse_webhook("todoist", payload, {})[0].fields["status"] == "in_progress"
    payload["event_name"] = "item:deleted"
    assert webhooks.parse_webhook("todoist", payload, {})[0].deleted


def test_events_about_other_things_than_tasks_change_nothing():
    assert webhooks.parse_webhook("clickup", {"event": "listCreated", "webhook_id": "w"}, {}) == []
    assert webhooks.parse_webhook("todoist", {"event_name": "project:added", "event_data": {"id": "p"}}, {}) == []
    assert webhooks.parse_webhook("trello", {"action": {"id": "a", "type": "updateBoard", "data": {}}}, {}) == []


def test_signatures_round_trip_and_compare_exactly():
    body = b'{"a":1}'
    for provider_type in ("clickup", "trello", "todoist"):
        header = webhooks.sign(provider_type, body=body, secret="s", callback_url="https://h/x")
        assert webhooks.verify_signature(
            provider_type, body=body, header=header, secret="s", callback_url="https://h/x"
        )
        assert not webhooks.verify_signature(
            provider_type, body=body + b" ", header=header, secret="s", callback_url="https://h/x"
        )
        assert not webhooks.verify_signature(
            provider_type, body=body, header=header, secret="", callback_url="https://h/x"
        )
    # ClickUp's hex digest is accepted in either case (§1.5: lowercase hex).
    upper = webhooks.sign("clickup", body=body, secret="s").upper()
    assert webhooks.verify_signature("clickup", body=body, header=upper, secret="s")
