"""Trello REST v1 wire format, as docs/provider-apis.md §2 gives it."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from providers_app.adapters.base import AuthError, NotFound, RateLimited, ValidationFailed
from providers_app.adapters.trello import TrelloAdapter
from tests.providers.conftest import KEY

BASE = "https://api.trello.com/1"
PENDING, DOING, DONE = "5a2222222222222222222222", "5a3333333333333333333333", "5a4444444444444444444444"
CONFIG = {
    "api_key": "TRELLOKEY",
    "api_token": "TRELLOTOKEN",
    "board_id": "5a1111111111111111111111",
    "status_lists": {"pending": PENDING, "in_progress": DOING, "completed": DONE},
    "priority_labels": {"urgent": "lbl-urgent"},
}
CARD = {"id": "5a9999999999999999999999", "name": "Ship the report", "idList": PENDING, "closed": False, "badges": {}}


@pytest.fixture
def adapter():
    return TrelloAdapter(CONFIG)


def _query(call):
    return parse_qs(urlsplit(call.request.url).query)


@responses.activate
def test_create_posts_a_card_with_key_and_token_as_query_parameters(adapter, payload):
    responses.post(f"{BASE}/cards", json=CARD)
    task = adapter.create({**payload, "assignee_external_id": "m1"}, idempotency_key=KEY)
    assert task.external_id == CARD["id"] and task.status == "pending"
    call = responses.calls[0]
    assert call.request.method == "POST" and urlsplit(call.request.url).path == "/1/cards"
    assert _query(call) == {"key": ["TRELLOKEY"], "token": ["TRELLOTOKEN"]}
    assert json.loads(call.request.body) == {
        "name": "Ship the report",
        "desc": f"Numbers for Q3\n\narchangel-ref: {KEY}",
        "due": "2026-12-01T16:30:00Z",
        "idList": PENDING,
        "idMembers": ["m1"],
        "idLabels": ["lbl-urgent"],
    }


@responses.activate
def test_an_unmapped_status_starts_in_the_pending_list(adapter, payload):
    responses.post(f"{BASE}/cards", json=CARD)
    responses.get(f"{BASE}/boards/{CONFIG['board_id']}/labels", json=[{"id": "lbl-low", "name": "Low"}])
    adapter.create({**payload, "status": "review", "priority": 2}, idempotency_key=KEY)
    body = json.loads(responses.calls[1].request.body)
    assert body["idList"] == PENDING and "idLabels" not in body  # no mapped or named label for "normal"


@responses.activate
def test_an_unmapped_priority_takes_the_boards_label_of_that_name(adapter, payload):
    responses.post(f"{BASE}/cards", json=CARD)
    labels = [{"id": "lbl-low", "name": "Low"}, {"id": "lbl-high", "name": " high "}]
    responses.get(f"{BASE}/boards/{CONFIG['board_id']}/labels", json=labels)
    adapter.create({**payload, "priority": 3}, idempotency_key=KEY)
    adapter.create({**payload, "priority": 3}, idempotency_key=KEY)
    assert [c.request.method for c in responses.calls] == ["GET", "POST", "POST"]  # read once, cached
    assert json.loads(responses.calls[2].request.body)["idLabels"] == ["lbl-high"]


def test_create_without_any_status_list_is_a_clear_validation_error(payload):
    adapter = TrelloAdapter({k: v for k, v in CONFIG.items() if k != "status_lists"})
    with pytest.raises(ValidationFailed, match="status_lists"):
        adapter.create(payload, idempotency_key=KEY)


@responses.activate
def test_update_moves_the_card_to_its_status_list_and_clears_a_missing_due(adapter, payload):
    responses.put(f"{BASE}/cards/c1", json={**CARD, "idList": DOING})
    task = adapter.update("c1", {**payload, "status": "in_progress", "deadline": None}, idempotency_key="k")
    body = json.loads(responses.calls[0].request.body)
    assert body["idList"] == DOING and body["due"] is None and body["desc"] == "Numbers for Q3"
    assert task.status == "in_progress"


@responses.activate
def test_complete_archive_delete(adapter, payload):
    responses.put(f"{BASE}/cards/c1", json=CARD)
    responses.delete(f"{BASE}/cards/c1", json={"_value": None})
    adapter.complete("c1", payload, idempotency_key="k")
    adapter.archive("c1", payload, idempotency_key="k")
    adapter.delete("c1", idempotency_key="k")
    assert json.loads(responses.calls[0].request.body) == {"dueComplete": True, "idList": DONE}
    assert json.loads(responses.calls[1].request.body) == {"closed": True}
    assert responses.calls[2].request.method == "DELETE"


@responses.activate
def test_find_by_reference_scans_the_board_cards(adapter, payload):
    cards = [{**CARD, "id": "x", "desc": "nothing"}, {**CARD, "id": "mine", "desc": f"Notes\n\narchangel-ref: {KEY}"}]
    responses.get(f"{BASE}/boards/{CONFIG['board_id']}/cards", json=cards)
    assert adapter.find_by_reference(payload, idempotency_key=KEY).external_id == "mine"
    responses.get(f"{BASE}/boards/{CONFIG['board_id']}/cards", json=[])
    assert adapter.find_by_reference(payload, idempotency_key=KEY) is None


@responses.activate
def test_list_and_get_and_health_check(adapter):
    responses.get(f"{BASE}/boards/{CONFIG['board_id']}/cards", json=[CARD, {**CARD, "id": "b", "closed": True}, "junk"])
    responses.get(f"{BASE}/cards/c1", json={**CARD, "dueComplete": True, "idList": "elsewhere"})
    responses.get(f"{BASE}/boards/{CONFIG['board_id']}/lists", json=[])
    page = adapter.list()
    assert [t.status for t in page.items] == ["pending", "archived"] and page.next_cursor is None
    assert adapter.get("c1").status == "completed"
    adapter.health_check()


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [(401, "invalid token", AuthError), (400, "invalid id", ValidationFailed), (404, "card not found", NotFound)],
)
@responses.activate
def test_plain_text_error_bodies_map_to_typed_errors(adapter, status, body, error):
    responses.get(f"{BASE}/cards/c1", body=body, status=status, content_type="text/plain")
    with pytest.raises(error) as caught:
        adapter.get("c1")
    message = str(caught.value)
    assert body in message
    assert "TRELLOKEY" not in message and "TRELLOTOKEN" not in message


@responses.activate
def test_429_without_a_hint_waits_out_the_ten_second_window(adapter):
    responses.get(
        f"{BASE}/cards/c1", json={"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}, status=429
    )
    with pytest.raises(RateLimited) as caught:
        adapter.get("c1")
    assert caught.value.retry_after == 10.0
    assert caught.value.body["error"] == "API_TOKEN_LIMIT_EXCEEDED"
