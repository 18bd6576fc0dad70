"""ClickUp API v2 (docs/provider-apis.md §1).

Wire format: ``Authorization: <token>`` with no "Bearer" (§1.1); create is
``POST /list/{list_id}/task``, every change is ``PUT /task/{id}`` (§1.2); due
dates are Unix **milliseconds** with ``due_date_time`` (§1.3); priority 1 urgent …
4 low, the reverse of ours (our 4 → their 1); ``time_estimate`` in milliseconds;
status names are per list, so ours map through the ``status_map`` config key
and a status it does not name is left alone (a wrong name is a 400 ITEM_114).
Completing sets the closed status (``status_map["completed"]``, else the list's
status of type ``closed``, else "complete"); archiving sends ``archived: true``.

Metadata (providers_app/metadata.py): the list's statuses (``GET /list/{id}``, §1.2)
are read once per account and cached, for the closed status and to repair a write
refused with ITEM_114 (a status the list no longer has): the cache is dropped, the
statuses read again, and the write sent once more without the unknown status (a
completion with the list's closed status instead).

Reference marker: the last line of the description, ``archangel-ref: <key>``
(plain text in ``description``; ClickUp has no idempotency key, §1.8).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from providers_app.adapters.base import NotFound, Page, ProviderError, RemoteTask, ValidationFailed
from providers_app.adapters.common import (
    HttpAdapter,
    LookupRequests,
    as_dict,
    deadline_utc,
    effort_minutes,
    has_marker,
    lookup_since,
    priority,
    text,
    with_marker,
)
from providers_app.config import CLICKUP, base_url
from providers_app.http import ProviderHttp

logger = logging.getLogger(__name__)

PAGE_SIZE = 100  # Get Tasks returns 100 tasks per page, pages from 0 (§1.2)
DEFAULT_CLOSED_STATUS = "complete"
# ClickUp errors carrying a "not found" code come with a 401 (§1.7: ITEM_013 observed with 401).
NOT_FOUND_CODES = frozenset({"ITEM_013", "ITEM_015"})
# "Status does not exist" (§1.7): the list's statuses changed since we read them.
UNKNOWN_STATUS_CODE = "ITEM_114"


def _unknown_status(exc: ProviderError) -> bool:
    return isinstance(exc, ValidationFailed) and as_dict(exc.body).get("ECODE") == UNKNOWN_STATUS_CODE


def _classify(status: int, body: Any, message: str) -> ProviderError | None:
    code = as_dict(body).get("ECODE")
    if status in (401, 403, 404) and code in NOT_FOUND_CODES:
        return NotFound(message, status_code=status, body=body)
    return None


class ClickUpAdapter(HttpAdapter):
    type = CLICKUP

    def __init__(self, config: dict[str, Any], *, account_key: str = "") -> None:
        super().__init__(config, account_key=account_key)
        token = self.config["api_token"]
        self.list_id = str(self.config["list_id"])
        self.status_map: dict[str, str] = dict(self.config.get("status_map") or {})
        self.http = ProviderHttp(
            provider_type=CLICKUP,
            base_url=base_url(CLICKUP, self.config),
            account_key=self.account_key,
            headers={"Authorization": token},  # raw personal token, no "Bearer" (§1.1)
            secrets=(token,),
            classify=_classify,
            default_retry_after=60.0,  # the window is a minute (§1.6)
        )

    # --- mapping --------------------------------------------------------------------------
    def _body(self, payload: dict[str, Any], *, create: bool, idempotency_key: str = "") -> dict[str, Any]:
        description = text(payload.get("description"))
        body: dict[str, Any] = {"name": text(payload.get("title")) or "(untitled)"}
        if create:
            body["description"] = with_marker(description, idempotency_key)
        else:
            # An empty string would leave the old text; ClickUp clears with a single space (§1.3).
            body["description"] = description or " "
        ours = priority(payload)
        body["priority"] = 5 - ours if ours else None  # 1 urgent … 4 low (§1.3)
        due = deadline_utc(payload)
        if due is not None:
            body["due_date"] = int(due.timestamp() * 1000)
            body["due_date_time"] = True
        minutes = effort_minutes(payload)
        if minutes is not None:
            body["time_estimate"] = minutes * 60 * 1000
        status = self.status_map.get(str(payload.get("status") or ""))
        if status:
            body["status"] = status
        assignee = payload.get("assignee_external_id")
        if assignee:
            user_id = int(assignee) if str(assignee).isdigit() else assignee  # integer user ids (§1.3)
            body["assignees"] = [user_id] if create else {"add": [user_id], "rem": []}
        return body

    def _remote(self, data: Any) -> RemoteTask:
        data = as_dict(data)
        status = as_dict(data.get("status"))
        name = text(status.get("status")).lower()
        ours = next((k for k, v in self.status_map.items() if v.lower() == name), None)
        if ours is None and status.get("type") in ("closed", "done"):
            ours = "completed"
        if data.get("archived") is True:
            ours = "archived"
        return RemoteTask(external_id=str(data.get("id") or ""), title=text(data.get("name")), status=ours, raw=data)

    # --- metadata -------------------------------------------------------------------------
    def _statuses(self) -> list[dict[str, str]]:
        """The list's statuses, ``[{"status", "type"}]`` (§1.2 Get List), cached."""

        def fetch() -> list[dict[str, str]]:
            data = as_dict(self.http.request("GET", f"/list/{self.list_id}", operation="metadata").data)
            rows = [s for s in data.get("statuses") or [] if isinstance(s, dict)]
            return [{"status": text(s.get("status")), "type": text(s.get("type"))} for s in rows]

        return self._metadata("statuses", self.list_id, fetch)

    def _closed_status(self) -> str:
        mapped = self.status_map.get("completed")
        if mapped:
            return mapped
        statuses = self._statuses()
        for kind in ("closed", "done"):  # the list's own closed status (§1.2), whatever its name
            name = next((s["status"] for s in statuses if s["type"] == kind and s["status"]), None)
            if name:
                return name
        return DEFAULT_CLOSED_STATUS

    def _without_unknown_status(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` checked against the list's statuses as they are now: an unknown status is
        left out (the task keeps its status) or, for a completion, replaced by the closed one."""
        known = {s["status"].lower() for s in self._statuses()}
        status = body.get("status")
        if isinstance(status, str) and status.strip().lower() not in known:
            logger.warning("clickup list %s has no status %r (any more): left out", self.list_id, status)
            body = {k: v for k, v in body.items() if k != "status"}
        return body

    def _write(self, method: str, path: str, *, operation: str, body: dict[str, Any]):
        return self._send_fresh(
            method, path, operation=operation, body=body, stale=_unknown_status, refresh=self._without_unknown_status
        )

    # --- operations -----------------------------------------------------------------------
    def create(self, payload: dict[str, Any], *, idempotency_key: str) -> RemoteTask:
        result = self._write(
            "POST",
            f"/list/{self.list_id}/task",
            operation="create",
            body=self._body(payload, create=True, idempotency_key=idempotency_key),
        )
        self._created_id(result)
        return self._remote(result.data)

    def find_by_reference(
        self,
        payload: dict[str, Any],
        *,
        idempotency_key: str,
        changed_since: datetime | None = None,
        charge: Callable[[], None] | None = None,
    ) -> RemoteTask | None:
        # Get Tasks with its documented filters (§1.2): closed tasks too (it may have been
        # completed since), ordered by creation, only tasks updated since the first attempt
        # (a task's creation is its first update), every page of them; then the archived ones.
        since_ms = int(lookup_since(changed_since).timestamp() * 1000)
        requests = LookupRequests(idempotency_key, f"tasks of ClickUp list {self.list_id}", charge)
        for archived in (False, True):
            params = {"include_closed": "true", "order_by": "created", "date_updated_gt": since_ms}
            if archived:
                params["archived"] = "true"  # archived tasks only come with archived=true (§1.2)
            page = 0
            while True:
                requests.next()
                result = self.http.request(
                    "GET", f"/list/{self.list_id}/task", operation="lookup", params={"page": page, **params}
                )
                tasks = [t for t in as_dict(result.data).get("tasks") or [] if isinstance(t, dict)]
                for task in tasks:
                    fields = (task.get("description"), task.get("text_content"), task.get("markdown_description"))
                    if any(has_marker(field, idempotency_key) for field in fields):
                        return self._remote(task)
                # ``last_page`` is UNCONFIRMED (§1.2): fewer than a full page also ends the list.
                if len(tasks) < PAGE_SIZE or as_dict(result.data).get("last_page") is True:
                    break
                page += 1
        return None

    def get(self, external_id: str) -> RemoteTask:
        return self._remote(self.http.request("GET", f"/task/{external_id}", operation="get").data)

    def update(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> RemoteTask:
        result = self._write("PUT", f"/task/{external_id}", operation="update", body=self._body(payload, create=False))
        return self._remote(result.data)

    def complete(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> None:
        # No completion endpoint: set a status of type closed/done (§1.2).
        def fresh_closed(body: dict[str, Any]) -> dict[str, Any]:
            known = {s["status"].lower() for s in self._statuses()}
            if body["status"].lower() in known:
                return body
            return {"status": next((s["status"] for s in self._statuses() if s["type"] == "closed"), body["status"])}

        self._send_fresh(
            "PUT",
            f"/task/{external_id}",
            operation="complete",
            body={"status": self._closed_status()},
            stale=_unknown_status,
            refresh=fresh_closed,
        )

    def archive(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> None:
        self.http.request("PUT", f"/task/{external_id}", operation="archive", json_body={"archived": True})

    def delete(self, external_id: str, *, idempotency_key: str) -> None:
        self.http.request("DELETE", f"/task/{external_id}", operation="delete")

    def list(self, *, cursor: str | None = None) -> Page:
        page = int(cursor) if cursor and cursor.isdigit() else 0
        result = self.http.request(
            "GET", f"/list/{self.list_id}/task", operation="list", params={"page": page, "include_closed": "true"}
        )
        data = as_dict(result.data)
        tasks = [t for t in data.get("tasks") or [] if isinstance(t, dict)]
        # Paginate until a page holds fewer than 100 (last_page is UNCONFIRMED, §1.4).
        more = len(tasks) >= PAGE_SIZE and data.get("last_page") is not True
        return Page(items=[self._remote(t) for t in tasks], next_cursor=str(page + 1) if more else None)

    def health_check(self) -> None:
        # The authorized workspaces: cheap, and fails with 401 on a bad token (§1.2 "GET /v2/team").
        self.http.request("GET", "/team", operation="health_check")
