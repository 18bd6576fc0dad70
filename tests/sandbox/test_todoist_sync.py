"""POST /api/v1/sync in the sandbox (docs/provider-apis.md §3.2, §3.6, §3.8): commands in order,
a status per uuid, temp_id mapping, uuid de-duplication, the 100-command cap, its own rate limit."""

import pytest

from providers_app.sandbox.core import DEFAULT_LIMITS


def sync(client, commands, **kw):
    return client.todoist("POST", "/sync", json={"commands": commands}, **kw)


def add(uuid, temp_id, content="Write the report", **args):
    return {"type": "item_add", "uuid": uuid, "temp_id": temp_id, "args": {"content": content, **args}}


def test_it_adds_updates_and_closes_tasks_and_maps_temp_ids(client):
    response = sync(
        client,
        [
            add("u-1", "t-1", project_id="6Demo", priority=4, due={"date": "2026-06-01T15:00:00Z"}),
            {
                "type": "item_update",
                "uuid": "u-2",
                "args": {"id": "t-1", "content": "Renamed", "duration": {"amount": 90, "unit": "minute"}},
            },
            add("u-3", "t-3", content="Second"),
            {"type": "item_complete", "uuid": "u-4", "args": {"id": "t-3"}},
        ],
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sync_status"] == {"u-1": "ok", "u-2": "ok", "u-3": "ok", "u-4": "ok"}
    assert set(body["temp_id_mapping"]) == {"t-1", "t-3"}
    first = client.todoist("GET", f"/tasks/{body['temp_id_mapping']['t-1']}").json()
    assert (first["content"], first["priority"], first["project_id"]) == ("Renamed", 4, "6Demo")
    assert first["due"]["datetime"] == "2026-06-01T15:00:00Z"
    assert first["duration"] == {"amount": 90, "unit": "minute"}
    second = client.todoist("GET", f"/tasks/{body['temp_id_mapping']['t-3']}").json()
    assert second["checked"] is True
    state = client.state(items=False)
    assert state["sync_requests"]["todoist"] == 1
    assert state["sync_commands"]["todoist"] == 4
    assert state["creates"]["todoist"] == 2


def test_one_failing_command_gets_its_own_error_and_the_others_take_effect(client):
    response = sync(
        client,
        [
            add("u-1", "t-1"),
            {"type": "item_update", "uuid": "u-2", "args": {"id": "6NoSuchTask00000", "content": "x"}},
            {"type": "item_update", "uuid": "u-3", "args": {"id": "t-1", "priority": 9}},
            {"type": "item_frobnicate", "uuid": "u-4", "args": {"id": "t-1"}},
            add("u-5", "t-5"),
        ],
    )

    assert response.status_code == 200
    status = response.json()["sync_status"]
    assert status["u-1"] == "ok" and status["u-5"] == "ok"
    assert (status["u-2"]["http_code"], status["u-2"]["error_tag"]) == (404, "NOT_FOUND")
    assert (status["u-3"]["http_code"], status["u-3"]["error_tag"]) == (400, "INVALID_ARGUMENT_VALUE")
    assert (status["u-4"]["http_code"], status["u-4"]["error_tag"]) == (400, "INVALID_COMMAND_TYPE")
    assert set(status["u-2"]) == {"error", "error_code", "error_extra", "error_tag", "http_code"}
    assert client.state(items=False)["providers"]["todoist"]["count"] == 2


def test_a_repeated_uuid_answers_ok_with_its_mapping_and_has_no_second_effect(client):
    first = sync(
        client, [add("u-1", "t-1"), {"type": "item_delete", "uuid": "u-2", "args": {"id": "6Missing00000000"}}]
    )
    again = sync(
        client,
        [
            add("u-1", "t-1", content="Different body"),
            {"type": "item_delete", "uuid": "u-2", "args": {"id": "6Missing00000000"}},
        ],
    )

    assert again.json()["sync_status"]["u-1"] == "ok"
    assert again.json()["temp_id_mapping"] == first.json()["temp_id_mapping"]
    # Only successes are remembered: the failed delete is tried (and fails) again.
    assert again.json()["sync_status"]["u-2"]["http_code"] == 404
    state = client.state()
    assert state["providers"]["todoist"]["count"] == 1
    assert state["providers"]["todoist"]["tasks"][0]["content"] == "Write the report"
    assert state["commands_replayed"]["todoist"] == 1
    assert state["creates_by_request_id"] == {"todoist:u-1": 1}


def test_more_than_100_commands_are_refused_whole_and_nothing_happens(client):
    commands = [add(f"u-{i}", f"t-{i}") for i in range(101)]

    response = sync(client, commands)

    assert response.status_code == 400
    body = response.json()
    assert (body["error_tag"], body["http_code"], body["error_extra"]["limit"]) == ("TOO_MANY_COMMANDS", 400, 100)
    assert client.state(items=False)["providers"]["todoist"]["count"] == 0
    assert sync(client, commands[:100]).status_code == 200
    assert client.state(items=False)["providers"]["todoist"]["count"] == 100


def test_sync_needs_the_bearer_token(client):
    response = sync(client, [add("u-1", "t-1")], headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert client.state(items=False)["providers"]["todoist"]["count"] == 0


@pytest.mark.parametrize("commands", [[{"type": "item_add", "args": {}}], "not json", [["x"]]])
def test_malformed_commands_are_a_400_naming_commands(client, commands):
    response = sync(client, commands)
    assert response.status_code == 400
    assert response.json()["error_extra"]["argument"] == "commands"


def test_form_encoded_commands_are_accepted(client):
    import json

    response = client.todoist("POST", "/sync", data={"commands": json.dumps([add("u-1", "t-1")])})
    assert response.status_code == 200
    assert response.json()["sync_status"] == {"u-1": "ok"}


def test_a_sync_request_counts_once_against_the_request_and_the_sync_limits(client):
    client.control(
        "POST", "limits", json={"todoist": {**DEFAULT_LIMITS["todoist"], "per_user": 1000, "sync_per_user": 2}}
    )

    assert sync(client, [add(f"u-{i}", f"t-{i}") for i in range(50)]).status_code == 200
    assert sync(client, [add("u-a", "t-a")]).status_code == 200
    limited = sync(client, [add("u-b", "t-b")])

    assert limited.status_code == 429
    assert limited.json()["error_tag"] == "LIMITS_REACHED" and int(limited.headers["Retry-After"]) >= 1
    assert client.todoist("GET", "/tasks").status_code == 200  # REST requests still have budget
    assert client.state(items=False)["providers"]["todoist"]["count"] == 51
