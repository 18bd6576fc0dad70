"""ClickUp v2 wire format, as docs/provider-apis.md §1 gives it."""

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from providers_app.adapters.base import (
    AuthError,
    LookupIncomplete,
    NotFound,
    RateLimited,
    TransientError,
    ValidationFailed,
)
from providers_app.adapters.clickup import ClickUpAdapter
from tests.providers.conftest import KEY

BASE = "https://api.clickup.com/api/v2"
CONFIG = {"api_token": "pk_42_SECRET", "list_id": "901", "team_id": "42", "status_map": {"in_progress": "in progress"}}
TASK = {
    "id": "9hx",
    "name": "Ship the report",
    "status": {"status": "to do", "type": "open", "color": "#d3d3d3", "orderindex": 0},
    "priority": {"id": "1", "priority": "urgent", "color": "#f50000", "orderindex": "1"},
    "due_date": "1796142600000",
    "time_estimate": None,
    "unknown_field": {"nested": True},
}


@pytest.fixture
def adapter():
    return ClickUpAdapter(CONFIG)


def _sent(call):
    return json.loads(call.request.body)


@responses.activate
def test_create_posts_to_the_list_with_the_raw_token_and_converted_fields(adapter, payload):
    responses.post(f"{BASE}/list/901/task", json=TASK)
    task = adapter.create(payload, idempotency_key=KEY)
    assert task.external_id == "9hx"
    call = responses.calls[0]
    assert call.request.method == "POST"
    assert call.request.url == f"{BASE}/list/901/task"
    assert call.request.headers["Authorization"] == "pk_42_SECRET"  # no "Bearer" (§1.1)
    assert _sent(call) == {
        "name": "Ship the report",
        "description": f"Numbers for Q3\n\narchangel-ref: {KEY}",
        "priority": 1,  # our 4 urgent -> their 1 urgent
        "due_date": 1796142600000,  # 2026-12-01T16:30Z in ms
        "due_date_time": True,
        "time_estimate": 5_400_000,  # 1.5 h in ms
    }


@responses.activate
def test_create_sends_a_mapped_status_and_integer_assignees(adapter, payload):
    responses.post(f"{BASE}/list/901/task", json=TASK)
    adapter.create(
        {**payload, "status": "in_progress", "assignee_external_id": "183", "priority": 1}, idempotency_key=KEY
    )
    body = _sent(responses.calls[0])
    assert body["status"] == "in progress"
    assert body["assignees"] == [183]
    assert body["priority"] == 4  # our low -> their low


@responses.activate
def test_create_leaves_out_what_the_task_does_not_have(adapter, payload):
    responses.post(f"{BASE}/list/901/task", json=TASK)
    adapter.create({**payload, "deadline": None, "effort_hours": None, "description": ""}, idempotency_key=KEY)
    body = _sent(responses.calls[0])
    assert "due_date" not in body and "time_estimate" not in body and "status" not in body
    assert body["description"] == f"archangel-ref: {KEY}"


@responses.activate
def test_a_create_answer_without_an_id_has_an_unknown_outcome(adapter, payload):
    responses.post(f"{BASE}/list/901/task", body="<html>oops</html>", status=200)
    with pytest.raises(TransientError) as caught:
        adapter.create(payload, idempotency_key=KEY)
    assert caught.value.outcome_unknown is True


@responses.activate
def test_update_puts_the_full_state(adapter, payload):
    responses.put(f"{BASE}/task/9hx", json=TASK)
    adapter.update("9hx", {**payload, "description": "", "assignee_external_id": "7"}, idempotency_key="k")
    call = responses.calls[0]
    assert (call.request.method, call.request.url) == ("PUT", f"{BASE}/task/9hx")
    body = _sent(call)
    assert body["description"] == " "  # ClickUp clears with a space
    assert body["assignees"] == {"add": [7], "rem": []}
    assert body["priority"] == 1


@responses.activate
def test_complete_sets_the_lists_closed_status_and_archive_sets_archived(adapter, payload):
    responses.put(f"{BASE}/task/9hx", json=TASK)
    statuses = [{"status": "to do", "type": "open"}, {"status": "shipped", "type": "closed"}]
    responses.get(f"{BASE}/list/901", json={"id": "901", "statuses": statuses})
    adapter.complete("9hx", payload, idempotency_key="k")
    adapter.complete("9hx", payload, idempotency_key="k")
    adapter.archive("9hx", payload, idempotency_key="k")
    # No "completed" in status_map: the list's status of type closed, read once (cached).
    assert [c.request.method for c in responses.calls] == ["GET", "PUT", "PUT", "PUT"]
    assert _sent(responses.calls[1]) == _sent(responses.calls[2]) == {"status": "shipped"}
    assert _sent(responses.calls[3]) == {"archived": True}


@responses.activate
def test_complete_uses_the_mapped_closed_status():
    responses.put(f"{BASE}/task/9hx", json=TASK)
    ClickUpAdapter({**CONFIG, "status_map": {"completed": "Done"}}).complete("9hx", {}, idempotency_key="k")
    assert _sent(responses.calls[0]) == {"status": "Done"}


@responses.activate
def test_delete_and_get(adapter):
    responses.delete(f"{BASE}/task/9hx", json={})
    responses.get(f"{BASE}/task/9hx", json={**TASK, "status": {"status": "in progress", "type": "custom"}})
    adapter.delete("9hx", idempotency_key="k")
    task = adapter.get("9hx")
    assert responses.calls[0].request.method == "DELETE"
    assert (task.external_id, task.title, task.status) == ("9hx", "Ship the report", "in_progress")


@responses.activate
def test_list_pages_from_zero_until_a_short_page(adapter):
    responses.get(f"{BASE}/list/901/task", json={"tasks": [{**TASK, "id": str(i)} for i in range(100)]})
    responses.get(f"{BASE}/list/901/task", json={"tasks": [TASK], "last_page": True})
    first = adapter.list()
    second = adapter.list(cursor=first.next_cursor)
    assert (len(first.items), first.next_cursor) == (100, "1")
    assert (len(second.items), second.next_cursor) == (1, None)
    assert parse_qs(urlsplit(responses.calls[1].request.url).query) == {"page": ["1"], "include_closed": ["true"]}


@responses.activate
def test_find_by_reference_reads_the_marker_with_documented_filters(adapter, payload):
    other = {**TASK, "id": "a1", "description": "archangel-ref: task:other:v1:create"}
    mine = {**TASK, "id": "b2", "description": None, "text_content": f"Numbers\n\narchangel-ref: {KEY}"}
    responses.get(f"{BASE}/list/901/task", json={"tasks": [other, mine]})
    found = adapter.find_by_reference(payload, idempotency_key=KEY)
    assert found.external_id == "b2"
    query = parse_qs(urlsplit(responses.calls[0].request.url).query)
    assert query["page"] == ["0"] and query["include_closed"] == ["true"] and query["order_by"] == ["created"]
    assert int(query["date_updated_gt"][0]) > 0


@responses.activate
def test_find_by_reference_returns_none_when_nothing_carries_the_marker(adapter, payload):
    responses.get(f"{BASE}/list/901/task", json={"tasks": [{**TASK, "description": f"archangel-ref: {KEY}-2"}]})
    assert adapter.find_by_reference(payload, idempotency_key=KEY) is None


def _others(page, n=100):
    return [
        {**TASK, "id": f"p{page}-{i}", "description": f"archangel-ref: task:other-{page}-{i}:v1:create"}
        for i in range(n)
    ]


@responses.activate
def test_find_by_reference_reads_every_page_changed_since_the_first_claim(adapter, payload):
    # The 10-minute sustained run's duplicate: the task was past the 10th page. Now every page
    # of tasks updated since the event was first claimed is read, each one charged.
    for page in range(15):
        responses.get(f"{BASE}/list/901/task", json={"tasks": _others(page), "last_page": False})
    mine = {**TASK, "id": "mine", "description": f"Numbers\n\narchangel-ref: {KEY}"}
    responses.get(f"{BASE}/list/901/task", json={"tasks": [*_others(15, 40), mine], "last_page": True})
    charges = []
    claimed = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    found = adapter.find_by_reference(
        payload, idempotency_key=KEY, changed_since=claimed, charge=lambda: charges.append(1)
    )
    assert found.external_id == "mine"
    assert len(responses.calls) == 16 and len(charges) == 15  # the first request was paid by the caller
    queries = [parse_qs(urlsplit(c.request.url).query) for c in responses.calls]
    assert [q["page"] for q in queries] == [[str(n)] for n in range(16)]
    skew_ms = 10 * 60 * 1000  # the provider's clock may run behind ours
    assert {q["date_updated_gt"][0] for q in queries} == {str(int(claimed.timestamp() * 1000) - skew_ms)}


@responses.activate
def test_find_by_reference_also_reads_the_archived_tasks(adapter, payload):
    responses.get(f"{BASE}/list/901/task", json={"tasks": _others(0, 3)})
    responses.get(
        f"{BASE}/list/901/task", json={"tasks": [{**TASK, "id": "mine", "description": f"archangel-ref: {KEY}"}]}
    )
    found = adapter.find_by_reference(payload, idempotency_key=KEY, changed_since=datetime.now(UTC))
    assert found.external_id == "mine"
    queries = [parse_qs(urlsplit(c.request.url).query) for c in responses.calls]
    assert "archived" not in queries[0] and queries[1]["archived"] == ["true"]


@responses.activate
def test_find_by_reference_gives_up_past_its_cap_instead_of_answering_not_found(adapter, payload, settings):
    settings.OUTBOX_REFERENCE_LOOKUP_MAX_PAGES = 3
    responses.get(f"{BASE}/list/901/task", json={"tasks": _others(0)})
    with pytest.raises(LookupIncomplete) as caught:
        adapter.find_by_reference(payload, idempotency_key=KEY, changed_since=datetime.now(UTC))
    assert len(responses.calls) == 3 and not caught.value.retryable
    assert f"archangel-ref: {KEY}" in str(caught.value)  # tells the operator what to look for


@responses.activate
def test_find_by_reference_stops_when_a_page_cannot_be_paid_for(adapter, payload):
    responses.get(f"{BASE}/list/901/task", json={"tasks": _others(0)})

    def spent():
        raise RateLimited("no budget", retry_after=30)

    with pytest.raises(RateLimited):
        adapter.find_by_reference(payload, idempotency_key=KEY, changed_since=datetime.now(UTC), charge=spent)
    assert len(responses.calls) == 1


@responses.activate
def test_health_check_reads_the_authorized_workspaces(adapter):
    responses.get(f"{BASE}/team", json={"teams": []})
    adapter.health_check()
    assert responses.calls[0].request.headers["Authorization"] == "pk_42_SECRET"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"err": "Token invalid", "ECODE": "OAUTH_025"}, AuthError),
        (401, {"err": "Task not found", "ECODE": "ITEM_013"}, NotFound),  # observed with 401 (§1.7)
        (404, {"err": "List not found", "ECODE": "ITEM_015"}, NotFound),
        (400, {"err": "Status does not exist", "ECODE": "ITEM_114"}, ValidationFailed),
        (500, {"err": "Internal"}, TransientError),
    ],
)
@responses.activate
def test_error_bodies_map_to_typed_errors(adapter, status, body, error):
    responses.get(f"{BASE}/task/9hx", json=body, status=status)
    with pytest.raises(error) as caught:
        adapter.get("9hx")
    assert caught.value.status_code == status
    assert body["err"] in str(caught.value)
    assert "pk_42_SECRET" not in str(caught.value)


@responses.activate
def test_429_carries_the_reset_hint(adapter, payload):
    import time

    responses.put(
        f"{BASE}/task/9hx",
        json={"err": "Rate limit reached", "ECODE": "APP_002"},
        status=429,
        headers={
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + 40),
        },
    )
    with pytest.raises(RateLimited) as caught:
        adapter.update("9hx", payload, idempotency_key="k")
    assert 38 <= caught.value.retry_after <= 40
    assert caught.value.retryable and not caught.value.trips_breaker
