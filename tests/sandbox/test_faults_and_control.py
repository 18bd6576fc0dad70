"""Fault injection and the control API: each fault applies to later requests, per provider, and
the state tells tests how many creates happened per marker and per request id."""

import time

import pytest
import requests

from tests.sandbox.conftest import DEMO_LIST, TODO


def clickup_create(client, name="task", **kw):
    return client.clickup("POST", f"/list/{DEMO_LIST}/task", json={"name": name, **kw.pop("json", {})}, **kw)


def test_latency_delays_only_the_provider_it_is_set_for(client, sandbox):
    sandbox.sandbox.set_faults({"clickup": {"latency_ms": 150}})
    started = time.perf_counter()
    client.clickup("GET", "/user")
    assert time.perf_counter() - started >= 0.15
    assert client.control("GET", "faults").json()["trello"]["latency_ms"] == 0


def test_injected_errors_answer_the_providers_5xx_before_any_effect(client, sandbox):
    client.control("POST", "faults", json={"provider": "clickup", "error_next": 2, "error_status": 503})
    first = clickup_create(client)
    assert first.status_code == 503 and set(first.json()) == {"err", "ECODE"}
    assert "X-RateLimit-Remaining" in first.headers
    assert clickup_create(client).status_code == 503
    assert clickup_create(client).status_code == 200
    state = client.state()
    assert state["providers"]["clickup"]["count"] == 1
    assert state["injected_errors"]["clickup"] == 2


def test_error_rate_one_fails_everything_and_zero_restores(client):
    client.control("POST", "faults", json={"trello": {"error_rate": 1.0}})
    assert client.trello("GET", "/members/me").status_code == 500
    assert client.trello("GET", "/members/me").text == "Internal Server Error"
    client.control("POST", "faults", json={"trello": {"error_rate": 0}})
    assert client.trello("GET", "/members/me").status_code == 200


def test_error_seconds_fails_a_provider_for_a_while_and_leaves_the_others_alone(client):
    client.control("POST", "faults", json={"trello": {"error_seconds": 0.3, "error_status": 503}})
    assert client.trello("GET", "/members/me").status_code == 503
    assert client.clickup("GET", "/user").status_code == 200
    assert client.todoist("GET", "/user").status_code == 200
    time.sleep(0.35)
    assert client.trello("GET", "/members/me").status_code == 200


def test_a_dropped_connection_after_the_effect_leaves_the_task_created(client):
    client.control("POST", "faults", json={"clickup": {"drop_next": 1}})
    with pytest.raises(requests.ConnectionError):
        clickup_create(client, json={"description": "archangel-ref: evt-42"})
    state = client.state()
    assert state["providers"]["clickup"]["count"] == 1
    assert state["creates_by_marker"] == {"clickup:evt-42": 1}
    assert state["dropped"]["clickup"] == 1
    assert clickup_create(client).status_code == 200  # the next request is answered again


def test_drops_hit_writes_only(client):
    client.control("POST", "faults", json={"trello": {"drop_rate": 1.0}})
    assert client.trello("GET", "/members/me").status_code == 200
    with pytest.raises(requests.ConnectionError):
        client.trello("POST", "/cards", params={"idList": TODO, "name": "x"})
    state = client.state()
    assert state["providers"]["trello"]["count"] == 1, state


def test_a_dropped_todoist_create_replays_from_its_request_id(client):
    client.control("POST", "faults", json={"todoist": {"drop_next": 1}})
    headers = {"X-Request-Id": "evt-7"}
    with pytest.raises(requests.ConnectionError):
        client.todoist("POST", "/tasks", json={"content": "x"}, headers=headers)
    retried = client.todoist("POST", "/tasks", json={"content": "x"}, headers=headers)
    assert retried.status_code == 200
    state = client.state()
    assert state["providers"]["todoist"]["count"] == 1
    assert state["providers"]["todoist"]["tasks"][0]["id"] == retried.json()["id"]
    assert state["creates_by_request_id"] == {"todoist:evt-7": 1}


def test_a_timeout_holds_the_answer_after_the_effect(client):
    client.control("POST", "faults", json={"clickup": {"timeout_next": 1, "timeout_seconds": 2}})
    with pytest.raises(requests.ReadTimeout):
        client.s.post(
            client.server.base_url("clickup") + f"/list/{DEMO_LIST}/task",
            json={"name": "slow"},
            headers={"Authorization": "pk_demo_clickup"},
            timeout=0.3,
        )
    state = client.state()
    assert state["providers"]["clickup"]["count"] == 1
    assert state["timeouts"]["clickup"] == 1


def test_a_429_storm_answers_every_request_with_the_providers_429_then_ends(client):
    client.control("POST", "faults", json={"provider": "*", "storm_seconds": 0.4})
    clickup = client.clickup("GET", "/user")
    assert clickup.status_code == 429 and clickup.json()["ECODE"] == "APP_002"
    assert int(clickup.headers["X-RateLimit-Reset"]) >= int(time.time())
    todoist = client.todoist("GET", "/user")
    assert todoist.status_code == 429 and todoist.json()["error_extra"]["retry_after"] == 1
    assert client.trello("GET", "/members/me").json()["error"] == "API_TOKEN_LIMIT_EXCEEDED"
    time.sleep(0.45)
    assert client.clickup("GET", "/user").status_code == 200
    state = client.state()
    assert state["storm_429"] == {"clickup": 1, "trello": 1, "todoist": 1}
    assert state["over_limit_total"] == 0  # a storm is the provider's doing, not the client's


def test_faults_apply_only_to_requests_after_they_are_set(client):
    task = clickup_create(client).json()
    client.control("POST", "faults", json={"clickup": {"error_rate": 1.0}})
    assert client.clickup("GET", f"/task/{task['id']}").status_code == 500
    client.control("DELETE", "faults")
    assert client.clickup("GET", f"/task/{task['id']}").status_code == 200


def test_bad_fault_settings_are_refused_and_change_nothing(client):
    for body in (
        {"clickup": {"nonsense": 1}},
        {"clickup": {"error_rate": 2}},
        {"provider": "asana", "error_rate": 0.1},
        {"trello": {"error_status": 404}},
    ):
        response = client.control("POST", "faults", json=body)
        assert response.status_code == 400, body
        assert "error" in response.json()
    assert all(v["error_rate"] == 0 for v in client.control("GET", "faults").json().values())


def test_reset_forgets_tasks_counters_and_faults(client):
    clickup_create(client)
    client.control("POST", "faults", json={"trello": {"latency_ms": 5}})
    assert client.control("POST", "reset").json() == {"ok": True}
    state = client.state()
    assert state["providers"]["clickup"]["count"] == 0
    assert state["creates"] == {"clickup": 0, "trello": 0, "todoist": 0}
    assert state["faults"]["trello"]["latency_ms"] == 0


def test_credentials_can_be_added_at_run_time(client):
    assert client.todoist("GET", "/user", headers={"Authorization": "Bearer later"}).status_code == 401
    client.control("POST", "credentials", json={"todoist_tokens": ["later"]})
    assert client.todoist("GET", "/user", headers={"Authorization": "Bearer later"}).status_code == 200


def test_limits_can_be_lowered_raised_and_switched_off(client):
    client.control("POST", "limits", json={"clickup": {"per_token": 1}})
    assert [client.clickup("GET", "/user").status_code for _ in range(2)] == [200, 429]
    client.control("POST", "limits", json={"enabled": False})
    assert client.clickup("GET", "/user").status_code == 200
    assert client.control("POST", "limits", json={"clickup": {"per_hour": 1}}).status_code == 400


def test_containers_and_the_marker_pattern_are_configurable(client):
    body = {
        "clickup": {"lists": ["902"]},
        "trello": {"boards": {"5a7777777777777777777777": ["5a8888888888888888888888"]}},
        "todoist": {"projects": ["6Other"]},
        "marker_pattern": r"\[ref:([a-z0-9-]+)\]",
    }
    assert client.control("POST", "config", json=body).status_code == 200
    assert client.clickup("POST", "/list/902/task", json={"name": "a", "description": "[ref:k-1]"}).ok
    assert client.trello("POST", "/cards", params={"idList": "5a8888888888888888888888", "name": "[ref:k-2]"}).ok
    assert client.todoist("POST", "/tasks", json={"content": "b", "project_id": "6Other"}).ok
    assert client.state()["creates_by_marker"] == {"clickup:k-1": 1, "trello:k-2": 1}
    client.control("POST", "reset")  # configured containers survive a reset
    assert client.clickup("GET", "/list/902").status_code == 200
    assert client.control("POST", "config", json={"marker_pattern": "no group"}).status_code == 400


def test_the_state_lists_duplicate_creates_by_marker(client):
    for _ in range(2):
        clickup_create(client, json={"description": "archangel-ref: task:1:v1:create"})
    clickup_create(client, json={"description": "archangel-ref: task:2:v1:create"})
    state = client.state(items=False)
    assert state["duplicates"]["by_marker"] == {"clickup:task:1:v1:create": 2}
    assert "tasks" not in state["providers"]["clickup"]


def test_the_effect_log_keeps_the_order_the_provider_saw(client):
    task = clickup_create(client).json()
    client.clickup("PUT", f"/task/{task['id']}", json={"status": "complete"})
    client.clickup("PUT", f"/task/{task['id']}", json={"archived": True})
    effects = client.control("GET", "effects", params={"provider": "clickup"}).json()["effects"]
    assert [e["op"] for e in effects] == ["create", "update", "update"]
    assert {e["id"] for e in effects} == {task["id"]}
    assert [e["seq"] for e in effects] == sorted(e["seq"] for e in effects)
    later = client.control("GET", "effects", params={"since": effects[0]["seq"]}).json()["effects"]
    assert len(later) == 2


def test_unknown_paths_get_the_providers_not_found(client):
    assert client.clickup("GET", "/nothing/here").json()["ECODE"] == "APP_001"
    assert client.trello("GET", "/nothing").status_code == 404
    assert client.s.get(client.server.url + "/elsewhere").status_code == 404
    assert client.control("GET", "nothing").status_code == 404


def test_a_stopped_server_answers_nothing_even_on_kept_alive_connections():
    from providers_app.sandbox import SandboxServer

    server = SandboxServer().start()
    with requests.Session() as session:
        assert session.get(server.url + "/_sandbox/health", timeout=5).json() == {"ok": True}
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(server.url + "/_sandbox/health", timeout=5)


def test_a_malformed_answer_follows_the_effect_with_half_a_json_body(client):
    client.control("POST", "faults", json={"clickup": {"malformed_next": 1}})
    cut = clickup_create(client, json={"description": "archangel-ref: evt-9"})
    assert cut.status_code == 200 and cut.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        cut.json()
    whole = clickup_create(client)
    assert whole.json()["id"]
    state = client.state()
    assert state["providers"]["clickup"]["count"] == 2  # the cut answer's task was made
    assert state["creates_by_marker"] == {"clickup:evt-9": 1}
    assert state["malformed"]["clickup"] == 1


def test_a_reset_connection_has_no_effect_and_no_answer(client):
    client.control("POST", "faults", json={"trello": {"reset_next": 1}})
    with pytest.raises(requests.ConnectionError):
        client.trello("POST", "/cards", params={"idList": TODO, "name": "never made"})
    assert client.trello("GET", "/members/me").status_code == 200  # the next request is answered
    state = client.state()
    assert state["providers"]["trello"]["count"] == 0
    assert state["resets"]["trello"] == 1
