"""Todoist API v1 (docs/provider-apis.md §3).

REST v2 answers 410 Gone since 2026-02-10 (§0): only ``/api/v1`` is spoken, and a
410 becomes a permanent error that says so. Wire format: ``Authorization: Bearer
<token>`` (§3.1); ``POST /tasks`` creates, ``POST /tasks/{id}`` updates (POST, not
PUT), ``POST /tasks/{id}/close`` completes, ``DELETE /tasks/{id}`` deletes (§3.2).
Priority 1 normal … 4 urgent is the same scale as ours (§3.3: beware the UI shows
it inverted); ``due_datetime`` RFC 3339 in UTC; effort as ``duration`` +
``duration_unit: "minute"`` (both or neither). Tasks cannot be archived in
Todoist (only projects can, §3.2), so archiving closes the task.

Batches: ``sync_batch`` sends up to 100 operations as one ``POST /sync`` (§3.2): each command's
``uuid`` is derived from its outbox idempotency key exactly as ``X-Request-Id`` is (Todoist drops a
command whose uuid it has already done, §3.8), a create's ``temp_id`` too, so a retry of the same
event sends the same command. The answer's ``sync_status`` gives each uuid ``"ok"`` or that
command's own error (the §3.7 shape, with ``http_code``), classified like an HTTP answer of that
status; ``temp_id_mapping`` gives each created task's real id.

Metadata (providers_app/metadata.py): the users a task of the configured project may be
assigned to (``GET /projects/{id}/collaborators``) and the account's projects (``GET
/projects``) are read once per account and cached. An assignee who is not among the
project's users is left out rather than refused. A create refused with a 404 (the project
is gone) or a write refused over its assignee drops the cache and is built again from
fresh metadata: sent once more without an assignee the project no longer has, or failed
with an error that says the project no longer exists.

Idempotency: every write carries ``X-Request-Id`` (§3.8: at most 36 bytes, a
repeated id is discarded), derived from the outbox idempotency key as a UUID 5
because our keys are longer than 36 bytes. Whether v1 de-duplicates on it is
UNCONFIRMED, so creates also carry the reference marker (last line of
``description``, ``archangel-ref: <key>``) and an unknown outcome looks it up.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from providers_app import metadata
from providers_app.adapters.base import (
    AuthError,
    BatchItem,
    BatchOutcome,
    NotFound,
    Page,
    PermanentError,
    ProviderError,
    RateLimited,
    RemoteTask,
    TransientError,
    ValidationFailed,
)
from providers_app.adapters.common import (
    MAX_LOOKUP_PAGES,
    HttpAdapter,
    LookupRequests,
    as_dict,
    deadline_utc,
    effort_minutes,
    has_marker,
    priority,
    text,
    with_marker,
)
from providers_app.config import TODOIST, base_url
from providers_app.http import ProviderHttp

logger = logging.getLogger(__name__)

PAGE_LIMIT = 200  # GET /tasks takes limit 1..200 (§3.2)
_REQUEST_ID_NAMESPACE = uuid.UUID("5b0f3c1e-7d0a-4c59-9a57-2f4d1a2b9e10")
_TEMP_ID_NAMESPACE = uuid.UUID("0e8a6f64-35a3-4b8e-8f0b-6f3bb2f1c7d4")
# At most 100 commands per sync request (Sync API limits, §3.2); callers split larger batches.
SYNC_MAX_COMMANDS = 100
# Sync command per outbox operation (TD-ts SyncCommandsMap: item_add, item_update, item_complete,
# item_delete). Archiving closes, as the REST path does (tasks cannot be archived, §3.2).
SYNC_COMMANDS = {
    "create": "item_add",
    "update": "item_update",
    "complete": "item_complete",
    "archive": "item_complete",
    "delete": "item_delete",
}
# Plan limits come as 403 with these tags (§3.6); they are not authentication failures.
PLAN_LIMIT_TAGS = frozenset({"MAX_ITEMS_LIMIT_REACHED", "PROJECT_FROZEN"})


def request_id(idempotency_key: str) -> str:
    """A stable X-Request-Id of 36 bytes for an idempotency key of any length."""
    return str(uuid.uuid5(_REQUEST_ID_NAMESPACE, idempotency_key))


def temp_id(idempotency_key: str) -> str:
    """The ``temp_id`` of a create's sync command: stable per event, distinct from its uuid."""
    return str(uuid.uuid5(_TEMP_ID_NAMESPACE, idempotency_key))


def command_error(state: dict[str, Any], command: str) -> ProviderError:
    """One command's error object (§3.7 shape) as the error an HTTP answer of its ``http_code``
    would raise. A command that answered with an error did not take effect: its outcome is known."""
    code = state.get("http_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    tag = text(state.get("error_tag"))
    message = f"todoist sync {command} failed" + (f" ({code} {tag})" if code or tag else "")
    detail = text(state.get("error"))[:300]
    if detail:
        message = f"{message}: {detail}"
    body = {k: state.get(k) for k in ("error", "error_code", "error_extra", "error_tag", "http_code")}
    if code == 429:
        extra = as_dict(state.get("error_extra"))
        wait = extra.get("retry_after")
        wait = float(wait) if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > 0 else None
        return RateLimited(message, status_code=code, retry_after=wait, body=body)
    if code is None or code >= 500 or code == 408:
        return TransientError(message, status_code=code, body=body)
    special = _classify(code, body, message)
    if special is not None:
        return special
    if code in (401, 403):
        return AuthError(message, status_code=code, body=body)
    if code == 404:
        return NotFound(message, status_code=code, body=body)
    if code in (400, 422):
        return ValidationFailed(message, status_code=code, body=body)
    return PermanentError(message, status_code=code, body=body)


def _classify(status: int, body: Any, message: str) -> ProviderError | None:
    if status == 410:
        return PermanentError(
            f"{message}. Todoist REST v2 is gone (410 since 2026-02-10): point base_url at API v1, "
            "https://api.todoist.com/api/v1",
            status_code=status,
            body=body if isinstance(body, dict) else None,
        )
    if status == 403 and as_dict(body).get("error_tag") in PLAN_LIMIT_TAGS:
        return PermanentError(f"{message} (a Todoist plan limit)", status_code=status, body=body)
    return None


class TodoistAdapter(HttpAdapter):
    type = TODOIST
    SYNC_MAX_COMMANDS = SYNC_MAX_COMMANDS

    def __init__(self, config: dict[str, Any], *, account_key: str = "") -> None:
        super().__init__(config, account_key=account_key)
        token = self.config["api_token"]
        self.project_id = self.config.get("project_id")
        self.http = ProviderHttp(
            provider_type=TODOIST,
            base_url=base_url(TODOIST, self.config),
            account_key=self.account_key,
            headers={"Authorization": f"Bearer {token}"},  # §3.1
            secrets=(token,),
            classify=_classify,
            default_retry_after=60.0,  # a 429 normally says how long (§3.6)
        )

    # --- mapping --------------------------------------------------------------------------
    def _body(self, payload: dict[str, Any], *, create: bool, idempotency_key: str = "") -> dict[str, Any]:
        description = text(payload.get("description"))
        body: dict[str, Any] = {
            "content": text(payload.get("title")) or "(untitled)",
            "description": with_marker(description, idempotency_key) if create else description,
        }
        ours = priority(payload)
        if ours:
            body["priority"] = ours  # same scale: 1 normal/low … 4 urgent (§3.3)
        due = deadline_utc(payload)
        if due is not None:
            body["due_datetime"] = due.strftime("%Y-%m-%dT%H:%M:%SZ")
        minutes = effort_minutes(payload)
        if minutes is not None:
            body["duration"], body["duration_unit"] = minutes, "minute"
        assignee = payload.get("assignee_external_id")
        if assignee and self._assignable(str(assignee)):
            body["assignee_id"] = str(assignee)
        if create and self.project_id:
            body["project_id"] = self.project_id  # a task cannot change project by update (§3.2)
        return body

    # --- metadata -------------------------------------------------------------------------
    def _paged_ids(self, path: str) -> list[str]:
        ids: list[str] = []
        cursor = None
        for _ in range(MAX_LOOKUP_PAGES):
            params: dict[str, Any] = {"limit": PAGE_LIMIT, **({"cursor": cursor} if cursor else {})}
            data = as_dict(self.http.request("GET", path, operation="metadata", params=params).data)
            ids += [str(row["id"]) for row in data.get("results") or [] if isinstance(row, dict) and row.get("id")]
            cursor = data.get("next_cursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return sorted(set(ids))

    def _users(self) -> list[str]:
        return self._metadata(
            "users", self.project_id, lambda: self._paged_ids(f"/projects/{self.project_id}/collaborators")
        )

    def _projects(self) -> list[str]:
        return self._metadata("projects", "account", lambda: self._paged_ids("/projects"))

    def _assignable(self, user_id: str) -> bool:
        # Only a project's users can be assigned its tasks (§3.3: shared projects); without a
        # configured project the task goes to the inbox and the assignee is sent as it is.
        if not self.project_id or user_id in self._users():
            return True
        logger.warning("todoist project %s has no user %s: the task is sent unassigned", self.project_id, user_id)
        return False

    @staticmethod
    def _stale(exc: ProviderError) -> bool:
        argument = text(as_dict(as_dict(exc.body).get("error_extra")).get("argument"))
        return isinstance(exc, NotFound) or argument in ("assignee_id", "responsible_uid", "project_id")

    def _fresh(self, body: dict[str, Any], *, project: bool = True) -> dict[str, Any]:
        if project and body.get("project_id") and body["project_id"] not in self._projects():
            raise PermanentError(
                f"todoist project {body['project_id']} no longer exists (fresh project list): point the "
                "provider's project_id at an existing project"
            )
        if "assignee_id" in body and not self._assignable(body["assignee_id"]):
            body = {k: v for k, v in body.items() if k != "assignee_id"}
        return body

    @staticmethod
    def _remote(data: Any) -> RemoteTask:
        data = as_dict(data)
        status = "completed" if data.get("checked") is True else None
        return RemoteTask(
            external_id=str(data.get("id") or ""), title=text(data.get("content")), status=status, raw=data
        )

    def _write(self, path: str, key: str, *, operation: str, body: Any = None, method: str = "POST"):
        return self.http.request(
            method, path, operation=operation, json_body=body, headers={"X-Request-Id": request_id(key)}
        )

    def _write_fresh(self, path: str, key: str, *, operation: str, body: dict[str, Any]):
        """A create or update that is built again from fresh metadata when refused over it."""
        try:
            return self._write(path, key, operation=operation, body=body)
        except (NotFound, ValidationFailed) as exc:
            if (operation != "create" and isinstance(exc, NotFound)) or not self._stale(exc):
                raise  # an update's 404 is the task gone, not stale metadata
            metadata.invalidate(self.account_key)
            fixed = self._fresh(dict(body), project=isinstance(exc, NotFound))
            if fixed == body:
                raise
            logger.warning("todoist %s refused a stale value (%s); retrying once with fresh metadata", operation, exc)
            # Another request id: the first was refused, and Todoist may remember it (§3.8).
            return self._write(path, f"{key}:fresh", operation=operation, body=fixed)

    # --- operations -----------------------------------------------------------------------
    def create(self, payload: dict[str, Any], *, idempotency_key: str) -> RemoteTask:
        body = self._body(payload, create=True, idempotency_key=idempotency_key)
        result = self._write_fresh("/tasks", idempotency_key, operation="create", body=body)
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
        # The project's active tasks, every page (§3.2 documents no date filter for them).
        requests = LookupRequests(idempotency_key, f"tasks of Todoist project {self.project_id or 'Inbox'}", charge)
        cursor = None
        while True:
            requests.next()
            tasks, cursor = self._tasks_page(cursor, operation="lookup")
            for task in tasks:
                if has_marker(task.get("description"), idempotency_key):
                    return self._remote(task)
            if not cursor:
                return None

    def _tasks_page(self, cursor: str | None, *, operation: str) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        if self.project_id:
            params["project_id"] = self.project_id
        if cursor:
            params["cursor"] = cursor
        data = as_dict(self.http.request("GET", "/tasks", operation=operation, params=params).data)
        tasks = [t for t in data.get("results") or [] if isinstance(t, dict)]
        next_cursor = data.get("next_cursor")
        return tasks, next_cursor if isinstance(next_cursor, str) and next_cursor else None

    def get(self, external_id: str) -> RemoteTask:
        return self._remote(self.http.request("GET", f"/tasks/{external_id}", operation="get").data)

    def update(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> RemoteTask:
        body = self._body(payload, create=False)
        result = self._write_fresh(f"/tasks/{external_id}", idempotency_key, operation="update", body=body)
        return self._remote(result.data)

    def complete(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> None:
        self._write(f"/tasks/{external_id}/close", idempotency_key, operation="complete")

    def archive(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> None:
        # Todoist tasks cannot be archived (§3.2): closing takes the task off every active list.
        self._write(f"/tasks/{external_id}/close", idempotency_key, operation="archive")

    def delete(self, external_id: str, *, idempotency_key: str) -> None:
        self._write(f"/tasks/{external_id}", idempotency_key, operation="delete", method="DELETE")

    # --- Sync API batches (§3.2, §3.8) --------------------------------------------------------
    @staticmethod
    def _sync_args(body: dict[str, Any]) -> dict[str, Any]:
        """A REST create/update body in the Sync API's vocabulary: ``due`` and ``duration`` are
        objects, the assignee is ``responsible_uid`` (§3.3, §3.4)."""
        args = dict(body)
        if "due_datetime" in args:
            args["due"] = {"date": args.pop("due_datetime")}  # "...Z": a fixed time in UTC
        if "duration" in args:
            args["duration"] = {"amount": args.pop("duration"), "unit": args.pop("duration_unit")}
        if "assignee_id" in args:
            args["responsible_uid"] = args.pop("assignee_id")
        return args

    def sync_command(self, item: BatchItem, *, attempt: str = "") -> dict[str, Any]:
        """The sync command for one outbox operation (``attempt`` tells a rebuilt command apart)."""
        kind = SYNC_COMMANDS.get(item.operation)
        if kind is None:
            raise PermanentError(f"no Todoist sync command for operation {item.operation!r}")
        key = item.idempotency_key + attempt
        command: dict[str, Any] = {"type": kind, "uuid": request_id(key)}
        if item.operation == "create":
            command["temp_id"] = temp_id(key)
            body = self._body(item.payload, create=True, idempotency_key=item.idempotency_key)
            command["args"] = self._sync_args(body)
            return command
        if not item.external_id:
            raise PermanentError(f"cannot {item.operation} a task that has no id at todoist")
        args: dict[str, Any] = {"id": item.external_id}
        if item.operation == "update":
            args.update(self._sync_args(self._body(item.payload, create=False)))
        command["args"] = args
        return command

    def sync_batch(self, items: list[BatchItem]) -> list[BatchOutcome]:
        """Send ``items`` as one ``POST /sync``; one outcome per item, in order. Raises a
        ProviderError when the request as a whole failed (none of the items has an outcome
        then; a transport failure after sending leaves all of them unknown).

        Commands refused over stale metadata (a create's project gone, an assignee the project no
        longer has) are built again from fresh metadata and, where that changes them, sent once
        more in a second request (with their own uuids: the first ones were refused)."""
        if not items:
            return []
        if len(items) > SYNC_MAX_COMMANDS:
            raise ValueError(f"at most {SYNC_MAX_COMMANDS} commands per sync request, got {len(items)}")
        commands = [self.sync_command(item) for item in items]
        outcomes = self._sync(items, commands)
        stale = [
            i
            for i, (item, outcome) in enumerate(zip(items, outcomes, strict=True))
            if outcome.error is not None
            and self._stale(outcome.error)
            and (item.operation == "create" or not isinstance(outcome.error, NotFound))
        ]
        if not stale:
            return outcomes
        metadata.invalidate(self.account_key)
        try:
            again, fresh = self._rebuild(items, commands, outcomes, stale)
        except ProviderError as exc:  # fresh metadata could not be read: the refusals stand
            logger.warning("todoist metadata could not be read again (%s); %d command(s) stay refused", exc, len(stale))
            return outcomes
        if again:
            logger.warning("todoist sync refused %d command(s) over stale metadata; sending them once more", len(again))
            try:
                retried = self._sync([items[i] for i in again], fresh)
            except ProviderError as exc:  # this request failed as a whole: its items share its fate
                retried = [BatchOutcome(status_code=exc.status_code, error=exc)] * len(again)
            for i, outcome in zip(again, retried, strict=True):
                outcomes[i] = outcome
        return outcomes

    def _rebuild(self, items, commands, outcomes, stale) -> tuple[list[int], list[dict[str, Any]]]:
        """The refused commands built again from fresh metadata, where that changes them."""
        again: list[int] = []
        fresh: list[dict[str, Any]] = []
        for i in stale:
            try:
                command = self.sync_command(items[i], attempt=":fresh")
                if isinstance(outcomes[i].error, NotFound):  # a create's project gone?
                    self._fresh({"project_id": command["args"].get("project_id")})
            except PermanentError as exc:
                outcomes[i] = BatchOutcome(status_code=outcomes[i].status_code, error=exc)
                continue
            if command["args"] != commands[i]["args"]:
                again.append(i)
                fresh.append(command)
        return again, fresh

    def _sync(self, items: list[BatchItem], commands: list[dict[str, Any]]) -> list[BatchOutcome]:
        result = self.http.request("POST", "/sync", operation="sync", json_body={"commands": commands})
        data = as_dict(result.data)
        status = as_dict(data.get("sync_status"))
        mapping = as_dict(data.get("temp_id_mapping"))
        outcomes = []
        for item, command in zip(items, commands, strict=True):
            state = status.get(command["uuid"])
            if state == "ok":
                if item.operation != "create":
                    outcomes.append(BatchOutcome(status_code=result.status_code))
                    continue
                new_id = mapping.get(command["temp_id"])
                if isinstance(new_id, int) and not isinstance(new_id, bool):
                    new_id = str(new_id)
                if isinstance(new_id, str) and new_id:
                    outcomes.append(BatchOutcome(external_id=new_id, status_code=result.status_code))
                    continue
                error: ProviderError = TransientError(
                    "todoist sync item_add answered ok without a temp_id mapping; its outcome is unknown",
                    status_code=result.status_code,
                    outcome_unknown=True,
                )
            elif isinstance(state, dict):
                error = command_error(state, command["type"])
            else:
                error = TransientError(
                    f"todoist sync answered no status for {command['type']}; its outcome is unknown",
                    status_code=result.status_code,
                    outcome_unknown=True,
                )
            outcomes.append(BatchOutcome(status_code=error.status_code, error=error))
        return outcomes

    def list(self, *, cursor: str | None = None) -> Page:
        tasks, next_cursor = self._tasks_page(cursor, operation="list")
        return Page(items=[self._remote(t) for t in tasks], next_cursor=next_cursor)

    def health_check(self) -> None:
        self.http.request("GET", "/projects", operation="health_check")  # §3.2 containers
