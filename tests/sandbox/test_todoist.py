"""The Todoist API v1 subset (docs/provider-apis.md §3): Bearer auth, JSON errors with
error_extra, cursor paging, close/reopen, X-Request-Id idempotency, 410 for REST v2."""

import re

import pytest


def create(client, headers=None, **body):
    body.setdefault("content", "Update onboarding docs")
    body.setdefault("project_id", "6Demo")
    response = client.todoist("POST", "/tasks", json=body, headers=headers or {})
    assert response.status_code == 200, response.text
    return response.json()


def test_it_rejects_unknown_or_non_bearer_tokens(client):
    for header in ("Bearer nope", "demo-todoist-token", "Token demo-todoist-token"):
        response = client.todoist("GET", "/tasks", headers={"Authorization": header})
        assert response.status_code == 401
        body = response.json()
        assert body["http_code"] == 401 and body["error_tag"] == "AUTH_INVALID_TOKEN"
        assert set(body) == {"error", "error_code", "error_extra", "error_tag", "http_code"}


@pytest.mark.parametrize("path", ["/todoist/rest/v2/tasks", "/todoist/rest/v2/projects", "/todoist/sync/v9/sync"])
def test_rest_v2_answers_410_gone_pointing_at_api_v1(client, path):
    response = client.s.get(client.server.url + path, headers={"Authorization": "Bearer demo-todoist-token"})
    assert response.status_code == 410
    assert "available under /api/v1/ prefixes" in response.text


def test_a_created_task_has_the_v1_shape(client):
    task = create(
        client,
        content="Fix login",
        description="archangel-ref: evt-3",
        priority=4,
        due_datetime="2026-06-01T17:00:00+02:00",
        duration=90,
        duration_unit="minute",
        labels=["acme"],
    )
    assert re.fullmatch(r"[0-9A-Za-z]{16}", task["id"])
    assert task["content"] == "Fix login" and task["priority"] == 4
    assert task["project_id"] == "6Demo"
    assert task["due"]["datetime"] == "2026-06-01T15:00:00Z" and task["due"]["date"] == "2026-06-01"
    assert task["duration"] == {"amount": 90, "unit": "minute"}
    assert task["checked"] is False and task["completed_at"] is None
    assert "url" not in task  # v1 has no url (provider-apis §3.4)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", task["added_at"])
    assert client.todoist("GET", f"/tasks/{task['id']}").json() == task


def test_create_errors_are_todoist_json_and_create_nothing(client):
    cases = [
        ({"project_id": "6Demo"}, 400, "ARGUMENT_MISSING"),
        ({"content": "x", "priority": 5}, 400, "INVALID_ARGUMENT_VALUE"),
        ({"content": "x", "duration": 30}, 400, "INVALID_ARGUMENT_VALUE"),
        ({"content": "x", "due_date": "2026-06-01", "due_datetime": "2026-06-01T10:00:00Z"}, 400, None),
        ({"content": "x", "project_id": "6Nope"}, 404, "NOT_FOUND"),
    ]
    for body, status, tag in cases:
        response = client.todoist("POST", "/tasks", json=body)
        assert response.status_code == status, body
        if tag:
            assert response.json()["error_tag"] == tag
        assert "event_id" in response.json()["error_extra"]
    assert client.state()["providers"]["todoist"]["count"] == 0


def test_update_close_reopen_and_delete(client):
    task = create(client)
    updated = client.todoist("POST", f"/tasks/{task['id']}", json={"content": "new", "priority": 2}).json()
    assert (updated["content"], updated["priority"]) == ("new", 2)
    assert client.todoist("POST", f"/tasks/{task['id']}/close").status_code == 204
    closed = client.todoist("GET", f"/tasks/{task['id']}").json()
    assert closed["checked"] is True and closed["completed_at"] is not None
    assert client.todoist("GET", "/tasks").json()["results"] == []  # active tasks only
    assert client.todoist("POST", f"/tasks/{task['id']}/reopen").status_code == 204
    assert [t["id"] for t in client.todoist("GET", "/tasks").json()["results"]] == [task["id"]]
    assert client.todoist("DELETE", f"/tasks/{task['id']}").status_code == 204
    missing = client.todoist("GET", f"/tasks/{task['id']}")
    assert missing.status_code == 404 and missing.json()["error_tag"] == "NOT_FOUND"


def test_update_cannot_move_a_task_to_another_project(client):
    task = create(client)
    response = client.todoist("POST", f"/tasks/{task['id']}", json={"project_id": "6Inbox0000000000"})
    assert response.status_code == 400


def test_get_tasks_pages_with_a_cursor_and_filters_by_project(client):
    ids = [create(client, content=f"t{i}")["id"] for i in range(5)]
    create(client, project_id="6Inbox0000000000")
    seen, cursor = [], None
    while True:
        params = {"project_id": "6Demo", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.todoist("GET", "/tasks", params=params).json()
        assert set(page) == {"results", "next_cursor"}
        seen += [t["id"] for t in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert client.todoist("GET", "/tasks", params={"limit": 201}).status_code == 400


def test_projects_and_user(client):
    projects = client.todoist("GET", "/projects").json()
    assert "6Demo" in [p["id"] for p in projects["results"]] and projects["next_cursor"] is None
    assert client.todoist("GET", "/user").json()["inbox_project_id"] == "6Inbox0000000000"


def test_a_repeated_request_id_returns_the_first_result_and_has_no_second_effect(client):
    first = create(client, headers={"X-Request-Id": "3f1c0a52-0c41-4f7e-9a39-1b2f5e6d7c8a"}, content="once")
    again = create(client, headers={"X-Request-Id": "3f1c0a52-0c41-4f7e-9a39-1b2f5e6d7c8a"}, content="twice?")
    assert again == first
    other = create(client, headers={"X-Request-Id": "another-id"}, content="once")
    assert other["id"] != first["id"]
    state = client.state()
    assert state["providers"]["todoist"]["count"] == 2
    assert state["creates_by_request_id"] == {
        "todoist:3f1c0a52-0c41-4f7e-9a39-1b2f5e6d7c8a": 1,
        "todoist:another-id": 1,
    }
    assert state["replayed"]["todoist"] == 1
    assert state["duplicates"] == {"by_marker": {}, "by_request_id": {}}


def test_request_ids_also_guard_updates_and_closes(client):
    task = create(client)
    headers = {"X-Request-Id": "close-1"}
    assert client.todoist("POST", f"/tasks/{task['id']}/close", headers=headers).status_code == 204
    client.todoist("POST", f"/tasks/{task['id']}/reopen")
    assert client.todoist("POST", f"/tasks/{task['id']}/close", headers=headers).status_code == 204
    assert client.todoist("GET", f"/tasks/{task['id']}").json()["checked"] is False  # the replay did nothing


def test_a_request_id_longer_than_36_bytes_is_refused(client):
    response = client.todoist("POST", "/tasks", json={"content": "x"}, headers={"X-Request-Id": "x" * 37})
    assert response.status_code == 400
    assert client.state()["providers"]["todoist"]["count"] == 0


def test_a_failed_request_does_not_burn_its_request_id(client, sandbox):
    sandbox.sandbox.set_faults({"todoist": {"error_next": 1}})
    headers = {"X-Request-Id": "retry-me"}
    assert client.todoist("POST", "/tasks", json={"content": "x"}, headers=headers).status_code == 500
    assert client.todoist("POST", "/tasks", json={"content": "x"}, headers=headers).status_code == 200
    assert client.state()["creates_by_request_id"] == {"todoist:retry-me": 1}


def test_the_user_limit_answers_the_documented_429(client, sandbox):
    sandbox.sandbox.set_limits({"todoist": {"per_user": 1, "period": 900}})
    assert client.todoist("GET", "/projects").status_code == 200
    response = client.todoist("GET", "/projects")
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "Too many requests. Limits reached. Try again later"
    assert (body["error_code"], body["error_tag"], body["http_code"]) == (35, "LIMITS_REACHED", 429)
    assert 899 <= body["error_extra"]["retry_after"] <= 900
    assert response.headers["Retry-After"] == str(body["error_extra"]["retry_after"])
    assert client.state()["over_limit"]["todoist"] == 1
