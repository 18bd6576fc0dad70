"""Todoist Sync API batches (docs/provider-apis.md §3.2, §3.7, §3.8): the exact request, and each
command's result mapped back to its item."""

import json

import pytest
import responses

from providers_app import gateway
from providers_app.adapters.base import (
    AuthError,
    BatchItem,
    NotFound,
    PermanentError,
    RateLimited,
    TransientError,
    ValidationFailed,
)
from providers_app.adapters.todoist import SYNC_MAX_COMMANDS, TodoistAdapter, request_id, temp_id
from tests.factories import make_provider

BASE = "https://api.todoist.com/api/v1"
CONFIG = {"api_token": "TDTOKEN", "project_id": "6XR4H993xv8H5qCR"}
CREATE_KEY = "task:0b5f8f0e-4a3c-4c1e-9d7a-6a1c2f3e4d5b:v1:create"


@pytest.fixture
def adapter():
    return TodoistAdapter(CONFIG)


def items(payload):
    return [
        BatchItem("create", {**payload, "assignee_external_id": "2671355"}, CREATE_KEY),
        BatchItem("update", {**payload, "deadline": None, "title": "Renamed"}, "task:b:v2:update", "6Upd"),
        BatchItem("complete", payload, "task:c:v3:complete", "6Cmp"),
        BatchItem("archive", payload, "task:d:v4:archive", "6Arc"),
        BatchItem("delete", payload, "task:e:v5:delete", "6Del"),
    ]


@responses.activate
def test_the_sync_request_carries_one_command_per_item_with_stable_uuids_and_temp_ids(adapter, payload):
    batch = items(payload)
    uuids = [request_id(i.idempotency_key) for i in batch]
    responses.post(
        f"{BASE}/sync",
        json={"sync_status": dict.fromkeys(uuids, "ok"), "temp_id_mapping": {temp_id(CREATE_KEY): "6New"}},
    )
    users = {"results": [{"id": "2671355"}], "next_cursor": None}
    responses.get(f"{BASE}/projects/6XR4H993xv8H5qCR/collaborators", json=users)

    outcomes = adapter.sync_batch(batch)

    call = responses.calls[-1]
    assert (call.request.method, call.request.url) == ("POST", f"{BASE}/sync")
    assert call.request.headers["Authorization"] == "Bearer TDTOKEN"
    assert json.loads(call.request.body) == {
        "commands": [
            {
                "type": "item_add",
                "uuid": request_id(CREATE_KEY),
                "temp_id": temp_id(CREATE_KEY),
                "args": {
                    "content": "Ship the report",
                    "description": f"Numbers for Q3\n\narchangel-ref: {CREATE_KEY}",
                    "priority": 4,
                    "due": {"date": "2026-12-01T16:30:00Z"},
                    "duration": {"amount": 90, "unit": "minute"},
                    "responsible_uid": "2671355",
                    "project_id": "6XR4H993xv8H5qCR",
                },
            },
            {
                "type": "item_update",
                "uuid": request_id("task:b:v2:update"),
                "args": {
                    "id": "6Upd",
                    "content": "Renamed",
                    "description": "Numbers for Q3",
                    "priority": 4,
                    "duration": {"amount": 90, "unit": "minute"},
                },
            },
            {"type": "item_complete", "uuid": request_id("task:c:v3:complete"), "args": {"id": "6Cmp"}},
            {"type": "item_complete", "uuid": request_id("task:d:v4:archive"), "args": {"id": "6Arc"}},
            {"type": "item_delete", "uuid": request_id("task:e:v5:delete"), "args": {"id": "6Del"}},
        ]
    }
    assert [(o.external_id, o.status_code, o.error) for o in outcomes] == [
        ("6New", 200, None),
        (None, 200, None),
        (None, 200, None),
        (None, 200, None),
        (None, 200, None),
    ]
    assert request_id(CREATE_KEY) != temp_id(CREATE_KEY)
    assert request_id(CREATE_KEY) == request_id(CREATE_KEY)  # a retry repeats the same command


def error(code, tag, message="nope", **extra):
    return {"error": message, "error_code": 20, "error_extra": extra, "error_tag": tag, "http_code": code}


@responses.activate
def test_a_mixed_answer_maps_each_commands_own_result_to_its_item(adapter, payload):
    batch = [BatchItem("create", payload, f"task:{n}:v1:create") for n in range(7)]
    uuids = [request_id(i.idempotency_key) for i in batch]
    responses.post(
        f"{BASE}/sync",
        json={
            "sync_status": {
                uuids[0]: "ok",
                uuids[1]: error(400, "INVALID_ARGUMENT_VALUE", argument="content"),
                uuids[2]: error(404, "NOT_FOUND"),
                uuids[3]: error(429, "LIMITS_REACHED", retry_after=66),
                uuids[4]: error(503, "SERVICE_UNAVAILABLE"),
                uuids[5]: "ok",  # ok, but no temp_id mapping: we cannot tell its id
                # uuids[6]: missing altogether
            },
            "temp_id_mapping": {temp_id(batch[0].idempotency_key): "6First"},
        },
    )

    # The create's 404 could be its project gone: the projects are read again; it is still there,
    # so the refusal stands and nothing is sent again.
    projects = {"results": [{"id": "6XR4H993xv8H5qCR"}], "next_cursor": None}
    responses.get(f"{BASE}/projects", json=projects)

    outcomes = adapter.sync_batch(batch)

    assert [c.request.method for c in responses.calls] == ["POST", "GET"]
    assert outcomes[0].external_id == "6First" and outcomes[0].error is None
    assert isinstance(outcomes[1].error, ValidationFailed) and outcomes[1].status_code == 400
    assert "INVALID_ARGUMENT_VALUE" in str(outcomes[1].error)
    assert isinstance(outcomes[2].error, NotFound)
    assert isinstance(outcomes[3].error, RateLimited) and outcomes[3].error.retry_after == 66
    assert isinstance(outcomes[4].error, TransientError) and not outcomes[4].error.outcome_unknown
    for unknown in outcomes[5:]:
        assert isinstance(unknown.error, TransientError) and unknown.error.outcome_unknown


@responses.activate
def test_a_failed_request_raises_for_the_batch_as_a_whole(adapter, payload):
    responses.post(f"{BASE}/sync", status=401, json=error(401, "AUTH_INVALID_TOKEN"))
    with pytest.raises(AuthError):
        adapter.sync_batch([BatchItem("create", payload, "k1")])
    assert "TDTOKEN" not in responses.calls[0].response.text


def test_more_than_100_items_are_refused_before_any_request(adapter, payload):
    batch = [BatchItem("create", payload, f"k{n}") for n in range(SYNC_MAX_COMMANDS + 1)]
    with pytest.raises(ValueError, match="at most 100"):
        adapter.sync_batch(batch)


def test_a_change_without_an_external_id_cannot_be_a_command(adapter, payload):
    with pytest.raises(PermanentError):
        adapter.sync_command(BatchItem("update", payload, "k", None))


@pytest.mark.django_db
@responses.activate
def test_the_gateway_counts_a_delete_of_a_task_already_gone_as_done(payload):
    provider = make_provider("todoist", base_url=BASE)
    batch = [BatchItem("delete", payload, "task:x:v9:delete", "6Gone"), BatchItem("update", payload, "u", "6Gone")]
    responses.post(
        f"{BASE}/sync",
        json={"sync_status": {request_id(i.idempotency_key): error(404, "NOT_FOUND") for i in batch}},
    )

    deleted, updated = gateway.deliver_batch(provider, batch)

    assert deleted.external_id is None and deleted.status_code == 404
    assert isinstance(updated, NotFound)
    assert gateway.batch_size(provider) == 100


@responses.activate
def test_commands_refused_over_a_stale_assignee_are_sent_once_more_without_it(adapter, payload):
    batch = [BatchItem("create", {**payload, "assignee_external_id": "777"}, f"task:{n}:v1:create") for n in range(2)]
    # Same URL registered twice: answered in order. 777 is a user of the project, then has left it.
    users = f"{BASE}/projects/6XR4H993xv8H5qCR/collaborators"
    responses.get(users, json={"results": [{"id": "777"}], "next_cursor": None})
    responses.get(users, json={"results": [], "next_cursor": None})
    refused = error(400, "INVALID_ARGUMENT_VALUE", argument="responsible_uid")
    responses.post(f"{BASE}/sync", json={"sync_status": {request_id(i.idempotency_key): refused for i in batch}})
    fresh = [f"{i.idempotency_key}:fresh" for i in batch]
    responses.post(
        f"{BASE}/sync",
        json={
            "sync_status": {request_id(k): "ok" for k in fresh},
            "temp_id_mapping": {temp_id(k): f"6T{n}" for n, k in enumerate(fresh)},
        },
    )

    outcomes = adapter.sync_batch(batch)

    assert [(o.external_id, o.error) for o in outcomes] == [("6T0", None), ("6T1", None)]
    assert [c.request.method for c in responses.calls] == ["GET", "POST", "GET", "POST"]
    first, second = (json.loads(c.request.body)["commands"] for c in responses.calls if c.request.method == "POST")
    assert [c["args"].get("responsible_uid") for c in first] == ["777", "777"]
    assert [c["args"].get("responsible_uid") for c in second] == [None, None]
    assert [c["uuid"] for c in second] == [request_id(k) for k in fresh]  # the refused uuids are not reused


@responses.activate
def test_when_fresh_metadata_cannot_be_read_the_refusals_stand(adapter, payload):
    batch = [BatchItem("create", {**payload, "assignee_external_id": "777"}, "task:a:v1:create")]
    users = f"{BASE}/projects/6XR4H993xv8H5qCR/collaborators"
    responses.get(users, json={"results": [{"id": "777"}], "next_cursor": None})
    responses.get(users, status=503, json=error(503, "SERVICE_UNAVAILABLE"))
    refused = error(400, "INVALID_ARGUMENT_VALUE", argument="responsible_uid")
    responses.post(f"{BASE}/sync", json={"sync_status": {request_id("task:a:v1:create"): refused}})

    [outcome] = adapter.sync_batch(batch)

    assert isinstance(outcome.error, ValidationFailed)
    assert [c.request.method for c in responses.calls] == ["GET", "POST", "GET"]
