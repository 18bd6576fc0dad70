"""The example payloads of docs/provider-apis.md (§1.5 ClickUp, §2.5 Trello, §3.5 Todoist), and
helpers that sign and post them as the providers do."""

import copy
import json

from providers_app.webhooks import SIGNATURE_HEADERS, sign

CLICKUP_STATUS_UPDATED = {
    "event": "taskStatusUpdated",
    "history_items": [
        {
            "id": "2800787326392370170",
            "type": 1,
            "date": "1642736073330",
            "field": "status",
            "parent_id": "162641062",
            "data": {"status_type": "custom"},
            "source": None,
            "user": {
                "id": 183,
                "username": "John",
                "email": "john@company.com",
                "color": "#7b68ee",
                "initials": "J",
                "profilePicture": None,
            },
            "before": {"status": "to do", "color": "#f9d900", "orderindex": 0, "type": "open"},
            "after": {"status": "in progress", "color": "#7C4DFF", "orderindex": 1, "type": "custom"},
        }
    ],
    "task_id": "1vj37mc",
    "webhook_id": "7fa3ec74-69a8-4530-a251-8a13730bd204",
}

TRELLO_CARD_MOVED = {
    "action": {
        "id": "5a4234567890abcdef123456",
        "idMemberCreator": "5a9876543210fedcba654321",
        "type": "updateCard",
        "date": "2026-03-20T12:10:00.000Z",
        "data": {
            "card": {
                "id": "5a3333333333333333333333",
                "name": "New Task",
                "idShort": 42,
                "shortLink": "xYzWvU12",
                "idList": "5a4444444444444444444444",
            },
            "old": {"idList": "5a2222222222222222222222"},
            "board": {"id": "5a1111111111111111111111", "name": "My Board", "shortLink": "aBcDeFgH"},
            "listBefore": {"id": "5a2222222222222222222222", "name": "To Do"},
            "listAfter": {"id": "5a4444444444444444444444", "name": "Doing"},
        },
        "appCreator": None,
        "limits": {},
        "display": {"translationKey": "action_move_card_from_list_to_list", "entities": {}},
        "memberCreator": {
            "id": "5a9876543210fedcba654321",
            "fullName": "Alice Example",
            "username": "alice",
            "initials": "AE",
            "avatarHash": "…",
            "avatarUrl": "…",
        },
    },
    "model": {"id": "5a1111111111111111111111", "name": "My Board", "closed": False},
}

_TODOIST_ITEM = {
    "id": "6XR4GqQQCW6Gv9h4",
    "user_id": "2671355",
    "project_id": "6XR4H993xv8H5qCR",
    "section_id": None,
    "parent_id": None,
    "added_by_uid": "2671355",
    "assigned_by_uid": None,
    "responsible_uid": None,
    "labels": ["errand"],
    "deadline": None,
    "duration": {"amount": 30, "unit": "minute"},
    "is_collapsed": False,
    "checked": False,
    "is_deleted": False,
    "added_at": "2025-02-10T10:33:38.000000Z",
    "completed_at": None,
    "completed_by_uid": None,
    "updated_at": "2025-02-10T10:39:38.000000Z",
    "due": {"date": "2025-02-11", "string": "tomorrow", "lang": "en", "is_recurring": False},
    "priority": 4,
    "child_order": 3,
    "content": "Buy Milk",
    "description": "",
    "note_count": 0,
    "day_order": -1,
}

TODOIST_ITEM_UPDATED = {
    "event_name": "item:updated",
    "user_id": "2671355",
    "version": "1",
    "initiator": {
        "id": "2671355",
        "full_name": "Alice",
        "email": "alice@example.com",
        "image_id": "ad38375bdb094286af59f1eab36d8f20",
        "is_premium": True,
    },
    "triggered_at": "2025-02-10T10:39:38.000000Z",
    "event_data": _TODOIST_ITEM,
    "event_data_extra": {"old_item": {**_TODOIST_ITEM, "priority": 1}, "update_intent": "item_updated"},
}

EXAMPLES = {"clickup": CLICKUP_STATUS_UPDATED, "trello": TRELLO_CARD_MOVED, "todoist": TODOIST_ITEM_UPDATED}
SECRETS = {"clickup": "cu-hook-secret", "trello": "trello-app-secret", "todoist": "td-client-secret"}
TRELLO_CALLBACK = "https://archangel.example.com/api/webhooks/trello?src=trello"


def example(provider_type: str) -> dict:
    return copy.deepcopy(EXAMPLES[provider_type])


def encode(payload) -> bytes:
    # Compact, as the providers send (ClickUp warns that added whitespace breaks the signature).
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signed_headers(provider_type: str, body: bytes, *, secret: str | None = None, delivery_id: str = "d-1") -> dict:
    value = sign(provider_type, body=body, secret=secret or SECRETS[provider_type], callback_url=TRELLO_CALLBACK)
    header = "HTTP_" + SIGNATURE_HEADERS[provider_type].upper().replace("-", "_")
    headers = {header: value}
    if provider_type == "todoist":
        headers["HTTP_X_TODOIST_DELIVERY_ID"] = delivery_id
    return headers


def post(client, provider_type: str, payload=None, *, body: bytes | None = None, path: str | None = None, **kw):
    body = encode(payload) if body is None else body
    headers = kw.pop("headers", None)
    if headers is None:
        headers = signed_headers(provider_type, body, **kw)
    return client.generic(
        "POST", path or f"/api/webhooks/{provider_type}", body, content_type="application/json", **headers
    )
