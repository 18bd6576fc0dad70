"""Inbound webhooks: signature checks, de-duplication keys and payload parsers, one set per provider.

Pure functions (no ORM, no network), so they are cheap to call on the intake hot path
and trivial to test. Facts come from docs/provider-apis.md (§1.5 ClickUp, §2.5 Trello,
§3.5 Todoist, §4 "Signature verification sketch"); receiver practice from
docs/reliability.md ("Webhooks").

Parsers turn a payload (or a task as the provider's API returns it, for the periodic
pull) into :class:`RemoteChange` values in Archangel's vocabulary: the field names of
the outbox payload (``title``, ``description``, ``status``, ``priority``, ``deadline``)
plus ``assignee_external_ids`` (resolved to an assignee by the caller) and the flags
``deleted`` / ``created``. Values are raw enough for ``tasks_app.normalizer`` to
normalize (a deadline is an ISO string; a bare date means the end of that day).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from archangel.parsers import json_problem
from providers_app.config import CLICKUP, TODOIST, TRELLO

# Header each provider signs with (docs/provider-apis.md §4).
SIGNATURE_HEADERS = {CLICKUP: "X-Signature", TRELLO: "X-Trello-Webhook", TODOIST: "X-Todoist-Hmac-SHA256"}
# Headers kept with a stored delivery (for audit and replays); never the signature itself.
KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Todoist-Delivery-ID", "X-Request-Id")
# The config key (a provider secret) each type signs with.
SIGNING_SECRET = {CLICKUP: "webhook_secret", TRELLO: "app_secret", TODOIST: "client_secret"}


# The adapters end the description of every task they create with this line (a reference to
# our outbox event, docs/reliability.md "Idempotency at the provider"); it is not part of
# the description the user sees and must not read as a change when it comes back.
MARKER_PREFIX = "archangel-ref: "


def strip_marker(text: str) -> str:
    if MARKER_PREFIX not in text:
        return text
    lines = [line for line in text.splitlines() if not line.strip().strip("*_`").startswith(MARKER_PREFIX)]
    return "\n".join(lines).rstrip()


class PayloadError(ValueError):
    """The body is authentic but not a payload we can read."""


# --- signatures (§1.5, §2.5, §3.5: always over the raw body bytes, constant-time compare) ------


def verify_signature(
    provider_type: str, *, body: bytes, header: str | None, secret: str, callback_url: str = ""
) -> bool:
    if not header or not secret:
        return False
    key = secret.encode()
    if provider_type == CLICKUP:
        # Lowercase hex HMAC-SHA256 of the raw body with the webhook's own secret.
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), header.strip().lower().encode())
    if provider_type == TRELLO:
        # base64 HMAC-SHA1 of body + the callback URL exactly as registered (stored verbatim,
        # never rebuilt from the request: a proxy may change scheme, host or query order).
        if not callback_url:
            return False
        expected = base64.b64encode(hmac.new(key, body + callback_url.encode(), hashlib.sha1).digest())
        return hmac.compare_digest(expected, header.strip().encode())
    if provider_type == TODOIST:
        # base64 HMAC-SHA256 of the raw body with the app's client secret.
        expected = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest())
        return hmac.compare_digest(expected, header.strip().encode())
    return False


def sign(provider_type: str, *, body: bytes, secret: str, callback_url: str = "") -> str:
    """The signature header value a provider would send (tests, the sandbox and the benchmark)."""
    key = secret.encode()
    if provider_type == CLICKUP:
        return hmac.new(key, body, hashlib.sha256).hexdigest()
    if provider_type == TRELLO:
        return base64.b64encode(hmac.new(key, body + callback_url.encode(), hashlib.sha1).digest()).decode()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


# --- reading the envelope ------------------------------------------------------------------------


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        # NaN and Infinity are Python's extensions, not JSON (RFC 8259 §6).
        payload = json.loads(body, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested thousands deep
        raise PayloadError("The body is not JSON.") from None
    if not isinstance(payload, dict):
        raise PayloadError("The body is not a JSON object.")
    # No provider sends any of it (docs/provider-apis.md); the delivery row's jsonb column
    # and text fields would refuse it at insert time.
    problem = json_problem(payload, storable=True)
    if problem:
        raise PayloadError(f"The body {problem}.")
    return payload


def _history_items(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """ClickUp's ``history_items`` (§1.5): the objects of the list, or none when it is not a list."""
    items = payload.get("history_items")
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def dedup_key(provider_type: str, payload: Mapping[str, Any], headers: Mapping[str, str], body: bytes) -> str:
    """The key under which a delivery is stored once (unique per provider).

    ClickUp: ``webhook_id`` + the history item ids (§1.5; it sends no delivery id).
    Trello: ``action.id`` (§2.5). Todoist: ``X-Todoist-Delivery-ID``, reused on retries
    (§3.5). Where the key is missing (a ClickUp ``taskDeleted`` carries no history
    items) the body's sha256 stands in: an identical redelivery still dedups.
    """
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if provider_type == CLICKUP:
        ids = sorted(str(item.get("id")) for item in _history_items(payload) if item.get("id"))
        webhook = str(payload.get("webhook_id") or "")
        return f"{webhook}:{','.join(ids)}"[:255] if ids and webhook else digest
    if provider_type == TRELLO:
        action = payload.get("action")
        action_id = action.get("id") if isinstance(action, Mapping) else None
        return str(action_id)[:255] if action_id else digest
    delivery_id = headers.get("X-Todoist-Delivery-ID")
    return str(delivery_id)[:255] if delivery_id else digest


def event_name(provider_type: str, payload: Mapping[str, Any]) -> str:
    if provider_type == CLICKUP:
        value = payload.get("event")
    elif provider_type == TRELLO:
        action = payload.get("action")
        value = action.get("type") if isinstance(action, Mapping) else None
    else:
        value = payload.get("event_name")
    return str(value or "")[:100]


def provider_hints(provider_type: str, payload: Mapping[str, Any]) -> dict[str, str]:
    """What in a payload tells which configured account it is for (the short webhook URL):
    ClickUp ``webhook_id``; Trello ``model.id`` (the watched board); Todoist ``user_id``
    and the task's ``project_id``. Keys are the provider config keys they match."""
    hints: dict[str, str] = {}
    if provider_type == CLICKUP and payload.get("webhook_id"):
        hints["webhook_id"] = str(payload["webhook_id"])
    elif provider_type == TRELLO:
        model = payload.get("model")
        if isinstance(model, Mapping) and model.get("id"):
            hints["board_id"] = str(model["id"])
    elif provider_type == TODOIST:
        if payload.get("user_id"):
            hints["user_id"] = str(payload["user_id"])
        data = payload.get("event_data")
        if isinstance(data, Mapping) and data.get("project_id"):
            hints["project_id"] = str(data["project_id"])
    return hints


# --- changes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteChange:
    """What a provider says happened to one of its tasks.

    ``fields`` holds only what the event tells (a ClickUp status change says nothing of
    the title). ``needs_fetch``: the payload lacks the values (ClickUp sends history
    items, not the task, §1.5), so the task must be read with the adapter and parsed
    with :func:`parse_task`. ``occurred_at`` orders changes of one field (last writer
    wins); ``created_at`` is when the task was made at the provider, if known.
    """

    external_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    occurred_at: dt.datetime | None = None
    created: bool = False
    deleted: bool = False
    needs_fetch: bool = False
    created_at: dt.datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def merged_with(self, other: RemoteChange) -> RemoteChange:
        """This change with the values of ``other`` (a fetched task) filled in where it tells more."""
        return RemoteChange(
            external_id=self.external_id,
            fields={**other.fields, **self.fields},
            occurred_at=self.occurred_at or other.occurred_at,
            created=self.created,
            deleted=self.deleted or other.deleted,
            needs_fetch=False,
            created_at=self.created_at or other.created_at,
            raw=other.raw or self.raw,
        )


def _ms(value: Any) -> dt.datetime | None:
    """ClickUp dates: epoch milliseconds, as strings in responses (§1.4)."""
    try:
        return dt.datetime.fromtimestamp(int(value) / 1000, tz=dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _iso(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _ms_to_iso(value: Any) -> str | None:
    when = _ms(value)
    return when.isoformat() if when else None


# ClickUp status types (§1.4: open, custom, closed, done). The name→status map of the
# provider's config wins; the type is the fallback, since names are per list.
CLICKUP_STATUS_TYPES = {"open": "pending", "custom": "in_progress", "closed": "completed", "done": "completed"}


def clickup_status(status: Any, config: Mapping[str, Any]) -> str | None:
    if not isinstance(status, Mapping):
        return None
    # Two of our statuses may share one of the list's (the demo maps pending and assigned to
    # "to do"): the first listed is ours, as the adapter reads a task (ClickUpAdapter._remote).
    names: dict[str, str] = {}
    for ours, theirs in (config.get("status_map") or {}).items():
        names.setdefault(str(theirs).lower(), ours)
    name = str(status.get("status") or "").lower()
    if name in names:
        return names[name]
    return CLICKUP_STATUS_TYPES.get(str(status.get("type") or "").lower())


def clickup_priority(value: Any) -> int | None:
    """ClickUp 1 urgent .. 4 low (§1.3), an object with a string id in responses (§1.4);
    ours is 1 low .. 4 urgent. None (no priority) maps to our normal."""
    if isinstance(value, Mapping):
        value = value.get("id") or value.get("priority")
    names = {"urgent": 1, "high": 2, "normal": 3, "low": 4}
    if isinstance(value, str) and value.lower() in names:
        value = names[value.lower()]
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 2 if value is None else None
    return 5 - number if 1 <= number <= 4 else None


# History item fields whose "after" value we can read without fetching the task (§1.5).
_CLICKUP_DIRECT = {"name", "status", "priority", "due_date", "archived"}


def parse_clickup_webhook(payload: Mapping[str, Any], config: Mapping[str, Any]) -> list[RemoteChange]:
    event = str(payload.get("event") or "")
    task_id = payload.get("task_id")
    if not event.startswith("task") or not task_id:
        return []  # list/folder/space/goal events say nothing about a task
    task_id = str(task_id)
    items = _history_items(payload)
    occurred = max((when for item in items if (when := _ms(item.get("date")))), default=None)
    if event == "taskDeleted":
        return [RemoteChange(task_id, occurred_at=occurred, deleted=True)]
    if event == "taskCreated":
        return [RemoteChange(task_id, occurred_at=occurred, created=True, created_at=occurred, needs_fetch=True)]
    fields: dict[str, Any] = {}
    needs_fetch = False
    for item in items:
        name, after = item.get("field"), item.get("after")
        if name == "name" and isinstance(after, str):
            fields["title"] = after
        elif name == "status":
            status = clickup_status(after, config)
            if status:
                fields["status"] = status
        elif name == "priority":
            priority = clickup_priority(after)
            if priority:
                fields["priority"] = priority
        elif name == "due_date":
            fields["deadline"] = _ms_to_iso(after) if after else None
        elif name == "archived":
            if str(after).lower() in {"1", "true"}:
                fields["status"] = "archived"
        elif name in {"content", "assignee_add", "assignee_rem"} or name not in _CLICKUP_DIRECT:
            # A description arrives as a Quill delta (§1.5) and assignee items carry one
            # user at a time: read the task itself for the whole value.
            needs_fetch = needs_fetch or name in {"content", "assignee_add", "assignee_rem"}
    if not fields and not needs_fetch:
        return []
    return [RemoteChange(task_id, fields=fields, occurred_at=occurred, needs_fetch=needs_fetch)]


def parse_clickup_task(task: Mapping[str, Any], config: Mapping[str, Any]) -> RemoteChange:
    """A task as GET /task/{id} or GET /list/{id}/task returns it (§1.4)."""
    fields: dict[str, Any] = {
        "title": task.get("name") or "",
        "description": strip_marker(task.get("text_content") or task.get("description") or ""),
        "priority": clickup_priority(task.get("priority")),
        "deadline": _ms_to_iso(task.get("due_date")) if task.get("due_date") else None,
        "assignee_external_ids": [str(a.get("id")) for a in task.get("assignees") or [] if isinstance(a, Mapping)],
    }
    status = "archived" if task.get("archived") else clickup_status(task.get("status"), config)
    if status:
        fields["status"] = status
    if fields["priority"] is None:
        del fields["priority"]
    return RemoteChange(
        str(task.get("id")),
        fields=fields,
        occurred_at=_ms(task.get("date_updated")),
        created_at=_ms(task.get("date_created")),
        raw=dict(task),
    )


def trello_status(card: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    """Trello has no status: the list a card sits in stands for one (config ``status_lists``),
    an archived card (``closed``) is archived, ``dueComplete`` is completed (§2.2, §2.3)."""
    if card.get("closed") is True:
        return "archived"
    lists = {v: k for k, v in (config.get("status_lists") or {}).items()}
    if card.get("idList") in lists:
        return lists[card["idList"]]
    if card.get("dueComplete") is True:
        return "completed"
    return None


def trello_priority(label_ids: Any, config: Mapping[str, Any]) -> int | None:
    labels = {v: k for k, v in (config.get("priority_labels") or {}).items()}
    names = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
    found = [names[labels[i]] for i in label_ids or [] if i in labels and labels[i] in names]
    return max(found) if found else None


def _trello_id_time(card_id: str) -> dt.datetime | None:
    # A Trello id is a MongoDB ObjectId: its first 8 hex digits are the creation time.
    try:
        return dt.datetime.fromtimestamp(int(card_id[:8], 16), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        return None


def parse_trello_webhook(payload: Mapping[str, Any], config: Mapping[str, Any]) -> list[RemoteChange]:
    action = payload.get("action")
    if not isinstance(action, Mapping):
        return []
    data = action.get("data") if isinstance(action.get("data"), Mapping) else {}
    card = data.get("card") if isinstance(data.get("card"), Mapping) else None
    if not card or not card.get("id"):
        return []  # board, list and member actions
    kind = str(action.get("type") or "")
    occurred = _iso(action.get("date"))
    card_id = str(card["id"])
    if kind == "deleteCard":
        return [RemoteChange(card_id, occurred_at=occurred, deleted=True)]
    old = data.get("old") if isinstance(data.get("old"), Mapping) else {}
    fields: dict[str, Any] = {}
    if kind in {"createCard", "copyCard", "moveCardToBoard", "convertToCardFromCheckItem"}:
        # The action carries only the card's name and list: read the card for the rest.
        fields["title"] = card.get("name") or ""
        status = trello_status(card, config)
        if status:
            fields["status"] = status
        return [
            RemoteChange(
                card_id, fields=fields, occurred_at=occurred, created=True, created_at=occurred, needs_fetch=True
            )
        ]
    if kind == "updateCard":
        # data.old names the fields that changed; data.card holds their new values (§2.5).
        if "name" in old:
            fields["title"] = card.get("name") or ""
        if "desc" in old:
            fields["description"] = strip_marker(card.get("desc") or "")
        if "due" in old:
            fields["deadline"] = card.get("due")
        if {"idList", "closed", "dueComplete"} & set(old):
            status = trello_status(card, config)
            if status is None and "closed" in old and card.get("closed") is False:
                status = None  # unarchived: the list (unknown here) decides; fetch
            if status:
                fields["status"] = status
    elif kind in {"addMemberToCard", "removeMemberFromCard", "addLabelToCard", "removeLabelFromCard"}:
        return [RemoteChange(card_id, occurred_at=occurred, needs_fetch=True)]
    if not fields:
        return []
    return [RemoteChange(card_id, fields=fields, occurred_at=occurred)]


def parse_trello_card(card: Mapping[str, Any], config: Mapping[str, Any]) -> RemoteChange:
    """A card as GET /cards/{id} or GET /boards/{id}/cards returns it (§2.4)."""
    fields: dict[str, Any] = {
        "title": card.get("name") or "",
        "description": strip_marker(card.get("desc") or ""),
        "deadline": card.get("due") or None,
        "assignee_external_ids": [str(m) for m in card.get("idMembers") or []],
    }
    status = trello_status(card, config)
    if status:
        fields["status"] = status
    priority = trello_priority(card.get("idLabels"), config)
    if priority:
        fields["priority"] = priority
    card_id = str(card.get("id"))
    return RemoteChange(
        card_id,
        fields=fields,
        occurred_at=_iso(card.get("dateLastActivity")),
        created_at=_trello_id_time(card_id),
        raw=dict(card),
    )


def todoist_priority(value: Any) -> int | None:
    """Todoist 1 normal (default) .. 4 urgent (§3.3); the adapter writes ours (1 low .. 4
    urgent) unchanged, so it reads back unchanged: a round trip must compare equal."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 1 <= number <= 4 else None


def parse_todoist_task(item: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> RemoteChange:
    """A v1 task (§3.4), in a webhook's ``event_data`` or from GET /tasks."""
    due = item.get("due") if isinstance(item.get("due"), Mapping) else None
    fields: dict[str, Any] = {
        "title": item.get("content") or "",
        "description": strip_marker(item.get("description") or ""),
        # A bare due date means the end of that day, as for our own API.
        "deadline": (due.get("datetime") or due.get("date")) if due else None,
        "assignee_external_ids": [str(item["responsible_uid"])] if item.get("responsible_uid") else [],
    }
    priority = todoist_priority(item.get("priority"))
    if priority:
        fields["priority"] = priority
    if item.get("checked") is True:
        fields["status"] = "completed"
    return RemoteChange(
        str(item.get("id")),
        fields=fields,
        occurred_at=_iso(item.get("updated_at")),
        deleted=item.get("is_deleted") is True,
        created_at=_iso(item.get("added_at")),
        raw=dict(item),
    )


def parse_todoist_webhook(payload: Mapping[str, Any], config: Mapping[str, Any]) -> list[RemoteChange]:
    event = str(payload.get("event_name") or "")
    data = payload.get("event_data")
    if not event.startswith("item:") or not isinstance(data, Mapping) or not data.get("id"):
        return []  # notes, projects, sections, labels, filters, reminders
    change = parse_todoist_task(data, config)
    occurred = change.occurred_at or _iso(payload.get("triggered_at"))
    fields = dict(change.fields)
    if event == "item:uncompleted":
        fields["status"] = "in_progress"  # reopened (our completed → in_progress)
    if event == "item:updated":
        # With event_data_extra.old_item only the fields that changed are applied: the
        # rest of the task may be stale against a newer change of ours (§3.5).
        extra = payload.get("event_data_extra")
        old = extra.get("old_item") if isinstance(extra, Mapping) else None
        if isinstance(old, Mapping) and old.get("id"):
            before = parse_todoist_task(old, config).fields
            fields = {k: v for k, v in fields.items() if before.get(k) != v}
            if "status" not in fields and old.get("checked") is True and data.get("checked") is False:
                fields["status"] = "in_progress"
    return [
        RemoteChange(
            change.external_id,
            fields=fields,
            occurred_at=occurred,
            created=event == "item:added",
            deleted=event == "item:deleted" or change.deleted,
            created_at=change.created_at,
            raw=change.raw,
        )
    ]


WEBHOOK_PARSERS = {CLICKUP: parse_clickup_webhook, TRELLO: parse_trello_webhook, TODOIST: parse_todoist_webhook}
TASK_PARSERS = {CLICKUP: parse_clickup_task, TRELLO: parse_trello_card, TODOIST: parse_todoist_task}


def parse_webhook(provider_type: str, payload: Mapping[str, Any], config: Mapping[str, Any]) -> list[RemoteChange]:
    return WEBHOOK_PARSERS[provider_type](payload, config)


def parse_task(provider_type: str, raw: Mapping[str, Any], config: Mapping[str, Any]) -> RemoteChange:
    return TASK_PARSERS[provider_type](raw, config)
