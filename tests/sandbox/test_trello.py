"""The Trello REST v1 subset (docs/provider-apis.md §2): key/token auth, plain-text errors,
parameters from the query, a form or a JSON body, cards on boards and lists, limits per token and key."""

import re

from tests.sandbox.conftest import BOARD, DOING, DONE, TODO


def create(client, **params):
    params.setdefault("idList", TODO)
    params.setdefault("name", "Quarterly review")
    response = client.trello("POST", "/cards", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_it_rejects_missing_or_unknown_credentials_with_plain_text(client):
    base = client.server.base_url("trello")
    cases = [
        ({}, "invalid key"),
        ({"key": "nope", "token": "demo-trello-token"}, "invalid key"),
        ({"key": "demo-trello-key"}, "unauthorized permission requested"),
        ({"key": "demo-trello-key", "token": "nope"}, "invalid token"),
    ]
    for params, text in cases:
        response = client.s.post(base + "/cards", params={**params, "idList": TODO, "name": "x"})
        assert response.status_code == 401
        assert response.text == text
        assert response.headers["Content-Type"].startswith("text/plain")
    assert client.state()["providers"]["trello"]["count"] == 0


def test_it_accepts_the_oauth_authorization_header(client):
    header = 'OAuth oauth_consumer_key="demo-trello-key", oauth_token="demo-trello-token"'
    response = client.s.get(client.server.base_url("trello") + "/members/me", headers={"Authorization": header})
    assert response.status_code == 200
    assert BOARD in response.json()["idBoards"]


def test_a_created_card_has_trellos_shape(client):
    card = create(
        client,
        name="Fix login",
        desc="archangel-ref: evt-9",
        due="2026-06-01T17:00:00+02:00",
        idMembers="5b0000000000000000000001,5b0000000000000000000002",
        idLabels="5a6600000000000000000004",
    )
    assert re.fullmatch(r"[0-9a-f]{24}", card["id"])
    assert card["idList"] == TODO and card["idBoard"] == BOARD
    assert card["name"] == "Fix login" and card["desc"] == "archangel-ref: evt-9"
    assert card["due"] == "2026-06-01T15:00:00.000Z"
    assert card["idMembers"] == ["5b0000000000000000000001", "5b0000000000000000000002"]
    assert card["labels"][0]["name"] == "Urgent"
    assert card["closed"] is False and card["dueComplete"] is False
    assert card["idShort"] == 1
    assert card["url"].startswith(f"https://trello.com/c/{card['shortLink']}/1-fix-login")
    assert client.trello("GET", f"/cards/{card['id']}").json() == card
    assert client.state()["creates_by_marker"] == {"trello:evt-9": 1}


def test_parameters_may_come_as_a_form_or_a_json_body(client):
    form = client.trello("POST", "/cards", data={"idList": DOING, "name": "from form"}).json()
    assert (form["idList"], form["name"]) == (DOING, "from form")
    body = client.trello("POST", "/cards", json={"idList": DONE, "name": "from json", "idMembers": []}).json()
    assert (body["idList"], body["name"]) == (DONE, "from json")


def test_create_errors_are_trellos_plain_text_and_create_nothing(client):
    assert client.trello("POST", "/cards", params={"name": "x"}).text == "invalid value for idList"
    assert client.trello("POST", "/cards", params={"idList": "5a9999999999999999999999"}).status_code == 400
    response = client.trello("POST", "/cards", params={"idList": TODO, "due": "next week"})
    assert (response.status_code, response.text) == (400, "invalid value for due")
    response = client.trello("POST", "/cards", params={"idList": TODO, "idMembers": "ada"})
    assert (response.status_code, response.text) == (400, "invalid value for idMembers")
    assert client.state()["providers"]["trello"]["count"] == 0


def test_get_distinguishes_a_malformed_id_from_a_missing_card(client):
    bad = client.trello("GET", "/cards/not-an-id")
    assert (bad.status_code, bad.text) == (400, "invalid id")
    missing = client.trello("GET", "/cards/5a0000000000000000000000")
    assert (missing.status_code, missing.text) == (404, "The requested resource was not found.")


def test_update_moves_archives_and_clears_the_due_date(client):
    card = create(client, due="2026-06-01T17:00:00Z")
    updated = client.trello(
        "PUT", f"/cards/{card['id']}", params={"idList": DONE, "closed": "true", "due": "", "name": "done"}
    ).json()
    assert updated["idList"] == DONE and updated["closed"] is True and updated["due"] is None
    assert updated["name"] == "done"
    unarchived = client.trello("PUT", f"/cards/{card['id']}", json={"closed": False}).json()
    assert unarchived["closed"] is False


def test_delete_is_permanent(client):
    card = create(client)
    response = client.trello("DELETE", f"/cards/{card['id']}")
    assert response.status_code == 200 and response.json() == {"limits": {}}
    assert client.trello("GET", f"/cards/{card['id']}").status_code == 404


def test_board_and_list_cards_show_open_cards_unless_filtered(client):
    open_card = create(client, idList=TODO)
    other = create(client, idList=DOING)
    archived = create(client, idList=TODO)
    client.trello("PUT", f"/cards/{archived['id']}", params={"closed": "true"})
    board = client.trello("GET", f"/boards/{BOARD}/cards").json()
    assert {c["id"] for c in board} == {open_card["id"], other["id"]}
    everything = client.trello("GET", f"/boards/{BOARD}/cards", params={"filter": "all"}).json()
    assert len(everything) == 3
    in_list = client.trello("GET", f"/lists/{TODO}/cards").json()
    assert [c["id"] for c in in_list] == [open_card["id"]]
    closed = client.trello("GET", f"/lists/{TODO}/cards", params={"filter": "closed"}).json()
    assert [c["id"] for c in closed] == [archived["id"]]


def test_board_lists_and_member(client):
    lists = client.trello("GET", f"/boards/{BOARD}/lists").json()
    assert [lst["id"] for lst in lists] == [TODO, DOING, DONE]
    assert all(lst["idBoard"] == BOARD and lst["closed"] is False for lst in lists)
    assert client.trello("GET", "/members/me").json()["username"] == "sandboxdemo"
    assert client.trello("GET", "/boards/5a0000000000000000000000/lists").status_code == 404


def test_responses_carry_the_key_and_token_limit_headers(client):
    headers = client.trello("GET", f"/boards/{BOARD}/lists").headers
    assert headers["x-rate-limit-api-token-max"] == "100"
    assert headers["x-rate-limit-api-token-remaining"] == "99"
    assert headers["x-rate-limit-api-key-max"] == "300"
    assert headers["x-rate-limit-api-key-interval-ms"] == "10000"


def test_the_token_limit_answers_trellos_429_json(client, sandbox):
    sandbox.sandbox.set_limits({"trello": {"per_token": 2}})
    statuses = [client.trello("GET", f"/boards/{BOARD}/lists").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = client.trello("GET", f"/boards/{BOARD}/lists")
    assert response.json() == {"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}
    assert client.state()["over_limit"]["trello"] == 2


def test_the_key_limit_spans_its_tokens(client, sandbox):
    client.control("POST", "credentials", json={"trello_tokens": ["second-token"]})
    sandbox.sandbox.set_limits({"trello": {"per_key": 2}})
    assert client.trello("GET", "/members/me").status_code == 200
    assert client.trello("GET", "/members/me", params={"token": "second-token"}).status_code == 200
    response = client.trello("GET", "/members/me", params={"token": "second-token"})
    assert response.status_code == 429
    assert response.json()["error"] == "API_KEY_LIMIT_EXCEEDED"
