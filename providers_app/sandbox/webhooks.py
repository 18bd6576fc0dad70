"""Signed webhooks from the sandbox (issue 5 §6): a change made "as a user" in the sandbox is
posted to the registered target exactly as the provider would send it, signed as it signs.

Control endpoints (JSON), wired into ``Sandbox.control``:

``POST /_sandbox/webhooks`` ``{"provider": "todoist", "url": ..., "secret": ...}``
    Register the target of one provider (ClickUp also takes the ``webhook_id`` its payloads carry).
    ClickUp webhooks can also be registered as on ClickUp, ``POST /clickup/api/v2/team/{team_id}/webhook``
    (clickup.py): each gets its own secret, and a change of a task it watches (through the API,
    after the fact and retried; or "as a user", at once) is posted to its endpoint with its
    ``webhook_id``, signed with that secret, beside the target set here (``{"provider":
    "clickup", "retry_seconds": [...]}`` alone sets the waits between its retries).
    Trello webhooks are registered as on Trello, ``POST /trello/1/webhooks`` (trello.py); here
    ``{"provider": "trello", "retry_seconds": [...]}`` only sets the waits between its retries.
``GET /_sandbox/webhooks``
    The targets and the ClickUp webhooks (secrets not shown), the Trello webhooks, the deliveries
    sent so far and how many are still ``pending`` (queued or being retried).
``POST /_sandbox/user-change`` ``{"provider": "todoist", "id": ..., "changes": {...}}``
    Change a task as its user would (the provider's own update fields, e.g. Todoist ``content``,
    ``priority``, ``checked``; Trello ``name``, ``desc``, ``idList``, ``closed``, ``due``...), then
    post the signed webhook. Answers the delivery's status.

Payload shapes and signatures follow docs/provider-apis.md: ClickUp events with history items
and ``X-Signature`` (§1.5); Trello actions (``createCard``, ``updateCard`` with ``data.old``,
``deleteCard``, member and label actions) with the watched ``model``, signed ``X-Trello-Webhook``
= base64(HMAC-SHA1(app secret, body + callbackURL as registered)) (§2.5); Todoist
``item:updated`` / ``item:completed`` v1 envelopes with ``X-Todoist-Hmac-SHA256`` and
``X-Todoist-Delivery-ID`` (§3.5). The signing helper is Archangel's own
(``providers_app.webhooks.sign``), which the intake tests check against the reference's formulas.

Trello posts every action on a watched model, Archangel's own writes included (that is what
echo suppression is for): a card created, changed or deleted through the sandbox's API queues
its deliveries, which one thread per sandbox posts after the fact, retrying a failed one
(§2.5: 3 retries; the intervals are not documented) and deleting the webhook on a 410.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
import uuid
from collections import deque
from typing import Any

import requests

from providers_app.sandbox.core import Response, iso_now, iso_now_ms, now_ms, trello_id
from providers_app.webhooks import SIGNATURE_HEADERS, sign

SUPPORTED = ("clickup", "todoist")
CHANGEABLE = ("clickup", "trello", "todoist")
# Who a change made through the control endpoint names as its author (not the token's member,
# whose changes are the ones Archangel makes through the API).
SANDBOX_USER = {"id": "5c0000000000000000000001", "fullName": "Sandbox user", "username": "sandboxuser"}
# Trello retries a failed delivery 3 times (§2.5); its intervals are not documented.
TRELLO_RETRY_SECONDS = (1.0, 5.0, 30.0)
# ClickUp retries an event up to 5 times (§1.5, CU-health); its intervals are not documented.
CLICKUP_RETRY_SECONDS = (1.0, 5.0, 30.0, 60.0, 120.0)


def emitter_for(sandbox) -> WebhookEmitter:
    """The sandbox's emitter, made on first use (the engine needs no field of its own)."""
    emitter = getattr(sandbox, "_webhook_emitter", None)
    if emitter is None:
        emitter = sandbox._webhook_emitter = WebhookEmitter(sandbox)
    return emitter


class WebhookEmitter:
    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox
        self.targets: dict[str, dict[str, str]] = {}
        self.sent: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.trello_retry_seconds: tuple[float, ...] = TRELLO_RETRY_SECONDS
        self.clickup_retry_seconds: tuple[float, ...] = CLICKUP_RETRY_SECONDS
        # Trello deliveries waiting to be posted: (due, seq, delivery), one thread posts them.
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._thread: threading.Thread | None = None

    # Control ---------------------------------------------------------------------------------
    def control(self, method: str, what: str, body: dict[str, Any]) -> Response:
        if what == "webhooks" and method == "GET":
            targets = {p: {"url": t["url"]} for p, t in self.targets.items()}
            with self.sandbox.lock:
                trello = [
                    self.sandbox.sims["trello"]._public_webhook(h)
                    for h in self.sandbox.sims["trello"].webhooks.values()
                ]
                clickup = [
                    {k: v for k, v in self.sandbox.sims["clickup"].public_webhook(h).items() if k != "secret"}
                    for h in self.sandbox.sims["clickup"].webhooks.values()
                ]
            return Response.json(
                200,
                {
                    "targets": targets,
                    "clickup": clickup,
                    "trello": trello,
                    "sent": list(self.sent)[-100:],
                    "pending": self.pending(),
                },
            )
        provider = body.get("provider")
        if (
            what == "webhooks"
            and method in ("POST", "PUT")
            and (provider == "trello" or (provider == "clickup" and "retry_seconds" in body and "url" not in body))
        ):
            delays = body.get("retry_seconds")
            if not isinstance(delays, list) or not all(isinstance(d, int | float) and 0 <= d <= 3600 for d in delays):
                raise ValueError(f"webhooks: {provider} takes retry_seconds, a list of 0-3600 second waits")
            setattr(self, f"{provider}_retry_seconds", tuple(float(d) for d in delays))
            return Response.json(200, {"ok": True})
        if what == "webhooks" and method in ("POST", "PUT"):
            provider = body.get("provider")
            url = str(body.get("url") or "")
            if provider not in SUPPORTED or not url.startswith(("http://", "https://")) or not body.get("secret"):
                raise ValueError(f"webhooks: need provider (one of {SUPPORTED}), url and secret")
            self.targets[provider] = {
                "url": url,
                "secret": str(body["secret"]),
                "callback_url": str(body.get("callback_url") or body["url"]),
                "webhook_id": str(body.get("webhook_id") or ""),
            }
            return Response.json(200, {"ok": True})
        if what == "user-change" and method == "POST":
            return Response.json(200, self.user_change(body.get("provider"), body.get("id"), body.get("changes") or {}))
        return Response.json(404, {"error": f"unknown control endpoint {method} /_sandbox/{what}"})

    # The change and its webhook ----------------------------------------------------------------
    def user_change(self, provider: Any, task_id: Any, changes: dict[str, Any]) -> dict[str, Any]:
        if provider not in CHANGEABLE:
            raise ValueError(f"user-change: provider must be one of {CHANGEABLE}")
        if not isinstance(changes, dict):
            raise ValueError("user-change: changes must be an object")
        if provider == "clickup":
            return self._clickup_change(str(task_id), dict(changes))
        if provider == "trello":
            return self._trello_change(str(task_id), dict(changes))
        sim = self.sandbox.sims[provider]
        with self.sandbox.lock:
            task = sim.tasks.get(str(task_id))
            if task is None:
                raise ValueError(f"user-change: no {provider} task {task_id!r}")
            old = sim._public(task)
            draft = dict(task)
            checked = changes.pop("checked", None)
            sim._apply(draft, changes)
            if checked is not None:
                draft["checked"] = bool(checked)
                draft["completed_at"] = iso_now() if checked else None
            task.update(draft)
            sim.record_effect(
                "user_update", task["id"], fields=sorted([*changes, *(["checked"] if checked is not None else [])])
            )
            new = sim._public(task)
        event = "item:updated"
        if checked is True and not old["checked"]:
            event = "item:completed"
        elif checked is False and old["checked"]:
            event = "item:uncompleted"
        payload = {
            "event_name": event,
            "user_id": new.get("user_id"),
            "version": "1",
            "initiator": {"id": new.get("user_id"), "full_name": "Sandbox user", "email": "user@example.com"},
            "triggered_at": new.get("updated_at"),
            "event_data": new,
            "event_data_extra": {"old_item": old, "update_intent": "item_updated"},
        }
        return self._post(provider, payload)

    def _clickup_change(self, task_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """ClickUp fields (``name``, ``description``, ``status`` name, ``priority`` 1-4); one event
        per changed field with history items, never the task (docs/provider-apis.md §1.5)."""
        sim = self.sandbox.sims["clickup"]
        with self.sandbox.lock:
            task = sim.tasks.get(task_id)
            if task is None:
                raise ValueError(f"user-change: no clickup task {task_id!r}")
            before = sim._public(task)
            draft = dict(task)
            sim._apply_common(draft, {k: v for k, v in changes.items() if k != "status"})
            at = now_ms()
            if changes.get("status") is not None:
                sim._set_status(draft, sim._status(sim.lists[task["list"]["id"]], changes["status"]), at)
            draft["date_updated"] = str(at)
            task.clear()
            task.update(draft)
            sim.record_effect("user_update", task_id, fields=sorted(changes))
            after = sim._public(task)
        events = []
        for event, item in clickup_events(before, after, sorted(changes), at, user=CLICKUP_SANDBOX_USER):
            # Every webhook registered through the API that wants this event of this task gets
            # its own delivery: its webhook_id in the payload, signed with its own secret (§1.5).
            with self.sandbox.lock:
                hooks = sim.webhooks_for(after, event)
            target = self.targets.get("clickup")
            if target is None and not hooks:
                events.append({"sent": False, "reason": "no webhook target registered"})
                continue
            if target is not None:  # the control endpoint's target, as before
                payload = {"event": event, "history_items": [item], "task_id": task_id}
                events.append(self._post("clickup", {**payload, "webhook_id": target.get("webhook_id", "")}))
            for hook in hooks:
                payload = {"event": event, "history_items": [item], "task_id": task_id, "webhook_id": hook["id"]}
                result = self._send(
                    "clickup", payload, url=hook["endpoint"], secret=hook["secret"], callback_url=hook["endpoint"]
                )
                with self.sandbox.lock:
                    sim.delivery_result(hook["id"], result["status"], final=True)
                events.append({**result, "webhook_id": hook["id"]})
        return {
            "sent": all(e.get("sent") for e in events),
            "status": max((e.get("status", 0) for e in events), default=0),
            "events": events,
        }

    def _post(self, provider: str, payload: dict[str, Any]) -> dict[str, Any]:
        target = self.targets.get(provider)
        if target is None:
            return {"sent": False, "reason": "no webhook target registered"}
        return self._send(
            provider, payload, url=target["url"], secret=target["secret"], callback_url=target["callback_url"]
        )

    def _send(self, provider: str, payload: dict[str, Any], *, url: str, secret: str, callback_url: str):
        body = json.dumps(payload, separators=(",", ":")).encode()
        delivery_id = str(uuid.uuid4())
        headers = {"Content-Type": "application/json"}
        if provider == "todoist":
            headers.update({"User-Agent": "Todoist-Webhooks", "X-Todoist-Delivery-ID": delivery_id})
        headers = {
            **headers,
            SIGNATURE_HEADERS[provider]: sign(provider, body=body, secret=secret, callback_url=callback_url),
        }
        try:
            status = requests.post(url, data=body, headers=headers, timeout=10).status_code
        except requests.RequestException as exc:
            error = type(exc).__name__
            self.sent.append({"provider": provider, "delivery_id": delivery_id, "status": 0, "error": error})
            return {"sent": False, "delivery_id": delivery_id, "status": 0, "error": error}
        self.sent.append({"provider": provider, "delivery_id": delivery_id, "status": status})
        return {"sent": True, "delivery_id": delivery_id, "status": status}

    # Trello ------------------------------------------------------------------------------------
    def _trello_change(self, card_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Trello card fields as ``PUT /1/cards/{id}`` takes them (``name``, ``desc``, ``due``,
        ``dueComplete``, ``idList``, ``closed``, ``idMembers``, ``idLabels``); the deliveries
        to every webhook watching the card are posted now and their status answered."""
        from providers_app.sandbox.trello import TrelloError

        sim = self.sandbox.sims["trello"]
        with self.sandbox.lock:
            card = sim.cards.get(card_id)
            if card is None:
                raise ValueError(f"user-change: no trello card {card_id!r}")
            before = dict(card)
            draft = dict(card)
            try:
                sim._apply(draft, changes)
            except TrelloError as exc:
                raise ValueError(f"user-change: {exc}") from None
            card.clear()
            card.update(draft)
            sim.record_effect("user_update", card_id, fields=sorted(changes))
            deliveries = sim.emit("updateCard", before, card, member=SANDBOX_USER, queue=False)
        if not deliveries:
            return {"sent": False, "reason": "no active Trello webhook watches this card"}
        events = []
        for delivery in deliveries:
            status = self._trello_post(delivery)
            if not (200 <= status < 300 or status == 410):
                self._schedule(delivery)  # Trello retries; the answer reports the first attempt
            events.append({"sent": status != 0, "status": status, "action": delivery["action_type"]})
        return {
            "sent": all(e["sent"] for e in events),
            "status": max(e["status"] for e in events),
            "events": events,
        }

    def trello_deliveries(
        self, sim, hooks: list[dict[str, Any]], actions: list[dict[str, Any]], before: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """One signed delivery per (webhook, action): the body is the action and the model the
        webhook watches; the signature is over the body + the callbackURL as registered, with
        the application secret of the key that made the webhook (§2.5)."""
        out = []
        for hook in hooks:
            model = sim._model(hook["idModel"]) or (sim._public(before) if before else {"id": hook["idModel"]})
            secret = sim.app_secrets.get(hook["key"] or "")
            for action in actions:
                body = json.dumps({"action": action, "model": model}, separators=(",", ":")).encode()
                headers = {"Content-Type": "application/json", "User-Agent": "Trello"}
                if secret:
                    headers[SIGNATURE_HEADERS["trello"]] = sign(
                        "trello", body=body, secret=secret, callback_url=hook["callbackURL"]
                    )
                out.append(
                    {
                        "hook": hook["id"],
                        "url": hook["callbackURL"],
                        "body": body,
                        "headers": headers,
                        "action_id": action["id"],
                        "action_type": action["type"],
                        "attempt": 0,
                    }
                )
        return out

    def queue(self, deliveries: list[dict[str, Any]]) -> None:
        for delivery in deliveries:
            self._schedule(delivery, first=True)

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._in_flight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until every queued delivery has been posted (or given up); for tests."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._in_flight, timeout)

    def _schedule(self, delivery: dict[str, Any], *, first: bool = False) -> None:
        if first:
            delay = 0.0
        else:
            attempt = delivery["attempt"]
            retries = self._retries(delivery)
            if attempt >= len(retries):
                return  # retried as often as the provider does: dropped
            delay = retries[attempt]
            delivery = {**delivery, "attempt": attempt + 1}
        with self._cond:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), delivery))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue or self._queue[0][0] > time.monotonic():
                    self._cond.wait(self._queue[0][0] - time.monotonic() if self._queue else None)
                _, _, delivery = heapq.heappop(self._queue)
                self._in_flight += 1
            try:
                if delivery.get("provider") == "clickup":
                    status = self._clickup_post(delivery)
                else:
                    status = self._trello_post(delivery)
                if not (200 <= status < 300 or status == 410):
                    self._schedule(delivery)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _retries(self, delivery: dict[str, Any]) -> tuple[float, ...]:
        return self.clickup_retry_seconds if delivery.get("provider") == "clickup" else self.trello_retry_seconds

    # ClickUp webhooks registered through the API (clickup.py) -----------------------------------
    def clickup_deliveries(self, hooks: list[dict[str, Any]], events: list[tuple[str, dict[str, Any]]], task_id: str):
        """One delivery per (webhook, event): the webhook's id in the payload and X-Signature =
        hex HMAC-SHA256(that webhook's secret, raw body) (§1.5)."""
        out = []
        for hook in hooks:
            for event, item in events:
                if "*" not in hook["events"] and event not in hook["events"]:
                    continue
                payload = {"event": event, "history_items": [item], "task_id": task_id, "webhook_id": hook["id"]}
                body = json.dumps(payload, separators=(",", ":")).encode()
                headers = {
                    "Content-Type": "application/json",
                    SIGNATURE_HEADERS["clickup"]: sign("clickup", body=body, secret=hook["secret"]),
                }
                out.append(
                    {
                        "provider": "clickup",
                        "hook": hook["id"],
                        "url": hook["endpoint"],
                        "body": body,
                        "headers": headers,
                        "action_id": item["id"],
                        "action_type": event,
                        "attempt": 0,
                    }
                )
        return out

    @staticmethod
    def _post_delivery(delivery: dict[str, Any]) -> tuple[int, str | None]:
        """POST one queued delivery; (status, None), or (0, the error's name) when nothing answered."""
        try:
            response = requests.post(delivery["url"], data=delivery["body"], headers=delivery["headers"], timeout=10)
        except requests.RequestException as exc:
            return 0, type(exc).__name__
        return response.status_code, None

    def _record_sent(self, entry: dict[str, Any], delivery: dict[str, Any], status: int, error: str | None) -> int:
        entry.update(delivery_id=delivery["action_id"], attempt=delivery["attempt"], status=status)
        if error:
            entry["error"] = error
        self.sent.append(entry)
        return status

    def _clickup_post(self, delivery: dict[str, Any]) -> int:
        status, error = self._post_delivery(delivery)
        final = 200 <= status < 300 or status == 410 or delivery["attempt"] >= len(self.clickup_retry_seconds)
        with self.sandbox.lock:
            self.sandbox.sims["clickup"].delivery_result(delivery["hook"], status, final=final)
        entry = {"provider": "clickup", "event": delivery["action_type"], "webhook_id": delivery["hook"]}
        return self._record_sent(entry, delivery, status, error)

    def _trello_post(self, delivery: dict[str, Any]) -> int:
        status, error = self._post_delivery(delivery)
        sim = self.sandbox.sims["trello"]
        with self.sandbox.lock:
            hook = sim.webhooks.get(delivery["hook"])
            if hook is not None:
                if 200 <= status < 300:
                    hook["consecutiveFailures"], hook["firstConsecutiveFailDate"] = 0, None
                elif status == 410:
                    del sim.webhooks[hook["id"]]  # the callback said the webhook is gone (§2.5)
                else:
                    hook["consecutiveFailures"] += 1
                    hook["firstConsecutiveFailDate"] = hook["firstConsecutiveFailDate"] or iso_now_ms()
        return self._record_sent({"provider": "trello", "action": delivery["action_type"]}, delivery, status, error)


# ClickUp history items (docs/provider-apis.md §1.5): one event per changed field, never the task.
CLICKUP_SANDBOX_USER = {"id": 183, "username": "Sandbox user", "email": "user@example.com"}


def clickup_events(
    before: dict[str, Any] | None, after: dict[str, Any], names: list[str], at: int, *, user: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(event, history item) for each changed field name of a task (``name``, ``description``,
    ``status``, ``priority``, others as ``taskUpdated``); a new task (``before`` None) fires
    ``taskCreated`` and ``taskStatusUpdated`` (§1.5, CU-payloads)."""
    if before is None:
        names = ["task_creation", "status"]
        before = {}
    out = []
    for name in names:
        field, event, old, new = {
            "task_creation": ("task_creation", "taskCreated", None, None),
            "name": ("name", "taskUpdated", before.get("name"), after.get("name")),
            # A description arrives as a Quill delta string, "before" null (§1.5).
            "description": ("content", "taskUpdated", None, json.dumps({"ops": [{"insert": after["description"]}]})),
            "status": ("status", "taskStatusUpdated", before.get("status"), after.get("status")),
            "priority": ("priority", "taskPriorityUpdated", before.get("priority"), after.get("priority")),
            "due_date": ("due_date", "taskDueDateUpdated", before.get("due_date"), after.get("due_date")),
            # Assignee items name one user each; Archangel reads the task for the whole list.
            "assignee_add": ("assignee_add", "taskAssigneeUpdated", None, None),
            "assignee_rem": ("assignee_rem", "taskAssigneeUpdated", None, None),
            # The history item of a deletion is not quoted in the reference (UNCONFIRMED).
            "task_deletion": ("task_deletion", "taskDeleted", None, None),
        }.get(name, (name, "taskUpdated", before.get(name), after.get(name)))
        item = {
            "id": str(at * 1000 + len(out)),
            "type": 1,
            "date": str(at),
            "field": field,
            "parent_id": after.get("list", {}).get("id"),
            "data": {},
            "source": None,
            "user": dict(user),
            "before": old,
            "after": new,
        }
        out.append((event, item))
    return out


# Trello action shapes (docs/provider-apis.md §2.5: the example updateCard, and the action types
# and display translation keys consumers see). One action per changed attribute.
_MOVES = {True: "action_moved_card_higher", False: "action_moved_card_lower"}


def _trello_action(kind: str, translation_key: str, data: dict[str, Any], member: dict[str, str]) -> dict[str, Any]:
    initials = "".join(part[:1] for part in member["fullName"].split())[:3].upper()
    return {
        "id": trello_id(),
        "idMemberCreator": member["id"],
        "type": kind,
        "date": iso_now_ms(),
        "data": data,
        "appCreator": None,
        "limits": {},
        "display": {"translationKey": translation_key, "entities": {}},
        "memberCreator": {
            "id": member["id"],
            "fullName": member["fullName"],
            "username": member["username"],
            "initials": initials,
            "avatarHash": None,
            "avatarUrl": None,
        },
    }


def trello_actions(
    sim, kind: str, before: dict[str, Any] | None, after: dict[str, Any] | None, *, member: dict[str, str]
) -> list[dict[str, Any]]:
    from providers_app.sandbox.trello import MEMBERS

    card = after or before
    board = sim.boards[card["idBoard"]]
    board_ref = {"id": board["id"], "name": board["name"], "shortLink": board["id"][-8:]}

    def card_ref(c: dict[str, Any], *fields: str) -> dict[str, Any]:
        ref = {"id": c["id"], "name": c["name"], "idShort": c["idShort"], "shortLink": c["shortLink"]}
        ref.update({f: c.get(f) for f in fields})
        return ref

    def list_ref(list_id: str) -> dict[str, Any]:
        lst = sim.lists.get(list_id) or {"id": list_id, "name": ""}
        return {"id": lst["id"], "name": lst["name"]}

    if kind == "createCard":
        data = {"card": card_ref(after, "idList"), "list": list_ref(after["idList"]), "board": board_ref}
        return [_trello_action("createCard", "action_create_card", data, member)]
    if kind == "deleteCard":
        data = {
            "card": {"id": before["id"], "idShort": before["idShort"], "shortLink": before["shortLink"]},
            "list": list_ref(before["idList"]),
            "board": board_ref,
        }
        return [_trello_action("deleteCard", "action_delete_card", data, member)]
    actions = []
    for field in ("idList", "closed", "name", "desc", "due", "dueComplete", "start", "pos"):
        old, new = before.get(field), after.get(field)
        if old == new or (field == "pos" and before["idList"] != after["idList"]):
            continue
        data: dict[str, Any] = {"card": card_ref(after, field), "old": {field: old}, "board": board_ref}
        if field == "idList":
            data["card"]["idList"] = new
            data["listBefore"], data["listAfter"] = list_ref(old), list_ref(new)
            key = "action_move_card_from_list_to_list"
        else:
            data["list"] = list_ref(after["idList"])
            key = {
                "closed": "action_archived_card" if new else "action_sent_card_to_board",
                "name": "action_renamed_card",
                "desc": "action_changed_description_of_card",
                "due": "action_removed_a_due_date"
                if new is None
                else ("action_added_a_due_date" if old is None else "action_changed_a_due_date"),
                "dueComplete": "action_marked_the_due_date_complete"
                if new
                else "action_marked_the_due_date_incomplete",
                "start": "action_changed_a_start_date",
                "pos": _MOVES[bool(new is not None and old is not None and new < old)],
            }[field]
        actions.append(_trello_action("updateCard", key, data, member))
    for member_id in [m for m in after["idMembers"] if m not in before["idMembers"]]:
        data = {
            "card": card_ref(after),
            "board": board_ref,
            "idMember": member_id,
            "member": {"id": member_id, "name": MEMBERS.get(member_id, "")},
        }
        actions.append(_trello_action("addMemberToCard", "action_add_member_to_card", data, member))
    for member_id in [m for m in before["idMembers"] if m not in after["idMembers"]]:
        data = {
            "card": card_ref(after),
            "board": board_ref,
            "idMember": member_id,
            "member": {"id": member_id, "name": MEMBERS.get(member_id, "")},
        }
        actions.append(_trello_action("removeMemberFromCard", "action_remove_member_from_card", data, member))
    labels = board["labels"]
    for label_id in [x for x in after["idLabels"] if x not in before["idLabels"]]:
        label = labels.get(label_id, {"id": label_id, "name": "", "color": None})
        data = {
            "card": card_ref(after),
            "board": board_ref,
            "label": label,
            "text": label["name"],
            "value": label["color"],
        }
        actions.append(_trello_action("addLabelToCard", "action_add_label_to_card", data, member))
    for label_id in [x for x in before["idLabels"] if x not in after["idLabels"]]:
        label = labels.get(label_id, {"id": label_id, "name": "", "color": None})
        data = {
            "card": card_ref(after),
            "board": board_ref,
            "label": label,
            "text": label["name"],
            "value": label["color"],
        }
        actions.append(_trello_action("removeLabelFromCard", "action_remove_label_from_card", data, member))
    return actions
