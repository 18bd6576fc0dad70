"""Todoist API v1 wire format, as docs/provider-apis.md §3 gives it."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from providers_app.adapters.base import (
    AuthError,
    LookupIncomplete,
    NotFound,
    PermanentError,
    RateLimited,
    ValidationFailed,
)
from providers_app.adapters.todoist import TodoistAdapter, request_id
from tests.providers.conftest import KEY

BASE = "https://api.todoist.com/api/v1"
CONFIG = {"api_token": "TDTOKEN", "project_id": "6XR4H993xv8H5qCR"}
TASK = {"id": "6X7rM8997g3RQmvh", "content": "Ship the report", "checked": False, "due": None, "extra": [1]}


@pytest.fixture
def adapter():
    return TodoistAdapter(CONFIG)


@responses.activate
def test_create_posts_with_bearer_token_and_a_stable_request_id(adapter, payload):
    responses.post(f"{BASE}/tasks", json=TASK)
    users = {"results": [{"id": "2671355", "name": "Alice"}], "next_cursor": None}
    responses.get(f"{BASE}/projects/6XR4H993xv8H5qCR/collaborators", json=users)
    task = adapter.create({**payload, "assignee_external_id": "2671355"}, idempotency_key=KEY)
    assert task.external_id == "6X7rM8997g3RQmvh"
    call = responses.calls[1]
    assert (call.request.method, call.request.url) == ("POST", f"{BASE}/tasks")
    assert call.request.headers["Authorization"] == "Bearer TDTOKEN"
    assert call.request.headers["X-Request-Id"] == request_id(KEY)
    assert len(request_id(KEY)) == 36  # at most 36 bytes (§3.8)
    assert json.loads(call.request.body) == {
        "content": "Ship the report",
        "description": f"Numbers for Q3\n\narchangel-ref: {KEY}",
        "priority": 4,  # same scale: 4 urgent
        "due_datetime": "2026-12-01T16:30:00Z",
        "duration": 90,
        "duration_unit": "minute",
        "assignee_id": "2671355",
        "project_id": "6XR4H993xv8H5qCR",
    }


@responses.activate
def test_update_is_a_post_to_the_task_and_does_not_move_projects(adapter, payload):
    responses.post(f"{BASE}/tasks/t1", json=TASK)
    adapter.update("t1", {**payload, "effort_hours": 0.001, "deadline": None}, idempotency_key="task:x:v2:update")
    call = responses.calls[0]
    body = json.loads(call.request.body)
    assert "project_id" not in body and "due_datetime" not in body
    assert (body["duration"], body["duration_unit"]) == (1, "minute")  # at least 1
    assert call.request.headers["X-Request-Id"] == request_id("task:x:v2:update")


@responses.activate
def test_complete_and_archive_close_the_task_and_delete_deletes(adapter, payload):
    responses.post(f"{BASE}/tasks/t1/close", status=204)
    responses.delete(f"{BASE}/tasks/t1", status=204)
    adapter.complete("t1", payload, idempotency_key="a")
    adapter.archive("t1", payload, idempotency_key="b")
    adapter.delete("t1", idempotency_key="c")
    assert [c.request.method for c in responses.calls] == ["POST", "POST", "DELETE"]
    assert all(c.request.headers["X-Request-Id"] for c in responses.calls)
    assert responses.calls[0].request.body is None


@responses.activate
def test_list_follows_the_cursor(adapter):
    responses.get(f"{BASE}/tasks", json={"results": [TASK], "next_cursor": "abc"})
    responses.get(f"{BASE}/tasks", json={"results": [{**TASK, "checked": True}], "next_cursor": None})
    first = adapter.list()
    second = adapter.list(cursor=first.next_cursor)
    assert first.next_cursor == "abc" and second.next_cursor is None and second.items[0].status == "completed"
    assert parse_qs(urlsplit(responses.calls[1].request.url).query) == {
        "limit": ["200"],
        "project_id": ["6XR4H993xv8H5qCR"],
        "cursor": ["abc"],
    }


@responses.activate
def test_find_by_reference_pages_through_the_project(adapter, payload):
    responses.get(f"{BASE}/tasks", json={"results": [TASK], "next_cursor": "p2"})
    responses.get(f"{BASE}/tasks", json={"results": [{**TASK, "id": "mine", "description": f"archangel-ref: {KEY}"}]})
    assert adapter.find_by_reference(payload, idempotency_key=KEY).external_id == "mine"
    assert len(responses.calls) == 2


@responses.activate
def test_find_by_reference_reads_past_the_tenth_page_and_charges_each(adapter, payload):
    for page in range(12):
        responses.get(f"{BASE}/tasks", json={"results": [{**TASK, "id": f"o{page}"}], "next_cursor": f"p{page + 1}"})
    responses.get(f"{BASE}/tasks", json={"results": [{**TASK, "id": "mine", "description": f"archangel-ref: {KEY}"}]})
    charges = []
    found = adapter.find_by_reference(payload, idempotency_key=KEY, charge=lambda: charges.append(1))
    assert found.external_id == "mine" and len(responses.calls) == 13 and len(charges) == 12


@responses.activate
def test_find_by_reference_gives_up_past_its_cap(adapter, payload, settings):
    settings.OUTBOX_REFERENCE_LOOKUP_MAX_PAGES = 2
    responses.get(f"{BASE}/tasks", json={"results": [TASK], "next_cursor": "more"})
    with pytest.raises(LookupIncomplete):
        adapter.find_by_reference(payload, idempotency_key=KEY)
    assert len(responses.calls) == 2


@responses.activate
def test_get_and_health_check(adapter):
    responses.get(f"{BASE}/tasks/t1", json=TASK)
    responses.get(f"{BASE}/projects", json={"results": [], "next_cursor": None})
    assert adapter.get("t1").title == "Ship the report"
    adapter.health_check()


def _error(tag, code, status):
    return {"error": tag.lower(), "error_code": code, "error_extra": {}, "error_tag": tag, "http_code": status}


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, _error("AUTH_INVALID_TOKEN", 401, 401), AuthError),
        (403, _error("MAX_ITEMS_LIMIT_REACHED", 52, 403), PermanentError),
        (404, _error("NOT_FOUND", 478, 404), NotFound),
        (400, _error("INVALID_ARGUMENT_VALUE", 20, 400), ValidationFailed),
    ],
)
@responses.activate
def test_error_bodies_map_to_typed_errors(adapter, status, body, error):
    responses.get(f"{BASE}/tasks/t1", json=body, status=status)
    with pytest.raises(error) as caught:
        adapter.get("t1")
    assert type(caught.value) is error
    assert body["error_tag"] in str(caught.value) and "TDTOKEN" not in str(caught.value)


@responses.activate
def test_410_says_rest_v2_is_gone():
    adapter = TodoistAdapter({**CONFIG, "base_url": "https://api.todoist.com/rest/v2"})
    responses.get("https://api.todoist.com/rest/v2/tasks/t1", body="Gone", status=410)
    with pytest.raises(PermanentError, match="REST v2 is gone") as caught:
        adapter.get("t1")
    assert not caught.value.retryable


@responses.activate
def test_429_reads_retry_after_from_header_and_body(adapter):
    body = {"error": "Too many requests", "error_code": 35, "error_extra": {"retry_after": 66}, "http_code": 429}
    responses.get(f"{BASE}/tasks/t1", json=body, status=429, headers={"Retry-After": "60"})
    with pytest.raises(RateLimited) as caught:
        adapter.get("t1")
    assert caught.value.retry_after == 66.0
