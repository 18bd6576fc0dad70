"""ClickUp webhooks from the sandbox as ClickUp makes them (docs/provider-apis.md §1.5):
``POST/GET /team/{team_id}/webhook``, ``PUT/DELETE /webhook/{webhook_id}``, a secret per
webhook, and every change of a watched task posted to each webhook that wants it with that
webhook's id in the payload and ``X-Signature`` = hex HMAC-SHA256(that webhook's secret, raw body)."""

import hashlib
import hmac
import json

import pytest

from providers_app.sandbox.webhooks import emitter_for
from tests.sandbox.conftest import DEMO_LIST
from tests.sandbox.test_trello_webhooks import Receiver

TASK_EVENTS = ["taskUpdated", "taskStatusUpdated", "taskPriorityUpdated"]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def register(client, endpoint, headers=None, team="9001", **body):
    return client.clickup(
        "POST",
        f"/team/{team}/webhook",
        json={"endpoint": endpoint, "events": TASK_EVENTS, **body},
        headers=headers or {},
    )


def create_task(client, list_id=DEMO_LIST, name="Quarterly review"):
    response = client.clickup("POST", f"/list/{list_id}/task", json={"name": name})
    assert response.status_code == 200, response.text
    return response.json()


def change(client, task_id, **changes):
    response = client.control("POST", "user-change", json={"provider": "clickup", "id": task_id, "changes": changes})
    assert response.status_code == 200, response.text
    return response.json()


def expected_signature(body: bytes, secret: str) -> str:
    # Written out from docs/provider-apis.md §1.5, not with Archangel's own helper.
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_registration_answers_the_webhook_with_its_own_secret_and_lists_it_for_its_owner(client, receiver):
    response = register(client, f"{receiver.url}/a", list_id=DEMO_LIST)
    assert response.status_code == 200, response.text
    body = response.json()
    hook = body["webhook"]
    assert body["id"] == hook["id"]
    assert set(hook) == {
        "id",
        "userid",
        "team_id",
        "endpoint",
        "client_id",
        "events",
        "task_id",
        "list_id",
        "folder_id",
        "space_id",
        "health",
        "secret",
    }
    assert hook["endpoint"] == f"{receiver.url}/a" and hook["events"] == TASK_EVENTS
    assert (hook["list_id"], hook["task_id"], hook["folder_id"], hook["space_id"]) == (DEMO_LIST, None, None, None)
    assert hook["health"] == {"status": "active", "fail_count": 0}
    assert hook["team_id"] == 9001 and len(hook["secret"]) >= 32
    other = register(client, f"{receiver.url}/b", events=["*"]).json()["webhook"]
    assert other["secret"] != hook["secret"] and other["id"] != hook["id"]

    listed = client.clickup("GET", "/team/9001/webhook")
    assert listed.status_code == 200
    assert [h["id"] for h in listed.json()["webhooks"]] == [hook["id"], other["id"]]
    # Only the caller's own webhooks (§1.5).
    client.control("POST", "credentials", json={"clickup_tokens": ["pk_someone_else"]})
    assert client.clickup("GET", "/team/9001/webhook", headers={"Authorization": "pk_someone_else"}).json() == {
        "webhooks": []
    }
    # The control listing never shows a secret.
    control = client.control("GET", "webhooks").json()["clickup"]
    assert [h["id"] for h in control] == [hook["id"], other["id"]] and all("secret" not in h for h in control)
    assert hook["secret"] not in json.dumps(client.control("GET", "webhooks").json())


def test_registration_is_refused_with_clickups_error_bodies(client, receiver):
    missing = client.s.post(client.server.base_url("clickup") + "/team/9001/webhook", json={}, timeout=10)
    assert (missing.status_code, missing.json()) == (
        401,
        {"err": "Authorization header required", "ECODE": "OAUTH_017"},
    )
    bad_token = register(client, f"{receiver.url}/a", headers={"Authorization": "pk_nobody"})
    assert (bad_token.status_code, bad_token.json()) == (401, {"err": "Token invalid", "ECODE": "OAUTH_025"})
    other_team = register(client, f"{receiver.url}/a", team="1234")
    assert other_team.status_code == 401 and other_team.json()["ECODE"] == "OAUTH_027"
    for body in ({"endpoint": "ftp://example.com/hook"}, {"endpoint": None}):
        refused = register(client, **body)
        assert refused.status_code == 400 and set(refused.json()) == {"err", "ECODE"}
        assert "Endpoint" in refused.json()["err"]
    for events in ([], ["taskExploded"], "taskUpdated"):
        refused = register(client, f"{receiver.url}/a", events=events)
        assert refused.status_code == 400 and "Event" in refused.json()["err"]
    unknown_list = register(client, f"{receiver.url}/a", list_id="999")
    assert (unknown_list.status_code, unknown_list.json()["ECODE"]) == (404, "ITEM_015")
    unknown_task = register(client, f"{receiver.url}/a", task_id="86nothere")
    assert unknown_task.json()["ECODE"] == "ITEM_013"
    assert client.clickup("GET", "/team/9001/webhook").json() == {"webhooks": []}


def test_a_change_goes_to_every_webhook_that_watches_the_task_signed_with_its_own_secret(client, receiver):
    client.control("POST", "config", json={"clickup": {"lists": ["902"]}})
    task = create_task(client)
    elsewhere = create_task(client, list_id="902", name="Elsewhere")
    on_list = register(client, f"{receiver.url}/list", list_id=DEMO_LIST).json()["webhook"]
    on_task = register(client, f"{receiver.url}/task", task_id=task["id"], events=["*"]).json()["webhook"]
    register(client, f"{receiver.url}/other-list", list_id="902")
    register(client, f"{receiver.url}/other-events", events=["taskDeleted"])

    answer = change(client, task["id"], status="in progress")
    assert answer["sent"] is True and answer["status"] == 200
    assert sorted(e["webhook_id"] for e in answer["events"]) == sorted([on_list["id"], on_task["id"]])
    posts = {p["path"]: p for p in receiver.posts()}
    assert set(posts) == {"/list", "/task"}
    for path, hook in (("/list", on_list), ("/task", on_task)):
        post = posts[path]
        assert post["headers"]["X-Signature"] == expected_signature(post["body"], hook["secret"])
        other_secret = on_task["secret"] if hook is on_list else on_list["secret"]
        assert post["headers"]["X-Signature"] != expected_signature(post["body"], other_secret)
        payload = json.loads(post["body"])
        assert payload["webhook_id"] == hook["id"] and payload["task_id"] == task["id"]
        assert payload["event"] == "taskStatusUpdated"
        [item] = payload["history_items"]
        assert (item["field"], item["before"]["status"], item["after"]["status"]) == ("status", "to do", "in progress")
    # The same change carries the same history item id to both (a dedup key per webhook, §1.5).
    assert len({json.loads(p["body"])["history_items"][0]["id"] for p in posts.values()}) == 1
    # Archangel's own parser reads the delivery as the change it is.
    from providers_app.webhooks import parse_clickup_webhook

    [parsed] = parse_clickup_webhook(json.loads(posts["/list"]["body"]), {"status_map": {"in_progress": "in progress"}})
    assert parsed.fields == {"status": "in_progress"}

    # A task of another list reaches only the webhook on that list.
    receiver.requests.clear()
    change(client, elsewhere["id"], name="Elsewhere, renamed")
    assert [p["path"] for p in receiver.posts()] == ["/other-list"]


def test_update_and_delete_change_what_is_delivered_and_answer_404_for_someone_elses(client, receiver):
    task = create_task(client)
    hook = register(client, f"{receiver.url}/first", list_id=DEMO_LIST).json()["webhook"]
    moved = client.clickup("PUT", f"/webhook/{hook['id']}", json={"endpoint": f"{receiver.url}/second"})
    assert moved.status_code == 200 and moved.json()["webhook"]["endpoint"] == f"{receiver.url}/second"
    change(client, task["id"], name="Renamed")
    assert [p["path"] for p in receiver.posts()] == ["/second"]

    paused = client.clickup("PUT", f"/webhook/{hook['id']}", json={"status": "suspended"})
    assert paused.json()["webhook"]["health"]["status"] == "suspended"
    assert change(client, task["id"], name="Renamed again") == {
        "sent": False,
        "status": 0,
        "events": [{"sent": False, "reason": "no webhook target registered"}],
    }
    assert client.clickup("PUT", f"/webhook/{hook['id']}", json={"status": "asleep"}).status_code == 400
    assert client.clickup("PUT", f"/webhook/{hook['id']}", json={"status": "active"}).status_code == 200

    client.control("POST", "credentials", json={"clickup_tokens": ["pk_someone_else"]})
    stranger = {"Authorization": "pk_someone_else"}
    assert client.clickup("DELETE", f"/webhook/{hook['id']}", headers=stranger).status_code == 404
    gone = client.clickup("DELETE", f"/webhook/{hook['id']}")
    assert (gone.status_code, gone.json()) == (200, {})
    again = client.clickup("DELETE", f"/webhook/{hook['id']}")
    assert again.status_code == 404 and again.json()["ECODE"] == "WH_001"
    assert client.clickup("GET", "/team/9001/webhook").json() == {"webhooks": []}
    effects = [e["op"] for e in client.control("GET", "effects?provider=clickup").json()["effects"]]
    assert effects == [
        "create",
        "webhook_create",
        "webhook_update",
        "user_update",
        "webhook_update",
        "user_update",
        "webhook_update",  # the refused status changed nothing
        "webhook_delete",
    ]


def test_failures_count_on_the_webhooks_health_and_a_410_suspends_it(client, receiver):
    task = create_task(client)
    hook = register(client, f"{receiver.url}/h", task_id=task["id"]).json()["webhook"]
    receiver.status["POST"] = 500
    assert change(client, task["id"], name="One")["status"] == 500
    [listed] = client.clickup("GET", "/team/9001/webhook").json()["webhooks"]
    assert listed["health"] == {"status": "failing", "fail_count": 1}
    receiver.status["POST"] = 200
    change(client, task["id"], name="Two")
    [listed] = client.clickup("GET", "/team/9001/webhook").json()["webhooks"]
    assert listed["health"] == {"status": "active", "fail_count": 0}
    receiver.status["POST"] = 410
    change(client, task["id"], name="Three")
    [listed] = client.clickup("GET", "/team/9001/webhook").json()["webhooks"]
    assert listed["id"] == hook["id"] and listed["health"]["status"] == "suspended"
    assert len(receiver.posts()) == 3
    change(client, task["id"], name="Four")
    assert len(receiver.posts()) == 3  # suspended: nothing more is sent


def settle(client):
    assert emitter_for(client.server.sandbox).wait_idle(10)


def test_changes_through_the_api_are_posted_after_the_fact_to_the_webhooks_that_want_them(client, receiver):
    every = register(client, f"{receiver.url}/every", list_id=DEMO_LIST, events=["*"]).json()["webhook"]
    deletions = register(client, f"{receiver.url}/deletions", events=["taskDeleted"]).json()["webhook"]
    task = create_task(client, name="Plan the launch")
    settle(client)
    updated = client.clickup("PUT", f"/task/{task['id']}", json={"name": "Plan the launch v2", "priority": 1})
    assert updated.status_code == 200
    settle(client)
    assert client.clickup("DELETE", f"/task/{task['id']}").status_code == 204
    settle(client)

    posts = receiver.posts()
    hooks = {"/every": every, "/deletions": deletions}
    for post in posts:
        hook = hooks[post["path"]]
        assert post["headers"]["X-Signature"] == expected_signature(post["body"], hook["secret"])
        assert json.loads(post["body"])["webhook_id"] == hook["id"]
    seen = [(p["path"], json.loads(p["body"])["event"]) for p in posts]
    # A new task fires both taskCreated and taskStatusUpdated (§1.5, CU-payloads).
    assert seen == [
        ("/every", "taskCreated"),
        ("/every", "taskStatusUpdated"),
        ("/every", "taskUpdated"),
        ("/every", "taskPriorityUpdated"),
        ("/every", "taskDeleted"),
        ("/deletions", "taskDeleted"),
    ]
    payloads = [json.loads(p["body"]) for p in posts]
    assert {p["task_id"] for p in payloads} == {task["id"]}
    rename = next(p for p in payloads if p["event"] == "taskUpdated")["history_items"][0]
    assert (rename["field"], rename["before"], rename["after"]) == ("name", "Plan the launch", "Plan the launch v2")
    assert next(p for p in payloads if p["event"] == "taskPriorityUpdated")["history_items"][0]["after"]["id"] == "1"


def test_a_failed_api_change_delivery_is_retried_five_times_then_counted(client, receiver):
    emitter = emitter_for(client.server.sandbox)
    default = emitter.clickup_retry_seconds
    client.control("POST", "webhooks", json={"provider": "clickup", "retry_seconds": [0.02] * 5})
    try:
        register(client, f"{receiver.url}/h", events=["taskCreated"])
        receiver.status["POST"] = 500
        create_task(client)
        settle(client)
        assert len(receiver.posts()) == 6  # the first attempt and ClickUp's 5 retries (§1.5)
        [hook] = client.clickup("GET", "/team/9001/webhook").json()["webhooks"]
        assert hook["health"] == {"status": "failing", "fail_count": 1}  # one event dropped
        receiver.status["POST"] = 410
        create_task(client, name="Second")
        settle(client)
        assert len(receiver.posts()) == 7  # a 410 is not retried and suspends the webhook
        [hook] = client.clickup("GET", "/team/9001/webhook").json()["webhooks"]
        assert hook["health"]["status"] == "suspended"
        create_task(client, name="Third")
        settle(client)
        assert len(receiver.posts()) == 7
    finally:
        emitter.clickup_retry_seconds = default


def test_an_api_change_nobody_watches_costs_no_delivery(client, receiver):
    client.control("POST", "config", json={"clickup": {"lists": ["902"]}})
    register(client, f"{receiver.url}/h", list_id="902", events=["*"])
    task = create_task(client)
    assert client.clickup("PUT", f"/task/{task['id']}", json={"name": "x"}).status_code == 200
    assert emitter_for(client.server.sandbox).pending() == 0 and receiver.requests == []
