"""ClickUp API v2 as the adapters use it (docs/provider-apis.md §1), under ``/clickup/api/v2``."""

from __future__ import annotations

import math
import secrets
import time
import uuid
from typing import Any

from providers_app.sandbox.base import Identity, Limited, ProviderSim
from providers_app.sandbox.core import Request, Response, as_bool, clickup_id, now_ms

TEAM_ID = "9001"
DEMO_LIST = "901"
OWNER = {
    "id": 81000000,
    "username": "Sandbox Owner",
    "email": "owner@sandbox.example",
    "color": "#7b68ee",
    "initials": "SO",
    "profilePicture": None,
}
# Workspace members the demo's assignee identities point at (bootstrap_demo).
MEMBERS = {
    81000001 + n: {"id": 81000001 + n, "username": name, "email": email, "color": "#40bc86", "initials": initials}
    for n, (name, email, initials) in enumerate(
        [
            ("Ada Lovelace", "ada@example.com", "AL"),
            ("Grace Hopper", "grace@example.com", "GH"),
            ("Linus Torvalds", "linus@example.com", "LT"),
            ("Margaret Hamilton", "margaret@example.com", "MH"),
        ]
    )
}
# provider-apis §1.4: status objects carry a ``type`` in open/custom/closed/done; names are per list.
DEFAULT_STATUSES = [
    ("to do", "open", "#d3d3d3"),
    ("in progress", "custom", "#4194f6"),
    ("blocked", "custom", "#e50000"),
    ("on hold", "custom", "#f9d900"),
    ("review", "custom", "#a875ff"),
    ("done", "done", "#6bc950"),
    ("complete", "closed", "#6bc950"),
]
# provider-apis §1.3: 1 = urgent … 4 = low; responses carry strings (§1.4).
PRIORITIES = {
    1: {"id": "1", "priority": "urgent", "color": "#f50000", "orderindex": "1"},
    2: {"id": "2", "priority": "high", "color": "#ffcc00", "orderindex": "2"},
    3: {"id": "3", "priority": "normal", "color": "#6fddff", "orderindex": "3"},
    4: {"id": "4", "priority": "low", "color": "#d8d8d8", "orderindex": "4"},
}
CLOSED_TYPES = {"closed", "done"}
PAGE_SIZE = 100  # provider-apis §1.2: Get Tasks returns 100 tasks per page, ``page`` from 0
# provider-apis §1.5: the events a webhook may ask for ("*" for all of them).
WEBHOOK_EVENTS = frozenset(
    {
        "taskCreated",
        "taskUpdated",
        "taskDeleted",
        "taskPriorityUpdated",
        "taskStatusUpdated",
        "taskAssigneeUpdated",
        "taskDueDateUpdated",
        "taskTagUpdated",
        "taskMoved",
        "taskCommentPosted",
        "taskCommentUpdated",
        "taskTimeEstimateUpdated",
        "taskTimeTrackedUpdated",
        *(f"{kind}{what}" for kind in ("list", "folder", "space") for what in ("Created", "Updated", "Deleted")),
        "goalCreated",
        "goalUpdated",
        "goalDeleted",
        "keyResultCreated",
        "keyResultUpdated",
        "keyResultDeleted",
    }
)
# Where a webhook may watch, one id per hierarchy level (§1.5), and the task field each is read from.
WEBHOOK_LOCATIONS = {"space_id": "space", "folder_id": "folder", "list_id": "list", "task_id": None}
# A webhook is suspended at this many failures (§1.5, CU-health).
WEBHOOK_SUSPEND_AT = 100
# The task fields whose change through the API is reported as a history item (§1.5).
WEBHOOK_FIELDS = ("name", "description", "status", "priority", "due_date", "archived")
# The client id of webhooks made with a personal token: not documented (UNCONFIRMED); a fixed value.
WEBHOOK_CLIENT_ID = "SANDBOXPERSONALTOKEN"


def err(status: int, message: str, ecode: str, headers: dict[str, str] | None = None) -> Response:
    """provider-apis §1.7: every non-200 carries ``{"err": ..., "ECODE": ...}``."""
    return Response.json(status, {"err": message, "ECODE": ecode}, headers)


class BadInput(Exception):
    def __init__(self, message: str, ecode: str = "INPUT_001") -> None:
        super().__init__(message)
        self.response = err(400, message, ecode)


def _int_or_none(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadInput(f"{field} invalid", "INPUT_002")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise BadInput(f"{field} invalid", "INPUT_002")


def _ms_string(value: int | None) -> str | None:
    return None if value is None else str(value)


class ClickUp(ProviderSim):
    name = "clickup"
    prefix = "/clickup/api/v2"

    def reset(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.seq = 0
        self.lists: dict[str, dict[str, Any]] = {}
        self._add_list(DEMO_LIST, "Archangel demo")
        # Registered webhooks (§1.5), by id; each belongs to the token that made it and has its
        # own secret, which signs its deliveries (providers_app/sandbox/webhooks.py).
        self.webhooks: dict[str, dict[str, Any]] = {}

    def _add_list(self, list_id: str, name: str, statuses: list | None = None) -> None:
        rows = statuses or DEFAULT_STATUSES
        self.lists[list_id] = {
            "id": list_id,
            "name": name,
            "statuses": [
                {
                    "id": f"p{list_id}_{i}",
                    "status": status,
                    "orderindex": i,
                    "color": color,
                    "type": kind,
                }
                for i, (status, kind, color) in enumerate(rows)
            ],
        }

    def configure(self, values: dict[str, Any]) -> None:
        for list_id in values.get("lists", []):
            if not isinstance(list_id, str | int) or not str(list_id).isalnum():
                raise ValueError("clickup.lists: ids must be alphanumeric")
            if str(list_id) not in self.lists:
                self._add_list(str(list_id), f"List {list_id}")
        unknown = set(values) - {"lists"}
        if unknown:
            raise ValueError(f"clickup: unknown settings {sorted(unknown)}")

    def dump(self, *, include_items: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": len(self.tasks),
            "archived": sum(1 for t in self.tasks.values() if t["archived"]),
            "closed": sum(1 for t in self.tasks.values() if t["status"]["type"] in CLOSED_TYPES),
            "lists": sorted(self.lists),
        }
        if include_items:
            out["tasks"] = [self._public(t) for t in self.tasks.values()]
        return out

    # Auth and limits ----------------------------------------------------------------------
    def authenticate(self, req: Request) -> Identity | Response:
        # provider-apis §1.1: personal tokens are sent raw (``Authorization: pk_...``), no
        # "Bearer"; §1.7: OAUTH_017 missing header, OAUTH_025 token invalid.
        header = req.header("Authorization")
        if not header:
            return err(401, "Authorization header required", "OAUTH_017")
        token = header.strip()
        known = self.sandbox.credentials.clickup_tokens
        if token not in known:
            # OAuth access tokens may come with "Bearer" (§1.1, UNCONFIRMED); personal ones never do.
            if token.startswith("Bearer ") and not token[7:].startswith("pk_") and token[7:] in known:
                token = token[7:]
            else:
                return err(401, "Token invalid", "OAUTH_025")
        return Identity(token)

    def rate_limit(self, req: Request, ident: Identity, now: float) -> dict[str, str]:
        # provider-apis §1.6: per token; X-RateLimit-Limit/-Remaining/-Reset (Unix seconds) on
        # responses, 429 when spent. No Retry-After is documented, so none is sent.
        limits = self.sandbox.limits["clickup"]
        limit, period = limits["per_token"], limits["period"]
        if not self.sandbox.rate_limits_enabled:
            limit = 0
        allowed, remaining, reset_at = self.sandbox.windows.hit(("clickup", ident.token), limit, period, now)
        headers = {
            "X-RateLimit-Limit": str(int(limit)) if limit else "1000000",
            "X-RateLimit-Remaining": str(remaining) if limit else "1000000",
            "X-RateLimit-Reset": str(math.ceil(time.time() + (reset_at - now))),
        }
        if not allowed:
            self.sandbox.stats.over_limit["clickup"] += 1
            raise Limited(self._too_many(headers))
        return headers

    @staticmethod
    def _too_many(headers: dict[str, str]) -> Response:
        # The 429 body is not quoted in the reference (UNCONFIRMED); it keeps the §1.7 shape.
        return err(429, "Rate limit reached", "APP_002", headers)

    def storm_response(self, remaining: float) -> Response:
        return self._too_many(
            {
                "X-RateLimit-Limit": str(int(self.sandbox.limits["clickup"]["per_token"] or 0)),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(math.ceil(time.time() + remaining)),
            }
        )

    def error_response(self, status: int) -> Response:
        return err(status, "Internal Server Error", "APP_001" if status == 500 else "APP_003")

    def not_found_route(self, req: Request) -> Response:
        return err(404, "Route not found", "APP_001")

    # Routes --------------------------------------------------------------------------------
    def route(self, req: Request, ident: Identity, sub: list[str]) -> Response:
        try:
            if len(sub) == 3 and sub[0] == "list" and sub[2] == "task":
                if req.method == "POST":
                    return self._create(req, sub[1])
                if req.method == "GET":
                    return self._list_tasks(req, sub[1])
            elif len(sub) == 2 and sub[0] == "list" and req.method == "GET":
                return self._get_list(sub[1])
            elif len(sub) == 2 and sub[0] == "task":
                if req.method == "GET":
                    return Response.json(200, self._public(self._task(sub[1])))
                if req.method == "PUT":
                    return self._update(req, sub[1])
                if req.method == "DELETE":
                    return self._delete(sub[1])
            elif sub == ["user"] and req.method == "GET":
                return Response.json(200, {"user": {**OWNER, "week_start_day": 0, "timezone": "Etc/UTC"}})
            elif sub == ["team"] and req.method == "GET":
                return Response.json(200, {"teams": [self._team()]})
            # Webhooks (§1.5): POST/GET /team/{team_id}/webhook, PUT/DELETE /webhook/{webhook_id}.
            elif len(sub) == 3 and sub[0] == "team" and sub[2] == "webhook" and req.method in ("POST", "GET"):
                self._team_authorized(sub[1])
                if req.method == "POST":
                    return self._webhook_create(req, ident)
                # Only the caller's own webhooks are listed (§1.5).
                hooks = [self.public_webhook(h) for h in self.webhooks.values() if h["_token"] == ident.token]
                return Response.json(200, {"webhooks": hooks})
            elif len(sub) == 2 and sub[0] == "webhook" and req.method in ("PUT", "DELETE"):
                hook = self._webhook(sub[1], ident)
                if req.method == "PUT":
                    return self._webhook_update(req, hook)
                del self.webhooks[hook["id"]]
                self.record_effect("webhook_delete", hook["id"])
                return Response.json(200, {})
        except BadInput as exc:
            return exc.response
        return self.not_found_route(req)

    def _team(self) -> dict[str, Any]:
        return {
            "id": TEAM_ID,
            "name": "Archangel demo",
            "color": "#7b68ee",
            "avatar": None,
            "members": [{"user": {**OWNER, "role": 1}}] + [{"user": {**m, "role": 3}} for m in MEMBERS.values()],
        }

    # Webhooks (§1.5) --------------------------------------------------------------------------
    @staticmethod
    def _team_authorized(team_id: str) -> None:
        # §1.7: OAUTH_023/026/027/029-045 "workspace not authorized"; which code and text a
        # workspace the token is not in gets is not quoted (UNCONFIRMED): 401 OAUTH_027 here.
        if team_id != TEAM_ID:
            raise BadInputStatus(err(401, "Team not authorized", "OAUTH_027"))

    def _webhook(self, webhook_id: str, ident: Identity) -> dict[str, Any]:
        hook = self.webhooks.get(webhook_id)
        if hook is None or hook["_token"] != ident.token:
            # The body of an unknown webhook is not in the reference (UNCONFIRMED): a 404 in the
            # §1.7 shape, which Archangel reads as "already gone" when it unregisters.
            raise BadInputStatus(err(404, "Webhook not found", "WH_001"))
        return hook

    @staticmethod
    def public_webhook(hook: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in hook.items() if not k.startswith("_")}

    @staticmethod
    def _endpoint(value: Any) -> str:
        # The texts and codes of a refused endpoint or event list are not quoted (UNCONFIRMED).
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise BadInput("Endpoint invalid", "WH_002")
        return value

    @staticmethod
    def _events(value: Any) -> list[str]:
        if not isinstance(value, list) or not value or not all(isinstance(e, str) for e in value):
            raise BadInput("Events must be a non-empty array", "WH_003")
        unknown = [e for e in value if e != "*" and e not in WEBHOOK_EVENTS]
        if unknown:
            raise BadInput(f"Event invalid: {unknown[0]}", "WH_003")
        return list(dict.fromkeys(value))

    def _location(self, data: dict[str, Any], key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).isalnum():
            raise BadInput(f"{key} invalid", "INPUT_002")
        value = str(value)
        if key == "list_id":
            self._list(value)
        elif key == "task_id":
            self._task(value)
        return value

    def _webhook_create(self, req: Request, ident: Identity) -> Response:
        data = self._body(req)
        endpoint = self._endpoint(data.get("endpoint"))
        events = self._events(data.get("events"))
        locations = {key: self._location(data, key) for key in WEBHOOK_LOCATIONS}
        hook_id = str(uuid.uuid4())  # webhook ids are UUIDs (§1.5 example payload)
        self.webhooks[hook_id] = {
            "id": hook_id,
            "userid": OWNER["id"],  # the token's user owns it (§1.5)
            "team_id": int(TEAM_ID),
            "endpoint": endpoint,
            "client_id": WEBHOOK_CLIENT_ID,
            "events": events,
            **locations,
            "health": {"status": "active", "fail_count": 0},
            # Every webhook gets its own secret, returned at creation (§1.5: the X-Signature key).
            "secret": "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(64)),
            "_token": ident.token,
        }
        self.record_effect("webhook_create", hook_id, endpoint=endpoint, events=events)
        return Response.json(200, {"id": hook_id, "webhook": self.public_webhook(self.webhooks[hook_id])})

    def _webhook_update(self, req: Request, hook: dict[str, Any]) -> Response:
        data = self._body(req)  # §1.5: endpoint, events, status
        draft = {"endpoint": hook["endpoint"], "events": hook["events"], "health": dict(hook["health"])}
        if "endpoint" in data:
            draft["endpoint"] = self._endpoint(data["endpoint"])
        if "events" in data:
            draft["events"] = self._events(data["events"])
        if "status" in data:
            if data["status"] not in ("active", "suspended"):
                raise BadInput("Status invalid", "WH_004")
            # Reactivating a webhook starts its failure count again (§1.5, CU-health: recovery).
            draft["health"] = {"status": data["status"], "fail_count": 0}
        hook.update(draft)
        self.record_effect("webhook_update", hook["id"], fields=sorted(data))
        return Response.json(200, {"id": hook["id"], "webhook": self.public_webhook(hook)})

    def webhooks_for(self, task: dict[str, Any], event: str) -> list[dict[str, Any]]:
        """The webhooks (not suspended) that want ``event`` of this task: every location a webhook names
        must hold the task. Called under the sandbox lock; copies, secrets included."""
        out = []
        for hook in self.webhooks.values():
            if hook["health"]["status"] == "suspended" or not ("*" in hook["events"] or event in hook["events"]):
                continue
            if all(
                hook[key] is None or hook[key] == (task["id"] if field is None else str(task[field]["id"]))
                for key, field in WEBHOOK_LOCATIONS.items()
            ):
                out.append(dict(hook))
        return out

    def delivery_result(self, webhook_id: str, status: int, *, final: bool) -> None:
        """A delivery's answer on its webhook's health (§1.5, CU-health): a 2xx recovers it, a
        410 suspends it at once, any other answer makes it failing; an event dropped after its
        retries (``final``) counts in ``fail_count``, and 100 of them suspend it."""
        hook = self.webhooks.get(webhook_id)
        if hook is None:
            return
        health = hook["health"]
        if 200 <= status < 300:
            health.update(status="active", fail_count=0)
        elif status == 410:
            health["status"] = "suspended"
        else:
            health["fail_count"] += 1 if final else 0
            health["status"] = "suspended" if health["fail_count"] >= WEBHOOK_SUSPEND_AT else "failing"

    def emit(self, before: dict[str, Any] | None, after: dict[str, Any], names: list[str]) -> None:
        """Queue the signed deliveries of a change made through the API (Archangel's own, so its
        echo suppression is exercised) to every webhook that wants them: ClickUp reports every
        change of a watched task, whoever made it (§1.5). Posted after the fact by the emitter's
        thread and retried. Called under the sandbox lock."""
        if not self.webhooks:
            return
        from providers_app.sandbox.webhooks import clickup_events, emitter_for

        events = clickup_events(before, after, names, now_ms(), user=OWNER)
        hooks: dict[str, dict[str, Any]] = {}
        for event, _ in events:
            hooks.update((h["id"], h) for h in self.webhooks_for(after, event))
        if hooks:
            emitter = emitter_for(self.sandbox)
            emitter.queue(emitter.clickup_deliveries(list(hooks.values()), events, after["id"]))

    def _list(self, list_id: str) -> dict[str, Any]:
        found = self.lists.get(list_id)
        if found is None:
            # provider-apis §1.7 quotes the body; the status is not given: 404 here.
            raise BadInputStatus(err(404, "List not found", "ITEM_015"))
        return found

    def _task(self, task_id: str) -> dict[str, Any]:
        task = self.tasks.get(task_id)
        if task is None:
            # provider-apis §1.7: ``{"err":"Task not found","ECODE":"ITEM_013"}`` was observed
            # with **401**, not 404. Adapters must map ITEM_013 to "not found" by its ECODE.
            raise BadInputStatus(err(401, "Task not found", "ITEM_013"))
        return task

    def _status(self, lst: dict[str, Any], name: Any) -> dict[str, Any]:
        if not isinstance(name, str):
            raise BadInput("Status does not exist", "ITEM_114")
        for status in lst["statuses"]:
            if status["status"] == name.strip().lower():  # ClickUp matches status names case-insensitively
                return dict(status)
        raise BadInput("Status does not exist", "ITEM_114")  # provider-apis §1.7

    def _body(self, req: Request) -> dict[str, Any]:
        try:
            data = req.json()
        except ValueError:
            raise BadInput("Body must be valid JSON", "JSON_001") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise BadInput("Body must be an object", "JSON_001")
        return data

    def _apply_common(self, task: dict[str, Any], data: dict[str, Any]) -> None:
        if "name" in data:
            if not isinstance(data["name"], str) or not data["name"].strip():
                raise BadInput("Task name invalid", "INPUT_005")
            task["name"] = data["name"]
        # provider-apis §1.3: ``markdown_content`` wins over ``description`` when both are sent.
        text = data.get("markdown_content", data.get("description"))
        if "markdown_content" in data or "description" in data:
            if text is not None and not isinstance(text, str):
                raise BadInput("Description invalid", "INPUT_003")
            text = text or ""
            task["description"] = text
            task["text_content"] = text
            task["markdown_description"] = text
        if "priority" in data:
            value = _int_or_none(data["priority"], "Priority")
            if value is not None and value not in PRIORITIES:
                raise BadInput("Priority invalid", "INPUT_004")
            task["priority"] = dict(PRIORITIES[value]) if value else None
        for field in ("due_date", "start_date"):
            if field in data:
                task[field] = _ms_string(_int_or_none(data[field], field))
        for field in ("due_date_time", "start_date_time"):
            if field in data:
                task[field] = as_bool(data[field])
        if "time_estimate" in data:
            value = _int_or_none(data["time_estimate"], "Time estimate")
            if value is not None and not 0 <= value <= 2**31 - 1:  # int32 ms (§1.3)
                raise BadInput("Time estimate invalid", "INPUT_006")
            task["time_estimate"] = value
        if "points" in data:
            task["points"] = data["points"]
        if "archived" in data:
            task["archived"] = as_bool(data["archived"])

    def _assignees(self, ids: Any) -> list[dict[str, Any]]:
        if not isinstance(ids, list):
            raise BadInput("Assignees must be an array", "INPUT_007")
        out = []
        for raw in ids:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise BadInput("Assignees must be user ids (integers)", "INPUT_007")
            user = MEMBERS.get(raw) or (OWNER if raw == OWNER["id"] else None)
            user = user or {"id": raw, "username": f"user {raw}", "email": None, "color": None, "initials": "U"}
            out.append({**user, "profilePicture": None})
        return out

    def _set_status(self, task: dict[str, Any], status: dict[str, Any], at: int) -> None:
        was_closed = task["status"]["type"] in CLOSED_TYPES if task.get("status") else False
        task["status"] = status
        closed = status["type"] in CLOSED_TYPES
        if closed and not was_closed:
            task["date_closed"] = str(at)
            task["date_done"] = str(at) if status["type"] == "done" else task.get("date_done")
        elif not closed:
            task["date_closed"] = None
            task["date_done"] = None

    def _create(self, req: Request, list_id: str) -> Response:
        lst = self._list(list_id)
        data = self._body(req)
        if not isinstance(data.get("name"), str) or not data["name"].strip():
            raise BadInput("Task name invalid", "INPUT_005")
        at = now_ms()
        self.seq += 1
        task_id = clickup_id()
        while task_id in self.tasks:
            task_id = clickup_id()
        task: dict[str, Any] = {
            "id": task_id,
            "custom_id": None,
            "custom_item_id": 0,
            "name": "",
            "text_content": "",
            "description": "",
            "markdown_description": "",
            "status": None,
            "orderindex": f"{self.seq}.00000000000000000000000000000000",
            "date_created": str(at),
            "date_updated": str(at),
            "date_closed": None,
            "date_done": None,
            "archived": False,
            "creator": dict(OWNER),
            "assignees": [],
            "group_assignees": [],
            "watchers": [dict(OWNER)],
            "checklists": [],
            "tags": [],
            "parent": None,
            "top_level_parent": None,
            "priority": None,
            "due_date": None,
            "due_date_time": False,
            "start_date": None,
            "start_date_time": False,
            "points": None,
            "time_estimate": None,
            "time_spent": 0,
            "custom_fields": [],
            "dependencies": [],
            "linked_tasks": [],
            "locations": [],
            "team_id": TEAM_ID,
            "url": f"https://app.clickup.com/t/{task_id}",
            "permission_level": "create",
            "list": {"id": list_id, "name": lst["name"], "access": True},
            "project": {"id": "90010", "name": "hidden", "hidden": True, "access": True},
            "folder": {"id": "90010", "name": "hidden", "hidden": True, "access": True},
            "space": {"id": "90011"},
            "_seq": self.seq,
        }
        self._apply_common(task, data)
        status = self._status(lst, data["status"]) if data.get("status") is not None else dict(lst["statuses"][0])
        self._set_status(task, status, at)
        if "assignees" in data:
            task["assignees"] = self._assignees(data["assignees"])
        if "tags" in data:
            tags = data["tags"]
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise BadInput("Tags must be an array of names", "INPUT_008")
            task["tags"] = [
                {"name": t.lower(), "tag_fg": "#800000", "tag_bg": "#2ecd6f", "creator": OWNER["id"]} for t in tags
            ]
        self.tasks[task_id] = task
        self.record_create(task_id, task["name"], task["description"])
        self.emit(None, self._public(task), [])
        return Response.json(200, self._public(task))

    def _update(self, req: Request, task_id: str) -> Response:
        task = self._task(task_id)
        data = self._body(req)
        draft = dict(task)  # validate everything before changing anything
        self._apply_common(draft, data)
        if data.get("status") is not None:
            self._set_status(draft, self._status(self.lists[task["list"]["id"]], data["status"]), now_ms())
        if "assignees" in data:
            # provider-apis §1.3: Update takes ``{"add": [...], "rem": [...]}``, not a list.
            change = data["assignees"]
            if not isinstance(change, dict):
                raise BadInput("Assignees must be an object with add and rem", "INPUT_007")
            add = self._assignees(change.get("add") or [])
            rem = {u["id"] for u in self._assignees(change.get("rem") or [])}
            kept = [a for a in draft["assignees"] if a["id"] not in rem]
            draft["assignees"] = kept + [a for a in add if a["id"] not in {k["id"] for k in kept}]
        draft["date_updated"] = str(now_ms())
        before = self._public(task)
        task.clear()
        task.update(draft)
        self.record_effect("update", task_id, fields=sorted(k for k in data if k != "_seq"))
        if self.webhooks:
            changed = [k for k in WEBHOOK_FIELDS if before.get(k) != task.get(k)]
            was, now = {a["id"] for a in before["assignees"]}, {a["id"] for a in task["assignees"]}
            changed += ["assignee_add"] * bool(now - was) + ["assignee_rem"] * bool(was - now)
            self.emit(before, self._public(task), changed)
        return Response.json(200, self._public(task))

    def _delete(self, task_id: str) -> Response:
        task = self._task(task_id)
        del self.tasks[task_id]
        self.record_effect("delete", task_id)
        self.emit(self._public(task), self._public(task), ["task_deletion"])
        # Whether deletion is permanent is UNCONFIRMED (§1.2); here it is, and the body is empty.
        return Response(204, b"", "application/json")

    def _get_list(self, list_id: str) -> Response:
        lst = self._list(list_id)
        count = sum(1 for t in self.tasks.values() if t["list"]["id"] == list_id)
        return Response.json(
            200,
            {
                "id": list_id,
                "name": lst["name"],
                "orderindex": 0,
                "content": "",
                "status": None,
                "priority": None,
                "assignee": None,
                "task_count": count,
                "due_date": None,
                "start_date": None,
                "folder": {"id": "90010", "name": "hidden", "hidden": True, "access": True},
                "space": {"id": "90011", "name": "Archangel", "access": True},
                "archived": False,
                "override_statuses": True,
                "statuses": lst["statuses"],
                "permission_level": "create",
            },
        )

    def _list_tasks(self, req: Request, list_id: str) -> Response:
        self._list(list_id)
        page = _int_or_none(req.arg("page", "0"), "page") or 0
        if page < 0:
            raise BadInput("page invalid", "INPUT_002")
        include_closed = as_bool(req.arg("include_closed"))
        archived = as_bool(req.arg("archived"))
        statuses = {s.lower() for s in req.query.get("statuses[]", []) + req.query.get("statuses", [])}
        assignees = {_int_or_none(a, "assignees") for a in req.query.get("assignees[]", [])}
        bounds = {}
        for name in ("date_created", "date_updated", "due_date"):
            for side in ("gt", "lt"):
                raw = req.arg(f"{name}_{side}")
                if raw is not None:
                    bounds[(name, side)] = _int_or_none(raw, f"{name}_{side}")
        order_by = req.arg("order_by", "created")
        keys = {"id": "id", "created": "date_created", "updated": "date_updated", "due_date": "due_date"}
        if order_by not in keys:
            raise BadInput("order_by invalid", "INPUT_002")
        selected = []
        for task in self.tasks.values():
            if task["list"]["id"] != list_id or task["archived"] != archived:
                continue  # archived tasks only with archived=true (§1.2 filters)
            if not include_closed and task["status"]["type"] in CLOSED_TYPES and not statuses:
                continue  # closed tasks are excluded unless include_closed=true (§1.2)
            if statuses and task["status"]["status"] not in statuses:
                continue
            if assignees and not assignees & {a["id"] for a in task["assignees"]}:
                continue
            if not self._within(task, bounds):
                continue
            selected.append(task)
        field = keys[order_by]

        def sort_key(t):
            value = t[field]
            number = int(value) if field != "id" and value is not None else None
            return (value is None, number if field != "id" else value, t["_seq"])

        # Newest first unless ``reverse=true``: ClickUp's default direction is not in the
        # reference (UNCONFIRMED); ties break on creation order so paging is stable.
        selected.sort(key=sort_key, reverse=not as_bool(req.arg("reverse")))
        chunk = selected[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
        last_page = (page + 1) * PAGE_SIZE >= len(selected)
        return Response.json(200, {"tasks": [self._public(t) for t in chunk], "last_page": last_page})

    @staticmethod
    def _within(task: dict[str, Any], bounds: dict) -> bool:
        for (name, side), limit in bounds.items():
            value = task[name]
            if value is None:
                return False
            if side == "gt" and not int(value) > limit:
                return False
            if side == "lt" and not int(value) < limit:
                return False
        return True

    @staticmethod
    def _public(task: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in task.items() if k != "_seq"}


class BadInputStatus(BadInput):
    """An error with its own status (404 list, 401 task not found)."""

    def __init__(self, response: Response) -> None:
        Exception.__init__(self, "error")
        self.response = response
