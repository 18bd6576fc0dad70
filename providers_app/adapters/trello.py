"""Trello REST API v1 (docs/provider-apis.md §2).

Wire format: the API key and the user token travel as the ``key`` and ``token``
query parameters of every request (§2.1; masked in every log line and error by
providers_app/http.py). A task is a card: ``POST /cards`` with ``idList``,
``PUT /cards/{id}`` to change it, ``closed=true`` to archive, ``DELETE`` to
delete (§2.2). Trello has no status, priority or effort of its own (§2.3): our
status is the list the card is in (``status_lists``: status → list id), priority
is a label where ``priority_labels`` names one (low/normal/high/urgent → label
id), effort is not sent. ``due`` is ISO-8601 UTC. "Complete" sets
``dueComplete`` and moves the card to the ``completed`` list when one is mapped.

Metadata (providers_app/metadata.py): the board's open lists and its labels
(``GET /boards/{id}/lists``, ``/labels``, §2.2) are read once per account and cached.
A priority that ``priority_labels`` does not map takes the board's label of that name
("Urgent", "High", ...). A write refused with "invalid value for idList/idLabels" (a
list archived, a label deleted since) drops the cache, checks the ids against the board
as it is now and is sent once more without the unknown label, and with an open list
(an update leaves the card where it is; a create takes the first open mapped list).

Reference marker: the last line of ``desc`` (Markdown), ``archangel-ref: <key>``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from providers_app.adapters.base import Page, ProviderError, RemoteTask, ValidationFailed
from providers_app.adapters.common import (
    HttpAdapter,
    as_dict,
    deadline_utc,
    has_marker,
    priority,
    text,
    with_marker,
)
from providers_app.config import TRELLO, base_url
from providers_app.http import ProviderHttp

logger = logging.getLogger(__name__)

PRIORITY_NAMES = {1: "low", 2: "normal", 3: "high", 4: "urgent"}


def _stale_ids(exc: ProviderError) -> bool:
    # Trello answers 400 "invalid value for idList" / "invalid value for idLabels" (§2.7).
    return isinstance(exc, ValidationFailed) and ("idList" in str(exc) or "idLabels" in str(exc))


def _iso(payload: dict[str, Any]) -> str | None:
    due = deadline_utc(payload)
    return due.isoformat().replace("+00:00", "Z") if due else None


class TrelloAdapter(HttpAdapter):
    type = TRELLO

    def __init__(self, config: dict[str, Any], *, account_key: str = "") -> None:
        super().__init__(config, account_key=account_key)
        key, token = self.config["api_key"], self.config["api_token"]
        self.board_id = str(self.config["board_id"])
        self.status_lists: dict[str, str] = dict(self.config.get("status_lists") or {})
        self.priority_labels: dict[str, str] = dict(self.config.get("priority_labels") or {})
        self.http = ProviderHttp(
            provider_type=TRELLO,
            base_url=base_url(TRELLO, self.config),
            account_key=self.account_key,
            params={"key": key, "token": token},  # §2.1
            secrets=(key, token),
            # No Retry-After on Trello's 429 (§2.6): wait out its 10 s window.
            default_retry_after=10.0,
        )

    # --- mapping --------------------------------------------------------------------------
    def _list_for(self, status: Any, *, create: bool) -> str | None:
        list_id = self.status_lists.get(str(status or ""))
        if list_id or not create:
            return list_id
        # A card must be in a list (idList is required, §2.2): an unmapped status starts in
        # the "pending" list, else the first one configured.
        list_id = self.status_lists.get("pending") or next(iter(self.status_lists.values()), None)
        if not list_id:
            raise ValidationFailed(
                "trello provider has no status_lists: map at least one status to a list id of the board"
            )
        return list_id

    def _body(self, payload: dict[str, Any], *, create: bool, idempotency_key: str = "") -> dict[str, Any]:
        description = text(payload.get("description"))
        body: dict[str, Any] = {
            "name": text(payload.get("title")) or "(untitled)",
            "desc": with_marker(description, idempotency_key) if create else description,
        }
        due = _iso(payload)
        if due or not create:
            body["due"] = due  # null clears it (§2.3)
        list_id = self._list_for(payload.get("status"), create=create)
        if list_id:
            body["idList"] = list_id
        assignee = payload.get("assignee_external_id")
        if assignee:
            body["idMembers"] = [str(assignee)]
        label = self._label_for(payload)
        if label:
            body["idLabels"] = [label]
        return body

    # --- metadata -------------------------------------------------------------------------
    def _board(self, kind: str) -> list[dict[str, str]]:
        """The board's open ``lists`` or its ``labels``, ``[{"id", "name"}]``, cached."""

        def fetch() -> list[dict[str, str]]:
            data = self.http.request("GET", f"/boards/{self.board_id}/{kind}", operation="metadata").data
            rows = data if isinstance(data, list) else []
            return [
                {"id": str(r["id"]), "name": text(r.get("name"))}
                for r in rows
                if isinstance(r, dict) and r.get("id") and r.get("closed") is not True
            ]

        return self._metadata(kind, self.board_id, fetch)

    def _label_for(self, payload: dict[str, Any]) -> str | None:
        name = PRIORITY_NAMES.get(priority(payload) or 0, "")
        if not name:
            return None
        label = self.priority_labels.get(name)
        if label:
            return label
        # Not configured: the board's label of that name, if it has one (§2.3: priority is a label).
        return next((lb["id"] for lb in self._board("labels") if lb["name"].strip().lower() == name), None)

    def _fresh_ids(self, body: dict[str, Any], *, create: bool) -> dict[str, Any]:
        if "idLabels" in body:
            known = {lb["id"] for lb in self._board("labels")}
            labels = [i for i in body["idLabels"] if i in known]
            if labels != body["idLabels"]:
                logger.warning("trello board %s has no label %s (any more): left out", self.board_id, body["idLabels"])
            body = {**body, "idLabels": labels} if labels else {k: v for k, v in body.items() if k != "idLabels"}
        if "idList" in body:
            open_lists = [lst["id"] for lst in self._board("lists")]
            if body["idList"] not in open_lists:
                logger.warning("trello board %s has no open list %s (any more)", self.board_id, body["idList"])
                if not create:
                    return {k: v for k, v in body.items() if k != "idList"}  # the card stays where it is
                mapped = [v for v in self.status_lists.values() if v in open_lists]
                if mapped or open_lists:
                    body = {**body, "idList": (mapped or open_lists)[0]}
        return body

    def _write(self, method: str, path: str, *, operation: str, body: dict[str, Any], create: bool = False):
        return self._send_fresh(
            method,
            path,
            operation=operation,
            body=body,
            stale=_stale_ids,
            refresh=lambda b: self._fresh_ids(b, create=create),
        )

    def _remote(self, data: Any) -> RemoteTask:
        data = as_dict(data)
        ours = next((k for k, v in self.status_lists.items() if v == data.get("idList")), None)
        if data.get("dueComplete") is True and ours is None:
            ours = "completed"
        if data.get("closed") is True:
            ours = "archived"
        return RemoteTask(external_id=str(data.get("id") or ""), title=text(data.get("name")), status=ours, raw=data)

    # --- operations -----------------------------------------------------------------------
    def create(self, payload: dict[str, Any], *, idempotency_key: str) -> RemoteTask:
        result = self._write(
            "POST",
            "/cards",
            operation="create",
            body=self._body(payload, create=True, idempotency_key=idempotency_key),
            create=True,
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
        # The open cards of the board, all in one answer (§2.2, no paging documented): the card
        # may have moved lists since it was made. One request, so nothing to charge or cap.
        for card in self._board_cards(operation="lookup"):
            if has_marker(card.get("desc"), idempotency_key):
                return self._remote(card)
        return None

    def _board_cards(self, *, operation: str) -> list[dict[str, Any]]:
        result = self.http.request("GET", f"/boards/{self.board_id}/cards", operation=operation)
        return [card for card in result.data or [] if isinstance(card, dict)] if isinstance(result.data, list) else []

    def get(self, external_id: str) -> RemoteTask:
        return self._remote(self.http.request("GET", f"/cards/{external_id}", operation="get").data)

    def update(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> RemoteTask:
        result = self._write("PUT", f"/cards/{external_id}", operation="update", body=self._body(payload, create=False))
        return self._remote(result.data)

    def complete(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> None:
        # No completion concept: dueComplete, and the "completed" list when mapped (§2.2).
        body: dict[str, Any] = {"dueComplete": True}
        if self.status_lists.get("completed"):
            body["idList"] = self.status_lists["completed"]
        self._write("PUT", f"/cards/{external_id}", operation="complete", body=body)

    def archive(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> None:
        self.http.request("PUT", f"/cards/{external_id}", operation="archive", json_body={"closed": True})

    def delete(self, external_id: str, *, idempotency_key: str) -> None:
        self.http.request("DELETE", f"/cards/{external_id}", operation="delete")

    def list(self, *, cursor: str | None = None) -> Page:
        # The board's cards come in one answer; the reference documents no paging for it (§2.2).
        return Page(items=[self._remote(card) for card in self._board_cards(operation="list")], next_cursor=None)

    def health_check(self) -> None:
        # The board's lists: proves the key, the token and access to the board in one cheap call
        # (and stays clear of the /1/members/ endpoints' own 100 per 900 s limit, §2.6).
        self.http.request("GET", f"/boards/{self.board_id}/lists", operation="health_check")
