"""The ClickUp v2 subset (docs/provider-apis.md §1): auth, shapes, errors, paging, limits."""

import re
import time

from tests.sandbox.conftest import DEMO_LIST


def create(client, **body):
    body.setdefault("name", "Renew the TLS certificate")
    response = client.clickup("POST", f"/list/{DEMO_LIST}/task", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_it_rejects_a_missing_authorization_header_with_oauth_017(client):
    response = client.s.get(client.server.base_url("clickup") + "/user")
    assert response.status_code == 401
    assert response.json() == {"err": "Authorization header required", "ECODE": "OAUTH_017"}


def test_it_rejects_an_unknown_token_and_a_bearer_personal_token_with_oauth_025(client):
    for header in ("pk_unknown", "Bearer pk_demo_clickup"):
        response = client.clickup("GET", "/user", headers={"Authorization": header})
        assert response.status_code == 401
        assert response.json() == {"err": "Token invalid", "ECODE": "OAUTH_025"}
    assert client.state()["providers"]["clickup"]["count"] == 0


def test_a_created_task_has_clickups_shape(client):
    task = create(
        client,
        name="Fix login",
        description="archangel-ref: evt-1",
        priority=1,
        due_date=1767225600000,
        due_date_time=True,
        time_estimate=7_200_000,
        assignees=[81000001],
        tags=["Acme"],
    )
    assert re.fullmatch(r"[0-9a-z]{9}", task["id"])
    assert task["url"] == f"https://app.clickup.com/t/{task['id']}"
    assert task["name"] == "Fix login"
    assert task["description"] == task["text_content"] == "archangel-ref: evt-1"
    assert task["status"]["status"] == "to do" and task["status"]["type"] == "open"
    assert task["priority"] == {"id": "1", "priority": "urgent", "color": "#f50000", "orderindex": "1"}
    assert task["due_date"] == "1767225600000" and task["due_date_time"] is True
    assert task["time_estimate"] == 7_200_000
    assert [a["id"] for a in task["assignees"]] == [81000001]
    assert task["tags"][0]["name"] == "acme"
    assert task["archived"] is False and task["date_closed"] is None
    assert task["list"]["id"] == DEMO_LIST and task["team_id"] == "9001"
    assert task["date_created"].isdigit()
    assert client.clickup("GET", f"/task/{task['id']}").json() == task


def test_markdown_content_wins_over_description(client):
    task = create(client, description="plain", markdown_content="**md**")
    assert task["description"] == "**md**"


def test_create_rejects_bad_input_with_clickups_errors_and_creates_nothing(client):
    cases = [
        ({}, 400, "INPUT_005"),
        ({"name": "x", "status": "no such status"}, 400, "ITEM_114"),
        ({"name": "x", "priority": 7}, 400, "INPUT_004"),
        ({"name": "x", "assignees": ["ada"]}, 400, "INPUT_007"),
        ({"name": "x", "due_date": "tomorrow"}, 400, "INPUT_002"),
    ]
    for body, status, ecode in cases:
        response = client.clickup("POST", f"/list/{DEMO_LIST}/task", json=body)
        assert (response.status_code, response.json()["ECODE"]) == (status, ecode), body
    response = client.clickup("POST", "/list/999/task", json={"name": "x"})
    assert response.status_code == 404
    assert response.json() == {"err": "List not found", "ECODE": "ITEM_015"}
    assert client.state()["providers"]["clickup"]["count"] == 0


def test_update_changes_status_priority_due_estimate_assignees_and_archive(client):
    task = create(client, assignees=[81000001, 81000002], priority=3)
    response = client.clickup(
        "PUT",
        f"/task/{task['id']}",
        json={
            "name": "Renamed",
            "status": "Complete",
            "priority": None,
            "due_date": 1767312000000,
            "time_estimate": 60000,
            "assignees": {"add": [81000003], "rem": [81000001]},
        },
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["name"] == "Renamed"
    assert updated["status"]["status"] == "complete" and updated["status"]["type"] == "closed"
    assert updated["date_closed"] is not None
    assert updated["priority"] is None
    assert updated["due_date"] == "1767312000000"
    assert sorted(a["id"] for a in updated["assignees"]) == [81000002, 81000003]
    reopened = client.clickup("PUT", f"/task/{task['id']}", json={"status": "in progress", "archived": True}).json()
    assert reopened["date_closed"] is None and reopened["archived"] is True


def test_update_with_an_unknown_status_changes_nothing(client):
    task = create(client)
    response = client.clickup("PUT", f"/task/{task['id']}", json={"name": "new", "status": "bogus"})
    assert response.json() == {"err": "Status does not exist", "ECODE": "ITEM_114"}
    assert client.clickup("GET", f"/task/{task['id']}").json()["name"] == task["name"]


def test_update_rejects_assignees_as_a_plain_list(client):
    task = create(client)
    response = client.clickup("PUT", f"/task/{task['id']}", json={"assignees": [81000001]})
    assert response.status_code == 400


def test_delete_removes_the_task_and_later_calls_get_item_013_with_401(client):
    task = create(client)
    assert client.clickup("DELETE", f"/task/{task['id']}").status_code == 204
    for method in ("GET", "PUT", "DELETE"):
        response = client.clickup(method, f"/task/{task['id']}", json={})
        assert response.status_code == 401  # as observed at ClickUp (provider-apis §1.7)
        assert response.json() == {"err": "Task not found", "ECODE": "ITEM_013"}


def test_get_tasks_pages_by_100_from_page_0_and_hides_closed_and_archived(client, sandbox):
    sandbox.sandbox.set_limits({"enabled": False})
    ids = [create(client, name=f"t{i}")["id"] for i in range(205)]
    closed = create(client, name="closed", status="complete")["id"]
    archived = create(client, name="archived", archived=True)["id"]
    pages = [client.clickup("GET", f"/list/{DEMO_LIST}/task", params={"page": p}).json() for p in range(3)]
    assert [len(p["tasks"]) for p in pages] == [100, 100, 5]
    assert [p["last_page"] for p in pages] == [False, False, True]
    seen = [t["id"] for p in pages for t in p["tasks"]]
    assert seen == list(reversed(ids))  # newest first by default
    oldest_first = client.clickup("GET", f"/list/{DEMO_LIST}/task", params={"reverse": "true"}).json()["tasks"]
    assert oldest_first[0]["id"] == ids[0]
    with_closed = client.clickup("GET", f"/list/{DEMO_LIST}/task", params={"include_closed": "true"}).json()
    assert with_closed["tasks"][0]["id"] == closed
    only_archived = client.clickup("GET", f"/list/{DEMO_LIST}/task", params={"archived": "true"}).json()["tasks"]
    assert [t["id"] for t in only_archived] == [archived]


def test_get_tasks_filters_by_dates_and_orders_by_updated(client):
    first = create(client, name="first")
    time.sleep(0.01)
    second = create(client, name="second")
    cutoff = int(second["date_created"])
    newer = client.clickup("GET", f"/list/{DEMO_LIST}/task", params={"date_created_gt": cutoff - 1}).json()
    assert [t["id"] for t in newer["tasks"]] == [second["id"]]
    older = client.clickup("GET", f"/list/{DEMO_LIST}/task", params={"date_created_lt": cutoff}).json()
    assert [t["id"] for t in older["tasks"]] == [first["id"]]
    time.sleep(0.01)
    client.clickup("PUT", f"/task/{first['id']}", json={"name": "touched"})
    by_updated = client.clickup("GET", f"/list/{DEMO_LIST}/task", params={"order_by": "updated"}).json()["tasks"]
    assert [t["id"] for t in by_updated] == [first["id"], second["id"]]
    updated_after = client.clickup(
        "GET", f"/list/{DEMO_LIST}/task", params={"date_updated_gt": int(by_updated[0]["date_updated"]) - 1}
    ).json()["tasks"]
    assert [t["id"] for t in updated_after] == [first["id"]]


def test_get_list_user_and_team(client):
    lst = client.clickup("GET", f"/list/{DEMO_LIST}").json()
    assert lst["id"] == DEMO_LIST
    statuses = {s["status"]: s["type"] for s in lst["statuses"]}
    assert statuses["to do"] == "open" and statuses["complete"] == "closed"
    assert client.clickup("GET", "/user").json()["user"]["id"] == 81000000
    teams = client.clickup("GET", "/team").json()["teams"]
    assert teams[0]["id"] == "9001"
    assert 81000001 in [m["user"]["id"] for m in teams[0]["members"]]


def test_every_response_carries_the_rate_limit_headers(client):
    response = client.clickup("GET", "/user")
    assert response.headers["X-RateLimit-Limit"] == "100"
    assert response.headers["X-RateLimit-Remaining"] == "99"
    reset = int(response.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61


def test_it_answers_429_when_the_tokens_budget_is_spent_and_counts_it(client, sandbox):
    sandbox.sandbox.set_limits({"clickup": {"per_token": 3, "period": 60}})
    statuses = [client.clickup("GET", "/user").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    response = client.clickup("POST", f"/list/{DEMO_LIST}/task", json={"name": "x"})
    assert response.status_code == 429
    assert response.json()["ECODE"] == "APP_002"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    state = client.state()
    assert state["over_limit"]["clickup"] == 3
    assert state["over_limit_total"] == 3
    assert state["providers"]["clickup"]["count"] == 0


def test_a_second_token_has_its_own_budget(client, sandbox):
    client.control("POST", "credentials", json={"clickup_tokens": ["pk_second"]})
    sandbox.sandbox.set_limits({"clickup": {"per_token": 1}})
    assert client.clickup("GET", "/user").status_code == 200
    assert client.clickup("GET", "/user").status_code == 429
    assert client.clickup("GET", "/user", headers={"Authorization": "pk_second"}).status_code == 200
