"""Trello webhooks from the sandbox (docs/provider-apis.md §2.5): registration with the HEAD
check and the callback URL kept verbatim, Trello-shaped actions for every change of a watched
card (through the API or "as a user"), signed X-Trello-Webhook = base64(HMAC-SHA1(app secret,
body + callbackURL)), retries, and a 410 that deletes the webhook."""

import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from providers_app.sandbox.trello import DEMO_APP_SECRET
from providers_app.sandbox.webhooks import emitter_for
from tests.sandbox.conftest import BOARD, DOING, TODO


class Receiver:
    """A callback URL on a free port: records every request and answers ``status`` (per method)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = {"HEAD": 200, "POST": 200}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                self.send_response(receiver.status[self.command])
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_POST = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def posts(self):
        return [r for r in self.requests if r["method"] == "POST"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def register(client, callback, model=BOARD):
    return client.trello("POST", "/webhooks", params={"callbackURL": callback, "idModel": model, "description": "t"})


def create(client, **params):
    response = client.trello("POST", "/cards", params={"idList": TODO, "name": "Quarterly review", **params})
    assert response.status_code == 200, response.text
    return response.json()


def settle(client):
    assert emitter_for(client.server.sandbox).wait_idle(10)


def expected_signature(body: bytes, callback: str, secret: str = DEMO_APP_SECRET) -> str:
    # Written out from docs/provider-apis.md §2.5, not with Archangel's own helper.
    return base64.b64encode(hmac.new(secret.encode(), body + callback.encode(), hashlib.sha1).digest()).decode()


def test_registration_checks_the_callback_with_a_head_and_keeps_the_url_verbatim(client, receiver):
    callback = f"{receiver.url}/api/webhooks/trello/abc?b=2&a=1"
    response = register(client, callback)
    assert response.status_code == 200, response.text
    hook = response.json()
    assert hook["callbackURL"] == callback and hook["idModel"] == BOARD and hook["active"] is True
    assert [(r["method"], r["path"]) for r in receiver.requests] == [("HEAD", "/api/webhooks/trello/abc?b=2&a=1")]
    assert client.trello("GET", f"/webhooks/{hook['id']}").json()["callbackURL"] == callback
    assert [h["id"] for h in client.trello("GET", "/tokens/demo-trello-token/webhooks").json()] == [hook["id"]]
    # The same callback, model and token again is refused (§2.5).
    again = register(client, callback)
    assert again.status_code == 400 and "already exists" in again.text


def test_a_callback_that_does_not_answer_the_head_with_200_gets_no_webhook(client, receiver):
    receiver.status["HEAD"] = 404
    response = register(client, f"{receiver.url}/hook")
    assert response.status_code == 400 and "did not return 200" in response.text
    assert client.trello("GET", "/tokens/demo-trello-token/webhooks").json() == []
    assert register(client, f"{receiver.url}/hook", model="5a9999999999999999999999").status_code == 400
    assert register(client, "ftp://example.com/hook").status_code == 400


def test_changes_through_the_api_post_signed_trello_actions_for_the_watched_board(client, receiver):
    callback = f"{receiver.url}/api/webhooks/trello/xyz"
    assert register(client, callback).status_code == 200
    card = create(client, name="Plan the launch")
    moved = client.trello("PUT", f"/cards/{card['id']}", params={"idList": DOING, "name": "Plan the launch v2"})
    assert moved.status_code == 200
    assert client.trello("PUT", f"/cards/{card['id']}", params={"closed": "true"}).status_code == 200
    assert client.trello("DELETE", f"/cards/{card['id']}").status_code == 200
    settle(client)

    posts = receiver.posts()
    payloads = [json.loads(p["body"]) for p in posts]
    kinds = [(p["action"]["type"], p["action"]["display"]["translationKey"]) for p in payloads]
    assert kinds == [
        ("createCard", "action_create_card"),
        ("updateCard", "action_move_card_from_list_to_list"),
        ("updateCard", "action_renamed_card"),
        ("updateCard", "action_archived_card"),
        ("deleteCard", "action_delete_card"),
    ]
    for post, payload in zip(posts, payloads, strict=True):
        assert post["path"] == "/api/webhooks/trello/xyz"
        assert post["headers"]["X-Trello-Webhook"] == expected_signature(post["body"], callback)
        assert payload["model"]["id"] == BOARD
        assert payload["action"]["memberCreator"]["id"] == payload["action"]["idMemberCreator"]
    move = payloads[1]["action"]["data"]
    assert move["old"] == {"idList": TODO} and move["card"]["idList"] == DOING
    assert (move["listBefore"]["id"], move["listAfter"]["id"]) == (TODO, DOING)
    assert payloads[2]["action"]["data"]["old"] == {"name": "Plan the launch"}
    assert payloads[3]["action"]["data"]["card"]["closed"] is True
    assert len({p["action"]["id"] for p in payloads}) == 5
    # Archangel's own parser reads them as the changes they are.
    from providers_app.webhooks import parse_trello_webhook

    config = {"status_lists": {"pending": TODO, "in_progress": DOING}}
    assert parse_trello_webhook(payloads[1], config)[0].fields == {"status": "in_progress"}
    assert parse_trello_webhook(payloads[3], config)[0].fields == {"status": "archived"}
    assert parse_trello_webhook(payloads[4], config)[0].deleted


def test_a_user_change_is_posted_at_once_and_its_status_answered(client, receiver):
    callback = f"{receiver.url}/cb"
    assert register(client, callback).status_code == 200
    card = create(client)
    settle(client)
    answer = client.control(
        "POST", "user-change", json={"provider": "trello", "id": card["id"], "changes": {"desc": "Bring numbers"}}
    ).json()
    assert answer["sent"] is True and answer["status"] == 200
    payload = json.loads(receiver.posts()[-1]["body"])
    assert payload["action"]["data"]["card"]["desc"] == "Bring numbers"
    assert payload["action"]["data"]["old"] == {"desc": ""}
    assert payload["action"]["memberCreator"]["fullName"] == "Sandbox user"
    effects = [e["op"] for e in client.control("GET", "effects?provider=trello").json()["effects"]]
    assert effects == ["webhook_create", "create", "user_update"]
    unknown = client.control("POST", "user-change", json={"provider": "trello", "id": "5a" + "0" * 22, "changes": {}})
    assert unknown.status_code == 400 and "no trello card" in unknown.json()["error"]


def test_another_keys_webhooks_are_signed_with_that_keys_app_secret(client, receiver):
    client.control("POST", "credentials", json={"trello_keys": ["other-key"], "trello_tokens": ["other-token"]})
    client.control("POST", "config", json={"trello": {"app_secrets": {"other-key": "other-app-secret"}}})
    auth = {"key": "other-key", "token": "other-token"}
    callback = f"{receiver.url}/other"
    made = client.trello("POST", "/webhooks", params={**auth, "callbackURL": callback, "idModel": BOARD})
    assert made.status_code == 200
    create(client)
    settle(client)
    [post] = receiver.posts()
    assert post["headers"]["X-Trello-Webhook"] == expected_signature(post["body"], callback, "other-app-secret")
    assert post["headers"]["X-Trello-Webhook"] != expected_signature(post["body"], callback)


def test_a_failed_delivery_is_retried_and_a_410_deletes_the_webhook(client, receiver):
    emitter = emitter_for(client.server.sandbox)
    default = emitter.trello_retry_seconds
    client.control("POST", "webhooks", json={"provider": "trello", "retry_seconds": [0.05, 0.05, 0.05]})
    try:
        assert register(client, f"{receiver.url}/cb").status_code == 200
        receiver.status["POST"] = 500
        create(client)
        settle(client)
        assert len(receiver.posts()) == 4  # the first attempt and Trello's 3 retries (§2.5)
        [hook] = client.trello("GET", "/tokens/demo-trello-token/webhooks").json()
        assert hook["consecutiveFailures"] == 4 and hook["firstConsecutiveFailDate"]
        receiver.status["POST"] = 410
        create(client, name="Second")
        settle(client)
        assert len(receiver.posts()) == 5  # a 410 is not retried
        assert client.trello("GET", "/tokens/demo-trello-token/webhooks").json() == []
        create(client, name="Third")
        settle(client)
        assert len(receiver.posts()) == 5
    finally:
        emitter.trello_retry_seconds = default


def test_a_change_nobody_watches_costs_no_delivery(client, receiver):
    card = create(client)
    assert client.trello("PUT", f"/cards/{card['id']}", params={"name": "x"}).status_code == 200
    assert emitter_for(client.server.sandbox).pending() == 0 and receiver.requests == []
