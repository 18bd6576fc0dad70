"""Todoist API v1 as the adapters use it (docs/provider-apis.md §3), under ``/todoist/api/v1``.

REST v2 (``/todoist/rest/v2/...``) answers 410 Gone, as the real one does since 2026-02-10 (§0).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import secrets
import time
from typing import Any

from providers_app.sandbox.base import Identity, Limited, ProviderSim
from providers_app.sandbox.core import Request, Response, iso_now, todoist_id

DEMO_PROJECT = "6Demo"
INBOX_PROJECT = "6Inbox0000000000"
USER_ID = "2671355"
# The people every sandbox project is shared with (the token's owner first); the demo's assignee
# identities point at these (tasks_app bootstrap_demo: Todoist user ids 2671356 + n).
COLLABORATORS = {
    str(2671355 + n): name
    for n, name in enumerate(["Sandbox Demo", "Ada Lovelace", "Grace Hopper", "Linus Torvalds", "Margaret Hamilton"])
}

# provider-apis §0: the 410 body of the retired REST v2 (plain text) points at /api/v1/.
GONE_TEXT = (
    "This endpoint is deprecated.\n\n"
    "If you're using the API directly, please update your use case to rely\n"
    "on the new API endpoints, available under /api/v1/ prefixes.\n\n"
    "For more details, please see documentation at https://developer.todoist.com/\n"
)
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Sync API: "the maximum number of commands is 100 per request" (Sync v9 docs, the limit the unified
# v1 keeps for POST /api/v1/sync; provider-apis §3.2). The error a larger request gets is the
# sandbox's choice in Todoist's error shape (UNCONFIRMED): 400, error_tag TOO_MANY_COMMANDS.
SYNC_MAX_COMMANDS = 100


def err(status: int, message: str, tag: str, code: int, extra: dict[str, Any] | None = None, headers=None) -> Response:
    """provider-apis §3.7: ``{error, error_code, error_extra, error_tag, http_code}``. The 429 body
    is the real one (§3.6); the other codes and tags follow that shape, their values are the
    sandbox's (UNCONFIRMED for v1)."""
    body = {
        "error": message,
        "error_code": code,
        "error_extra": {"event_id": secrets.token_hex(16), **(extra or {})},
        "error_tag": tag,
        "http_code": status,
    }
    return Response.json(status, body, headers)


class TodoistError(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__("error")
        self.response = response


def bad(message: str, tag: str = "INVALID_ARGUMENT_VALUE", code: int = 20, **extra: Any) -> TodoistError:
    return TodoistError(err(400, message, tag, code, extra))


def _due(data: dict[str, Any]) -> dict[str, Any] | None:
    """``due_string`` / ``due_date`` / ``due_datetime`` (§3.3); only one of date and datetime."""
    if data.get("due_date") is not None and data.get("due_datetime") is not None:
        raise bad("Only one of due_date and due_datetime may be set", argument="due_datetime")
    lang = data.get("due_lang") or "en"
    if data.get("due_datetime") is not None:
        raw = data["due_datetime"]
        try:
            parsed = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            raise bad("Invalid argument value", argument="due_datetime") from None
        if parsed.tzinfo is not None:
            stamp = parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            tz = "UTC"
        else:  # floating local time (§3.3)
            stamp, tz = parsed.strftime("%Y-%m-%dT%H:%M:%S"), None
        return {
            "date": stamp[:10],
            "datetime": stamp,
            "string": parsed.strftime("%b %d %H:%M"),
            "lang": lang,
            "is_recurring": False,
            "timezone": tz,
        }
    if data.get("due_date") is not None:
        if not isinstance(data["due_date"], str) or not DATE_RE.match(data["due_date"]):
            raise bad("Invalid argument value", argument="due_date")
        return {"date": data["due_date"], "string": data["due_date"], "lang": lang, "is_recurring": False}
    if data.get("due_string"):
        return {
            "date": time.strftime("%Y-%m-%d"),
            "string": str(data["due_string"]),
            "lang": lang,
            "is_recurring": False,
        }
    return None


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "seq":
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise bad("Invalid cursor", argument="cursor") from None


class Todoist(ProviderSim):
    name = "todoist"
    prefix = "/todoist/api/v1"

    def reset(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.seq = 0
        self.projects: dict[str, dict[str, Any]] = {}
        self.request_ids: dict[tuple[str, str], tuple[float, Response]] = {}
        # Sync commands already done, per token: (token, uuid) -> {"temp_id", "id"} (provider-apis §3.8).
        self.command_uuids: dict[tuple[str, str], dict[str, Any]] = {}
        self.collaborators: dict[str, str] = dict(COLLABORATORS)  # user id -> name, of every project
        self._add_project(INBOX_PROJECT, "Inbox", inbox=True)
        self._add_project(DEMO_PROJECT, "Archangel demo")

    def _add_project(self, project_id: str, name: str, inbox: bool = False) -> None:
        self.projects[project_id] = {
            "id": project_id,
            "name": name,
            "color": "charcoal",
            "parent_id": None,
            "child_order": len(self.projects),
            "is_favorite": False,
            "is_archived": False,
            "is_deleted": False,
            "is_shared": False,
            "is_collapsed": False,
            "is_frozen": False,
            "inbox_project": inbox,
            "view_style": "list",
            "can_assign_tasks": False,
            "description": "",
            "default_order": 0,
            "creator_uid": USER_ID,
            "created_at": iso_now(),
            "updated_at": iso_now(),
            "public_access": False,
            "access": {"visibility": "restricted", "configuration": {}},
        }

    def configure(self, values: dict[str, Any]) -> None:
        for project_id in values.get("projects", []):
            if not isinstance(project_id, str) or not project_id.isalnum():
                raise ValueError("todoist.projects: ids must be alphanumeric strings")
            if project_id not in self.projects:
                self._add_project(project_id, f"Project {project_id}")
        for user_id in values.get("collaborators", []):
            if not isinstance(user_id, str) or not user_id.isalnum():
                raise ValueError("todoist.collaborators: user ids must be alphanumeric strings")
            self.collaborators[user_id] = f"User {user_id}"
        unknown = set(values) - {"projects", "collaborators"}
        if unknown:
            raise ValueError(f"todoist: unknown settings {sorted(unknown)}")

    def dump(self, *, include_items: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": len(self.tasks),
            "checked": sum(1 for t in self.tasks.values() if t["checked"]),
            "projects": sorted(self.projects),
            "request_ids_remembered": len(self.request_ids),
            "command_uuids_remembered": len(self.command_uuids),
        }
        if include_items:
            out["tasks"] = [self._public(t) for t in self.tasks.values()]
        return out

    # Auth and limits ----------------------------------------------------------------------
    def authenticate(self, req: Request) -> Identity | Response:
        # provider-apis §3.1: ``Authorization: Bearer <token>``.
        header = req.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or token.strip() not in self.sandbox.credentials.todoist_tokens:
            return err(401, "Invalid token", "AUTH_INVALID_TOKEN", 401)
        return Identity(token.strip(), user=USER_ID)

    def rate_limit(self, req: Request, ident: Identity, now: float) -> dict[str, str]:
        # provider-apis §3.6: 1,000 per 15 minutes per user; the 429 carries
        # ``error_extra.retry_after`` (seconds) and ``Retry-After``; no X-RateLimit-* headers.
        limits = self.sandbox.limits["todoist"]
        limit = limits["per_user"] if self.sandbox.rate_limits_enabled else 0
        allowed, _, reset_at = self.sandbox.windows.hit(("todoist", ident.user), limit, limits["period"], now)
        if not allowed:
            self.sandbox.stats.over_limit["todoist"] += 1
            raise Limited(self._too_many(reset_at - now))
        if req.method == "POST" and req.path.rstrip("/").endswith("/api/v1/sync"):
            # §3.6: the Sync API has its own limit besides (v9 numbers, UNCONFIRMED for v1).
            limit = limits.get("sync_per_user", 0) if self.sandbox.rate_limits_enabled else 0
            allowed, _, reset_at = self.sandbox.windows.hit(("todoist-sync", ident.user), limit, limits["period"], now)
            if not allowed:
                self.sandbox.stats.over_limit["todoist"] += 1
                raise Limited(self._too_many(reset_at - now))
        return {}

    @staticmethod
    def _too_many(wait: float) -> Response:
        retry_after = max(1, math.ceil(wait))
        return err(
            429,
            "Too many requests. Limits reached. Try again later",
            "LIMITS_REACHED",
            35,
            {"retry_after": retry_after},
            {"Retry-After": str(retry_after)},
        )

    def storm_response(self, remaining: float) -> Response:
        return self._too_many(remaining)

    def error_response(self, status: int) -> Response:
        return err(status, "Service unavailable", "SERVICE_UNAVAILABLE", status)

    def not_found_route(self, req: Request) -> Response:
        return err(404, "Not found", "NOT_FOUND", 404)

    # Routes --------------------------------------------------------------------------------
    def route(self, req: Request, ident: Identity, sub: list[str]) -> Response:
        try:
            if req.method in ("POST", "DELETE"):
                request_id = req.header("X-Request-Id")
                if request_id:
                    return self._idempotent(req, ident, sub, request_id)
            return self._dispatch(req, ident, sub, None)
        except TodoistError as exc:
            return exc.response

    def _idempotent(self, req: Request, ident: Identity, sub: list[str], request_id: str) -> Response:
        """provider-apis §3.8: a POST whose ``X-Request-Id`` was already processed is discarded.
        Whether v1 still de-duplicates is UNCONFIRMED; the sandbox does the safe thing: within
        the window the same id (per token) gets the first answer again and causes no second
        effect, whatever the body. Only successful answers are remembered, so a request that
        failed may be retried with the same id. The documented cap of 36 bytes is enforced."""
        sandbox = self.sandbox
        cap = sandbox.request_id_max
        if cap and len(request_id.encode()) > cap:
            raise bad(f"X-Request-Id must be at most {cap} bytes", argument="X-Request-Id")
        now = time.monotonic()
        key = (ident.token, request_id)
        seen = self.request_ids.get(key)
        if seen is not None and seen[0] > now:
            sandbox.stats.replayed["todoist"] += 1
            return seen[1].copy()
        response = self._dispatch(req, ident, sub, request_id)
        if 200 <= response.status < 300:
            if len(self.request_ids) > 200_000:
                self.request_ids = {k: v for k, v in self.request_ids.items() if v[0] > now}
            self.request_ids[key] = (now + sandbox.idempotency_window, response.copy())
        return response

    def _dispatch(self, req: Request, ident: Identity, sub: list[str], request_id: str | None) -> Response:
        method = req.method
        if sub == ["sync"] and method == "POST":
            return self._sync(req, ident)
        if sub == ["tasks"]:
            if method == "POST":
                return self._create(req, request_id)
            if method == "GET":
                return self._list(req)
        elif len(sub) == 2 and sub[0] == "tasks":
            if method == "GET":
                return Response.json(200, self._public(self._task(sub[1])))
            if method == "POST":
                return self._update(req, sub[1])
            if method == "DELETE":
                self._delete(sub[1])
                return Response(204, b"", "application/json")
        elif len(sub) == 3 and sub[0] == "tasks" and method == "POST" and sub[2] in ("close", "reopen"):
            self._close(sub[1], closing=sub[2] == "close")
            return Response(204, b"", "application/json")
        elif len(sub) == 3 and sub[0] == "projects" and sub[2] == "collaborators" and method == "GET":
            # The users a task of the project may be assigned to (TD-py get_collaborators; paged
            # like every v1 list, §3.2). The sandbox shares every project with the same people.
            if sub[1] not in self.projects:
                raise TodoistError(err(404, "Project not found", "NOT_FOUND", 478))
            users = [
                {"id": uid, "name": name, "email": f"{uid}@sandbox.example"} for uid, name in self.collaborators.items()
            ]
            return Response.json(200, {"results": users, "next_cursor": None})
        elif sub == ["projects"] and method == "GET":
            return Response.json(200, {"results": list(self.projects.values()), "next_cursor": None})
        elif sub == ["user"] and method == "GET":
            return Response.json(200, self._user())
        return self.not_found_route(req)

    def _close(self, task_id: str, *, closing: bool) -> None:
        task = self._task(task_id)
        task["checked"] = closing
        task["completed_at"] = iso_now() if closing else None
        task["completed_by_uid"] = USER_ID if closing else None
        task["updated_at"] = iso_now()
        self.record_effect("close" if closing else "reopen", task["id"])

    def _delete(self, task_id: str) -> None:
        task = self._task(task_id)
        task["is_deleted"] = True
        del self.tasks[task["id"]]
        self.record_effect("delete", task["id"])

    # Sync ----------------------------------------------------------------------------------
    def _sync(self, req: Request, ident: Identity) -> Response:
        """``POST /api/v1/sync`` with ``commands`` (provider-apis §3.2, §3.8): each command has a
        ``type``, a ``uuid``, ``args`` and, when it adds an object, a ``temp_id``. They run in order;
        one failing does not stop the others. The answer maps every uuid to ``"ok"`` or that
        command's error object (the §3.7 shape) in ``sync_status``, and every temp_id of an added
        object to its real id in ``temp_id_mapping``. A uuid already done for this token is not
        done again: it answers ``"ok"`` (and its temp_id's mapping) with no second effect. Only
        commands that succeeded are remembered, so a failed one may be sent again."""
        commands = self._commands(req)
        if len(commands) > SYNC_MAX_COMMANDS:
            raise TodoistError(
                err(
                    400,
                    f"Too many commands: at most {SYNC_MAX_COMMANDS} per request",
                    "TOO_MANY_COMMANDS",
                    36,
                    {"argument": "commands", "limit": SYNC_MAX_COMMANDS},
                )
            )
        stats = self.sandbox.stats
        status: dict[str, Any] = {}
        mapping: dict[str, str] = {}
        for command in commands:
            uuid = command["uuid"]
            done = self.command_uuids.get((ident.token, uuid))
            if done is not None:
                stats.commands_replayed["todoist"] += 1
                status[uuid] = "ok"
                if done.get("temp_id"):
                    mapping[done["temp_id"]] = done["id"]
                continue
            try:
                result = self._command(command, mapping, uuid)
            except TodoistError as exc:
                status[uuid] = json.loads(exc.response.body)
                continue
            status[uuid] = "ok"
            stats.sync_commands["todoist"] += 1
            self.command_uuids[(ident.token, uuid)] = result
            if result.get("temp_id"):
                mapping[result["temp_id"]] = result["id"]
        stats.sync_requests["todoist"] += 1
        token = secrets.token_hex(20)
        return Response.json(
            200, {"sync_status": status, "temp_id_mapping": mapping, "full_sync": False, "sync_token": token}
        )

    def _commands(self, req: Request) -> list[dict[str, Any]]:
        """The ``commands`` array, from a JSON body or a form field holding JSON (both are used)."""
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        try:
            if ctype == "application/x-www-form-urlencoded":
                raw = req.params().get("commands")
                commands = json.loads(raw) if isinstance(raw, str) else raw
            else:
                commands = self._body(req).get("commands")
        except ValueError:
            raise bad("Invalid JSON in commands", "INVALID_JSON", 21, argument="commands") from None
        if commands is None:
            return []
        if not isinstance(commands, list) or not all(
            isinstance(c, dict) and isinstance(c.get("uuid"), str) and c["uuid"] for c in commands
        ):
            raise bad("Each command needs a type, a uuid and args", argument="commands")
        return commands

    def _command(self, command: dict[str, Any], mapping: dict[str, str], uuid: str) -> dict[str, Any]:
        kind = command.get("type")
        args = command.get("args") or {}
        if not isinstance(args, dict):
            raise bad("Invalid argument value", argument="args")
        if kind == "item_add":
            temp_id = command.get("temp_id")
            if temp_id is not None and (not isinstance(temp_id, str) or not temp_id):
                raise bad("Invalid temporary id", "INVALID_TEMPID", 15, argument="temp_id")
            task = self._new_task(self._rest_fields(args), uuid)
            return {"temp_id": temp_id, "id": task["id"]}
        raw_id = args.get("id")
        if not isinstance(raw_id, str) or not raw_id:
            raise bad("Required argument is missing", "ARGUMENT_MISSING", 19, argument="id")
        task_id = mapping.get(raw_id, raw_id)  # a temp_id of an earlier command in this request
        if kind == "item_update":
            self._change(task_id, self._rest_fields({k: v for k, v in args.items() if k != "id"}))
        elif kind in ("item_complete", "item_close"):
            self._close(task_id, closing=True)
        elif kind == "item_uncomplete":
            self._close(task_id, closing=False)
        elif kind == "item_delete":
            self._delete(task_id)
        else:
            raise bad(f"Unknown command type {kind!r}", "INVALID_COMMAND_TYPE", 16, argument="type")
        return {}

    @staticmethod
    def _rest_fields(args: dict[str, Any]) -> dict[str, Any]:
        """Sync args in the REST create/update vocabulary ``_apply`` checks: ``due`` object →
        ``due_date``/``due_datetime``/``due_string``, ``duration`` object → ``duration`` +
        ``duration_unit``, ``responsible_uid`` → ``assignee_id``."""
        data = dict(args)
        if "due" in data:
            due = data.pop("due")
            if due is None:
                data["due_string"] = None
            elif not isinstance(due, dict):
                raise bad("Invalid argument value", argument="due")
            elif due.get("date"):
                data["due_datetime" if "T" in str(due["date"]) else "due_date"] = due["date"]
            else:
                data["due_string"] = due.get("string")
        if "duration" in data:
            duration = data.pop("duration")
            if duration is None:
                data["duration"] = data["duration_unit"] = None
            elif not isinstance(duration, dict):
                raise bad("Invalid argument value", argument="duration")
            else:
                data["duration"], data["duration_unit"] = duration.get("amount"), duration.get("unit")
        if "responsible_uid" in data:
            data["assignee_id"] = data.pop("responsible_uid")
        return data

    def _user(self) -> dict[str, Any]:
        return {
            "id": USER_ID,
            "email": "demo@sandbox.example",
            "full_name": "Sandbox Demo",
            "inbox_project_id": INBOX_PROJECT,
            "tz_info": {"timezone": "UTC", "gmt_string": "+00:00", "hours": 0, "minutes": 0, "is_dst": 0},
            "lang": "en",
            "premium_status": "current_personal_plan",
            "is_premium": True,
            "start_page": "today",
            "start_day": 1,
            "weekly_goal": 25,
            "daily_goal": 5,
        }

    def _task(self, task_id: str) -> dict[str, Any]:
        task = self.tasks.get(task_id)
        if task is None:
            raise TodoistError(err(404, "Task not found", "NOT_FOUND", 478))
        return task

    def _body(self, req: Request) -> dict[str, Any]:
        try:
            data = req.json()
        except ValueError:
            raise bad("Invalid JSON body", "INVALID_JSON", 21) from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise bad("Invalid JSON body", "INVALID_JSON", 21)
        return data

    def _apply(self, task: dict[str, Any], data: dict[str, Any]) -> None:
        if "content" in data:
            content = data["content"]
            if not isinstance(content, str) or not 1 <= len(content) <= 500:  # §3.3
                raise bad("Invalid argument value", argument="content")
            task["content"] = content
        if "description" in data:
            desc = data["description"] or ""
            if not isinstance(desc, str) or len(desc) > 16383:
                raise bad("Invalid argument value", argument="description")
            task["description"] = desc
        if "priority" in data:
            prio = data["priority"]
            if isinstance(prio, bool) or not isinstance(prio, int) or not 1 <= prio <= 4:  # 1 normal … 4 urgent
                raise bad("Invalid argument value", argument="priority")
            task["priority"] = prio
        if "labels" in data:
            labels = data["labels"] or []
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise bad("Invalid argument value", argument="labels")
            task["labels"] = labels
        if any(k in data for k in ("due_string", "due_date", "due_datetime")):
            task["due"] = _due(data)
        if "duration" in data or "duration_unit" in data:
            amount, unit = data.get("duration"), data.get("duration_unit")
            if amount is None and unit is None:
                task["duration"] = None
            elif (
                isinstance(amount, bool)
                or not isinstance(amount, int)
                or amount < 1
                or unit not in ("minute", "day")  # both or neither (§3.3)
            ):
                raise bad("duration and duration_unit go together", argument="duration")
            else:
                task["duration"] = {"amount": amount, "unit": unit}
        if "assignee_id" in data:
            if data["assignee_id"] is not None and str(data["assignee_id"]) not in self.collaborators:
                # Only a user the project is shared with can be responsible for its task (§3.3).
                raise bad("Invalid argument value", argument="assignee_id")
            task["responsible_uid"] = data["assignee_id"]
            task["assigned_by_uid"] = USER_ID if data["assignee_id"] else None
        if "deadline_date" in data:
            value = data["deadline_date"]
            if value is not None and (not isinstance(value, str) or not DATE_RE.match(value)):
                raise bad("Invalid argument value", argument="deadline_date")
            task["deadline"] = {"date": value, "lang": data.get("deadline_lang") or "en"} if value else None
        task["updated_at"] = iso_now()

    def _create(self, req: Request, request_id: str | None) -> Response:
        return Response.json(200, self._public(self._new_task(self._body(req), request_id)))

    def _new_task(self, data: dict[str, Any], request_id: str | None) -> dict[str, Any]:
        if "content" not in data:
            raise bad("Required argument is missing", "ARGUMENT_MISSING", 19, argument="content")
        project_id = data.get("project_id") or INBOX_PROJECT
        if project_id not in self.projects:
            raise TodoistError(err(404, "Project not found", "NOT_FOUND", 478))
        self.seq += 1
        task_id = todoist_id()
        while task_id in self.tasks:
            task_id = todoist_id()
        stamp = iso_now()
        task: dict[str, Any] = {
            "id": task_id,
            "user_id": USER_ID,
            "project_id": project_id,
            "section_id": data.get("section_id"),
            "parent_id": data.get("parent_id"),
            "added_by_uid": USER_ID,
            "assigned_by_uid": None,
            "responsible_uid": None,
            "labels": [],
            "deadline": None,
            "duration": None,
            "checked": False,
            "is_deleted": False,
            "is_collapsed": False,
            "added_at": stamp,
            "completed_at": None,
            "completed_by_uid": None,
            "updated_at": stamp,
            "due": None,
            "priority": 1,
            "child_order": self.seq,
            "content": "",
            "description": "",
            "note_count": 0,
            "day_order": -1,
            "_seq": self.seq,
        }
        self._apply(task, data)
        self.tasks[task_id] = task
        self.record_create(task_id, task["content"], task["description"], request_id=request_id)
        return task

    def _update(self, req: Request, task_id: str) -> Response:
        return Response.json(200, self._public(self._change(task_id, self._body(req))))

    def _change(self, task_id: str, data: dict[str, Any]) -> dict[str, Any]:
        task = self._task(task_id)
        if data.get("project_id") not in (None, task["project_id"]):
            # §3.2: an update cannot change the project; /tasks/{id}/move does.
            raise bad("Use the move endpoint to change the project", argument="project_id")
        draft = dict(task)
        self._apply(draft, data)
        task.update(draft)
        self.record_effect("update", task_id, fields=sorted(data))
        return task

    def _list(self, req: Request) -> Response:
        # §3.2: active tasks, ``limit`` 1..200, ``{"results": [...], "next_cursor": ...}``.
        raw_limit = req.arg("limit", "50")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
            raise bad("Invalid argument value", argument="limit")
        limit = int(raw_limit)
        after = _uncursor(req.arg("cursor")) if req.arg("cursor") else 0
        project_id = req.arg("project_id")
        ids = set(req.arg("ids").split(",")) if req.arg("ids") else None
        selected = [
            t
            for t in self.tasks.values()
            if not t["checked"]
            and t["_seq"] > after
            and (project_id is None or t["project_id"] == project_id)
            and (ids is None or t["id"] in ids)
        ]
        selected.sort(key=lambda t: t["_seq"])
        page = selected[:limit]
        next_cursor = _cursor(page[-1]["_seq"]) if len(selected) > limit else None
        return Response.json(200, {"results": [self._public(t) for t in page], "next_cursor": next_cursor})

    @staticmethod
    def _public(task: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in task.items() if k != "_seq"}


def gone() -> Response:
    return Response.text(410, GONE_TEXT)
