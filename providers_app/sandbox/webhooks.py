"""Signed webhooks from the sandbox (issue 5 §6): a change made "as a user" in the sandbox is
posted to the registered target exactly as the provider would send it, signed as it signs.

Control endpoints (JSON), wired into ``Sandbox.control``:

``POST /_sandbox/webhooks`` ``{"provider": "todoist", "url": ..., "secret": ...}``
    Register the target of one provider (ClickUp also takes the ``webhook_id`` its payloads carry).
``GET /_sandbox/webhooks``
    The targets (secrets not shown) and the deliveries sent so far.
``POST /_sandbox/user-change`` ``{"provider": "todoist", "id": ..., "changes": {...}}``
    Change a task as its user would (the provider's own update fields, e.g. Todoist ``content``,
    ``priority``, ``checked``), then post the signed webhook. Answers the delivery's status.

Payload shapes and signatures follow docs/provider-apis.md: ClickUp events with history items
and ``X-Signature`` (§1.5); Todoist ``item:updated`` / ``item:completed`` v1 envelopes with
``X-Todoist-Hmac-SHA256`` and ``X-Todoist-Delivery-ID`` (§3.5). The signing helper is
Archangel's own (``providers_app.webhooks.sign``), which the intake tests check against the
reference's formulas.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import requests

from providers_app.sandbox.core import Response, iso_now, now_ms
from providers_app.webhooks import SIGNATURE_HEADERS, sign

SUPPORTED = ("clickup", "todoist")


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
        self.sent: list[dict[str, Any]] = []

    # Control ---------------------------------------------------------------------------------
    def control(self, method: str, what: str, body: dict[str, Any]) -> Response:
        if what == "webhooks" and method == "GET":
            targets = {p: {"url": t["url"]} for p, t in self.targets.items()}
            return Response.json(200, {"targets": targets, "sent": self.sent[-100:]})
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
        if provider not in SUPPORTED:
            raise ValueError(f"user-change: provider must be one of {SUPPORTED}")
        if not isinstance(changes, dict):
            raise ValueError("user-change: changes must be an object")
        if provider == "clickup":
            return self._clickup_change(str(task_id), dict(changes))
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
        for name in sorted(changes):
            field, event, old, new = {
                "name": ("name", "taskUpdated", before.get("name"), after.get("name")),
                # A description arrives as a Quill delta string, "before" null (§1.5).
                "description": (
                    "content",
                    "taskUpdated",
                    None,
                    json.dumps({"ops": [{"insert": after["description"]}]}),
                ),
                "status": ("status", "taskStatusUpdated", before.get("status"), after.get("status")),
                "priority": ("priority", "taskPriorityUpdated", before.get("priority"), after.get("priority")),
            }.get(name, (name, "taskUpdated", before.get(name), after.get(name)))
            item = {
                "id": str(at * 1000 + len(events)),
                "type": 1,
                "date": str(at),
                "field": field,
                "parent_id": after.get("list", {}).get("id"),
                "data": {},
                "source": None,
                "user": {"id": 183, "username": "Sandbox user", "email": "user@example.com"},
                "before": old,
                "after": new,
            }
            target = self.targets.get("clickup") or {}
            payload = {
                "event": event,
                "history_items": [item],
                "task_id": task_id,
                "webhook_id": target.get("webhook_id", ""),
            }
            events.append(self._post("clickup", payload))
        return {
            "sent": all(e.get("sent") for e in events),
            "status": max((e.get("status", 0) for e in events), default=0),
            "events": events,
        }

    def _post(self, provider: str, payload: dict[str, Any]) -> dict[str, Any]:
        target = self.targets.get(provider)
        if target is None:
            return {"sent": False, "reason": "no webhook target registered"}
        body = json.dumps(payload, separators=(",", ":")).encode()
        delivery_id = str(uuid.uuid4())
        headers = {"Content-Type": "application/json"}
        if provider == "todoist":
            headers.update({"User-Agent": "Todoist-Webhooks", "X-Todoist-Delivery-ID": delivery_id})
        headers = {
            **headers,
            SIGNATURE_HEADERS[provider]: sign(
                provider, body=body, secret=target["secret"], callback_url=target["callback_url"]
            ),
        }
        try:
            status = requests.post(target["url"], data=body, headers=headers, timeout=10).status_code
        except requests.RequestException as exc:
            error = type(exc).__name__
            self.sent.append({"provider": provider, "delivery_id": delivery_id, "status": 0, "error": error})
            return {"sent": False, "delivery_id": delivery_id, "status": 0, "error": error}
        self.sent.append({"provider": provider, "delivery_id": delivery_id, "status": status})
        return {"sent": True, "delivery_id": delivery_id, "status": status}
