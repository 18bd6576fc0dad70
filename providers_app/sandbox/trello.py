"""Trello REST v1 as the adapters use it (docs/provider-apis.md §2), under ``/trello/1``."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import string
from typing import Any

import requests

from providers_app.sandbox.base import Identity, Limited, ProviderSim
from providers_app.sandbox.core import Request, Response, as_bool, iso_now_ms, trello_id

DEMO_BOARD = "5a1111111111111111111111"
DEMO_LISTS = [
    ("5a2222222222222222222222", "To Do"),
    ("5a3333333333333333333333", "Doing"),
    ("5a4444444444444444444444", "Done"),
]
# Priority labels on the demo board (Trello has no priority: labels stand in, §2.3).
DEMO_LABELS = [
    ("5a6600000000000000000001", "Low", "green"),
    ("5a6600000000000000000002", "Normal", "yellow"),
    ("5a6600000000000000000003", "High", "orange"),
    ("5a6600000000000000000004", "Urgent", "red"),
]
# The member each token belongs to; the demo's assignee identities point at these (bootstrap_demo).
DEMO_MEMBER = "5b0000000000000000000000"
MEMBERS = {
    f"5b000000000000000000000{n}": name
    for n, name in enumerate(["Sandbox Demo", "Ada Lovelace", "Grace Hopper", "Linus Torvalds", "Margaret Hamilton"])
}
# The demo key's application secret (the OAuth 1.0 secret on the API key page): what Trello signs
# webhooks with (§2.5). Other keys get one with ``POST /_sandbox/config {"trello": {"app_secrets": ...}}``.
DEMO_APP_SECRET = "demo-trello-app-secret"  # noqa: S105 - the demo credential of a test double
ID_RE = re.compile(r"^[0-9a-f]{24}$")
SHORTLINK_CHARS = string.ascii_letters + string.digits

# provider-apis §2.7: most 4xx bodies are plain text. The exact 404 text is UNCONFIRMED.
NOT_FOUND = "The requested resource was not found."


class TrelloError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.response = Response.text(status, text)


def _ids(value: Any, field: str) -> list[str]:
    """``idMembers``/``idLabels``: comma-separated string, or an array in JSON (§2.3)."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    out = [str(i).strip() for i in items if str(i).strip()]
    if not all(ID_RE.match(i) for i in out):
        raise TrelloError(400, f"invalid value for {field}")
    return out


def _due(value: Any, field: str) -> str | None:
    """``due``: ISO-8601 date-time, ``null`` (or empty) clears it (§2.3). Returned normalised to
    UTC with milliseconds, as Trello writes dates."""
    if value is None or value == "" or value == "null":
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise TrelloError(400, f"invalid value for {field}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}Z"


class Trello(ProviderSim):
    name = "trello"
    prefix = "/trello/1"

    def reset(self) -> None:
        self.cards: dict[str, dict[str, Any]] = {}
        self.seq = 0
        self.boards: dict[str, dict[str, Any]] = {}
        self.lists: dict[str, dict[str, Any]] = {}
        # Registered webhooks (§2.5), by id; each belongs to the token that made it.
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.app_secrets: dict[str, str] = {"demo-trello-key": DEMO_APP_SECRET}
        self._add_board(DEMO_BOARD, "Archangel demo", DEMO_LISTS)

    def _add_board(self, board_id: str, name: str, lists: list[tuple[str, str]]) -> None:
        self.boards[board_id] = {
            "id": board_id,
            "name": name,
            "labels": {lid: {"id": lid, "idBoard": board_id, "name": n, "color": c} for lid, n, c in DEMO_LABELS},
            "short_id": 0,
        }
        for pos, (list_id, list_name) in enumerate(lists, start=1):
            self.lists[list_id] = {
                "id": list_id,
                "name": list_name,
                "closed": False,
                "idBoard": board_id,
                "pos": pos * 16384,
                "subscribed": False,
                "softLimit": None,
            }

    def configure(self, values: dict[str, Any]) -> None:
        """``{"boards": {"<board id>": ["<list id>", ...]}, "app_secrets": {"<api key>": "<secret>"}}``"""
        secrets_ = values.get("app_secrets") or {}
        if not isinstance(secrets_, dict) or not all(isinstance(v, str) and v for v in secrets_.values()):
            raise ValueError("trello.app_secrets: an object of API key -> non-empty application secret")
        self.app_secrets.update({str(k): v for k, v in secrets_.items()})
        for board_id, lists in (values.get("boards") or {}).items():
            if not ID_RE.match(board_id) or not all(isinstance(i, str) and ID_RE.match(i) for i in lists):
                raise ValueError("trello.boards: board and list ids must be 24 hex characters")
            if board_id not in self.boards:
                self._add_board(board_id, f"Board {board_id[-4:]}", [])
            for list_id in lists:
                if list_id not in self.lists:
                    self.lists[list_id] = {
                        "id": list_id,
                        "name": f"List {list_id[-4:]}",
                        "closed": False,
                        "idBoard": board_id,
                        "pos": (len(self.lists) + 1) * 16384,
                        "subscribed": False,
                        "softLimit": None,
                    }
        unknown = set(values) - {"boards", "app_secrets"}
        if unknown:
            raise ValueError(f"trello: unknown settings {sorted(unknown)}")

    def dump(self, *, include_items: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": len(self.cards),
            "closed": sum(1 for c in self.cards.values() if c["closed"]),
            "boards": sorted(self.boards),
            "lists": sorted(self.lists),
            "webhooks": [self._public_webhook(h) for h in self.webhooks.values()],
        }
        if include_items:
            out["cards"] = [self._public(c) for c in self.cards.values()]
        return out

    # Auth and limits ----------------------------------------------------------------------
    def authenticate(self, req: Request) -> Identity | Response:
        # provider-apis §2.1: ``key`` and ``token`` as query parameters (the body is accepted too),
        # or ``Authorization: OAuth oauth_consumer_key="…", oauth_token="…"``.
        try:
            params = req.params()
        except ValueError:
            return Response.text(400, "invalid request body")
        key, token = params.get("key"), params.get("token")
        header = req.header("Authorization") or ""
        if header.startswith("OAuth "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', header))
            key = key or found.get("oauth_consumer_key")
            token = token or found.get("oauth_token")
        creds = self.sandbox.credentials
        if not key or key not in creds.trello_keys:
            return Response.text(401, "invalid key")
        if not token:
            return Response.text(401, "unauthorized permission requested")
        if token not in creds.trello_tokens:
            return Response.text(401, "invalid token")
        return Identity(token, key=key)

    def rate_limit(self, req: Request, ident: Identity, now: float) -> dict[str, str]:
        # provider-apis §2.6: 300 per 10 s per key, 100 per 10 s per token, /1/members/ 100 per
        # 900 s; 429 JSON names the limit; the x-rate-limit-api-* headers are undocumented but seen.
        sandbox = self.sandbox
        limits = sandbox.limits["trello"]
        on = sandbox.rate_limits_enabled
        period = limits["period"]
        per_key = limits["per_key"] if on else 0
        per_token = limits["per_token"] if on else 0
        windows = sandbox.windows
        lockout = windows.peek(("trello-key-429", ident.key), period, now)
        key_ok, key_left, _ = windows.hit(("trello-key", ident.key), per_key, period, now)
        token_ok, token_left, _ = windows.hit(("trello-token", ident.token), per_token, period, now)
        headers = {
            "x-rate-limit-api-key-interval-ms": str(int(period * 1000)),
            "x-rate-limit-api-key-max": str(int(per_key)),
            "x-rate-limit-api-key-remaining": str(key_left),
            "x-rate-limit-api-token-interval-ms": str(int(period * 1000)),
            "x-rate-limit-api-token-max": str(int(per_token)),
            "x-rate-limit-api-token-remaining": str(token_left),
        }
        members_ok = True
        if req.path.startswith(self.prefix + "/members/") and on and limits["members_per_token"]:
            members_ok, members_left, _ = windows.hit(
                ("trello-members", ident.token), limits["members_per_token"], limits["members_period"], now
            )
            headers["x-rate-limit-member-interval-ms"] = str(int(limits["members_period"] * 1000))
            headers["x-rate-limit-member-max"] = str(int(limits["members_per_token"]))
            headers["x-rate-limit-member-remaining"] = str(members_left)
        if key_ok and token_ok and members_ok and not (on and lockout > 200):
            return headers
        sandbox.stats.over_limit["trello"] += 1
        # §2.6: once a key has drawn more than 200 429s in a window, every request from it gets a
        # 429 for the rest of that window (counted here, and counted as over the limit).
        windows.hit(("trello-key-429", ident.key), 0, period, now)
        code = "API_KEY_LIMIT_EXCEEDED" if not key_ok or lockout > 200 else "API_TOKEN_LIMIT_EXCEEDED"
        raise Limited(Response.json(429, {"error": code, "message": "Rate limit exceeded"}, headers))

    def storm_response(self, remaining: float) -> Response:
        # No Retry-After on Trello's 429 (§2.6, UNCONFIRMED): clients back off about 10 s.
        return Response.json(429, {"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"})

    def error_response(self, status: int) -> Response:
        return Response.text(status, "Internal Server Error" if status == 500 else "Service Unavailable")

    def not_found_route(self, req: Request) -> Response:
        return Response.text(404, f"Cannot {req.method} {req.path[len('/trello') :]}")

    # Routes --------------------------------------------------------------------------------
    def route(self, req: Request, ident: Identity, sub: list[str]) -> Response:
        try:
            method = req.method
            if sub == ["cards"] and method == "POST":
                return self._create(req, ident)
            if len(sub) == 2 and sub[0] == "cards":
                if method == "GET":
                    return Response.json(200, self._public(self._card(sub[1])))
                if method == "PUT":
                    return self._update(req, sub[1], ident)
                if method == "DELETE":
                    return self._delete(sub[1], ident)
            # Webhooks (§2.5): POST /webhooks or /tokens/{token}/webhooks; GET/PUT/DELETE /webhooks/{id}.
            if method == "POST" and (
                sub == ["webhooks"] or (len(sub) == 3 and sub[0] == "tokens" and sub[2] == "webhooks")
            ):
                if len(sub) == 3 and sub[1] != ident.token:
                    raise TrelloError(401, "invalid token")
                return self._webhook_create(req, ident)
            if len(sub) == 3 and sub[0] == "tokens" and sub[2] == "webhooks" and method == "GET":
                if sub[1] != ident.token:
                    raise TrelloError(401, "invalid token")
                hooks = [h for h in self.webhooks.values() if h["token"] == ident.token]
                return Response.json(200, [self._public_webhook(h) for h in hooks])
            if len(sub) == 2 and sub[0] == "webhooks":
                hook = self._webhook(sub[1], ident)
                if method == "GET":
                    return Response.json(200, self._public_webhook(hook))
                if method == "PUT":
                    return self._webhook_update(req, hook)
                if method == "DELETE":
                    del self.webhooks[hook["id"]]
                    return Response.json(200, {"_value": None})
            if len(sub) == 3 and sub[0] == "boards" and method == "GET":
                board = self._board(sub[1])
                if sub[2] == "cards":
                    cards = [c for c in self.cards.values() if c["idBoard"] == board["id"]]
                    return self._cards(req, cards)
                if sub[2] == "lists":
                    return self._board_lists(req, board["id"])
                if sub[2] == "labels":
                    return Response.json(200, list(board["labels"].values()))
            if len(sub) == 3 and sub[0] == "lists" and sub[2] == "cards" and method == "GET":
                lst = self._list(sub[1], status=404)
                return self._cards(req, [c for c in self.cards.values() if c["idList"] == lst["id"]])
            if len(sub) == 2 and sub[0] == "boards" and method == "GET":
                board = self._board(sub[1])
                return Response.json(200, {"id": board["id"], "name": board["name"], "closed": False})
            if sub == ["members", "me"] and method == "GET":
                return Response.json(200, self._me())
        except TrelloError as exc:
            return exc.response
        return self.not_found_route(req)

    def _me(self) -> dict[str, Any]:
        return {
            "id": DEMO_MEMBER,
            "username": "sandboxdemo",
            "fullName": MEMBERS[DEMO_MEMBER],
            "initials": "SD",
            "url": "https://trello.com/sandboxdemo",
            "idBoards": sorted(self.boards),
            "confirmed": True,
            "memberType": "normal",
        }

    @staticmethod
    def _check_id(value: str) -> None:
        if not ID_RE.match(value):
            raise TrelloError(400, "invalid id")  # §2.7

    def _card(self, card_id: str) -> dict[str, Any]:
        self._check_id(card_id)
        card = self.cards.get(card_id)
        if card is None:
            raise TrelloError(404, NOT_FOUND)
        return card

    def _board(self, board_id: str) -> dict[str, Any]:
        self._check_id(board_id)
        board = self.boards.get(board_id)
        if board is None:
            raise TrelloError(404, NOT_FOUND)
        return board

    def _list(self, list_id: Any, *, status: int = 400) -> dict[str, Any]:
        if not isinstance(list_id, str) or not ID_RE.match(list_id) or list_id not in self.lists:
            if status == 404 and isinstance(list_id, str) and ID_RE.match(list_id):
                raise TrelloError(404, NOT_FOUND)
            raise TrelloError(400, "invalid value for idList" if status == 400 else "invalid id")
        return self.lists[list_id]

    def _params(self, req: Request) -> dict[str, Any]:
        try:
            return req.params()
        except ValueError:
            raise TrelloError(400, "invalid request body") from None

    def _apply(self, card: dict[str, Any], params: dict[str, Any]) -> None:
        if "name" in params:
            name = params["name"]
            if not isinstance(name, str) or len(name) > 16384:
                raise TrelloError(400, "invalid value for name")
            card["name"] = name
        if "desc" in params:
            desc = params["desc"] if params["desc"] is not None else ""
            if not isinstance(desc, str) or len(desc) > 16384:  # §2.3
                raise TrelloError(400, "invalid value for desc")
            card["desc"] = desc
        if "due" in params:
            card["due"] = _due(params["due"], "due")
        if "start" in params:
            card["start"] = _due(params["start"], "start")
        if "dueComplete" in params:
            card["dueComplete"] = as_bool(params["dueComplete"])
        if "closed" in params:
            card["closed"] = as_bool(params["closed"])  # archive / unarchive (§2.2)
        if "idMembers" in params:
            card["idMembers"] = _ids(params["idMembers"], "idMembers")
        if "idLabels" in params:
            card["idLabels"] = _ids(params["idLabels"], "idLabels")
        if "pos" in params:
            pos = params["pos"]
            if pos == "top":
                card["pos"] = min((c["pos"] for c in self.cards.values()), default=65536) / 2
            elif pos == "bottom":
                card["pos"] = max((c["pos"] for c in self.cards.values()), default=0) + 65536
            else:
                try:
                    card["pos"] = float(pos)
                except (TypeError, ValueError):
                    raise TrelloError(400, "invalid value for pos") from None
        if "idList" in params:
            lst = self._list(params["idList"])
            card["idList"] = lst["id"]
            card["idBoard"] = lst["idBoard"]
        board = self.boards[card["idBoard"]]
        if "idLabels" in params and any(i not in board["labels"] for i in card["idLabels"]):
            # A label of another board, or one deleted since the caller read the board's labels.
            raise TrelloError(400, "invalid value for idLabels")
        card["labels"] = [board["labels"][i] for i in card["idLabels"] if i in board["labels"]]
        card["dateLastActivity"] = iso_now_ms()

    def _create(self, req: Request, ident: Identity | None = None) -> Response:
        params = self._params(req)
        if not params.get("idList"):
            raise TrelloError(400, "invalid value for idList")  # idList is required (§2.2)
        lst = self._list(params["idList"])
        board = self.boards[lst["idBoard"]]
        card_id = trello_id()
        while card_id in self.cards:
            card_id = trello_id()
        board["short_id"] += 1
        short_link = "".join(secrets.choice(SHORTLINK_CHARS) for _ in range(8))
        self.seq += 1
        card: dict[str, Any] = {
            "id": card_id,
            "badges": {"votes": 0, "attachments": 0, "comments": 0, "checkItems": 0, "checkItemsChecked": 0},
            "checkItemStates": [],
            "closed": False,
            "dueComplete": False,
            "dateLastActivity": iso_now_ms(),
            "desc": "",
            "descData": {"emoji": {}},
            "due": None,
            "dueReminder": None,
            "email": None,
            "idBoard": board["id"],
            "idChecklists": [],
            "idList": lst["id"],
            "idMembers": [],
            "idMembersVoted": [],
            "idShort": board["short_id"],
            "idAttachmentCover": None,
            "idLabels": [],
            "labels": [],
            "manualCoverAttachment": False,
            "name": "",
            "pos": self.seq * 16384,
            "shortLink": short_link,
            "shortUrl": f"https://trello.com/c/{short_link}",
            "start": None,
            "subscribed": False,
            "url": "",
            "isTemplate": False,
            "cardRole": None,
            "_seq": self.seq,
        }
        self._apply(card, {k: v for k, v in params.items() if k not in ("key", "token")})
        slug = re.sub(r"[^a-z0-9]+", "-", card["name"].lower()).strip("-")[:60]
        card["url"] = f"https://trello.com/c/{short_link}/{card['idShort']}-{slug}"
        self.cards[card_id] = card
        self.record_create(card_id, card["name"], card["desc"])
        self.emit("createCard", None, card, member=self.member_of(ident))
        return Response.json(200, self._public(card))

    def _update(self, req: Request, card_id: str, ident: Identity | None = None) -> Response:
        card = self._card(card_id)
        params = {k: v for k, v in self._params(req).items() if k not in ("key", "token")}
        before = dict(card)
        draft = dict(card)
        self._apply(draft, params)
        card.clear()
        card.update(draft)
        self.record_effect("update", card_id, fields=sorted(params))
        self.emit("updateCard", before, card, member=self.member_of(ident))
        return Response.json(200, self._public(card))

    def _delete(self, card_id: str, ident: Identity | None = None) -> Response:
        card = self._card(card_id)
        del self.cards[card_id]  # permanent (§2.2)
        self.record_effect("delete", card_id)
        self.emit("deleteCard", card, None, member=self.member_of(ident))
        # Trello answers a delete with an empty ``limits`` object (not in the reference).
        return Response.json(200, {"limits": {}})

    def _cards(self, req: Request, cards: list[dict[str, Any]]) -> Response:
        # Board and list card collections return open cards by default (§2.2); ``filter`` picks.
        which = req.arg("filter", "open")
        if which in ("open", "visible"):
            cards = [c for c in cards if not c["closed"]]
        elif which == "closed":
            cards = [c for c in cards if c["closed"]]
        elif which != "all":
            raise TrelloError(400, "invalid value for filter")
        cards.sort(key=lambda c: (c["idList"], c["pos"], c["_seq"]))
        return Response.json(200, [self._public(c) for c in cards])

    def _board_lists(self, req: Request, board_id: str) -> Response:
        which = req.arg("filter", "open")  # §2.2: open/closed/all
        lists = [lst for lst in self.lists.values() if lst["idBoard"] == board_id]
        if which == "open":
            lists = [lst for lst in lists if not lst["closed"]]
        elif which == "closed":
            lists = [lst for lst in lists if lst["closed"]]
        elif which != "all":
            raise TrelloError(400, "invalid value for filter")
        return Response.json(200, sorted(lists, key=lambda lst: lst["pos"]))

    @staticmethod
    def _public(card: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in card.items() if k != "_seq"}

    # Webhooks (§2.5) ---------------------------------------------------------------------------
    def _model(self, model_id: str) -> dict[str, Any] | None:
        """What a webhook may watch here: a board, a list or a card, as the payload's ``model``."""
        if model_id in self.boards:
            board = self.boards[model_id]
            return {"id": board["id"], "name": board["name"], "closed": False}
        if model_id in self.lists:
            lst = self.lists[model_id]
            return {k: lst[k] for k in ("id", "name", "closed", "idBoard", "pos")}
        if model_id in self.cards:
            return self._public(self.cards[model_id])
        return None

    def _webhook(self, hook_id: str, ident: Identity) -> dict[str, Any]:
        self._check_id(hook_id)
        hook = self.webhooks.get(hook_id)
        if hook is None or hook["token"] != ident.token:
            raise TrelloError(404, NOT_FOUND)
        return hook

    @staticmethod
    def _public_webhook(hook: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in hook.items() if k not in ("token", "key")}

    def _webhook_create(self, req: Request, ident: Identity) -> Response:
        params = self._params(req)
        callback = params.get("callbackURL")
        model_id = params.get("idModel")
        if not isinstance(callback, str) or not callback.startswith(("http://", "https://")):
            raise TrelloError(400, "invalid value for callbackURL")
        if not isinstance(model_id, str) or not ID_RE.match(model_id) or self._model(model_id) is None:
            raise TrelloError(400, "invalid value for idModel")
        for hook in self.webhooks.values():
            if (hook["callbackURL"], hook["idModel"], hook["token"]) == (callback, model_id, ident.token):
                raise TrelloError(400, "A webhook with that callback, model, and token already exists")
        # Trello first sends a HEAD to the callback; anything but 200 and no webhook is made
        # (§2.5). The exact error text is not documented.
        try:
            status = requests.head(callback, timeout=5, allow_redirects=False).status_code
        except requests.RequestException as exc:
            raise TrelloError(
                400, f"URL ({callback}) did not return 200 status code, got {type(exc).__name__}"
            ) from None
        if status != 200:
            raise TrelloError(400, f"URL ({callback}) did not return 200 status code, got {status}")
        hook_id = trello_id()
        self.webhooks[hook_id] = {
            "id": hook_id,
            "description": str(params.get("description") or ""),
            "idModel": model_id,
            # Stored verbatim: it is half of what every delivery is signed over (§2.5).
            "callbackURL": callback,
            "active": as_bool(params.get("active", True)),
            "consecutiveFailures": 0,
            "firstConsecutiveFailDate": None,
            "token": ident.token,
            "key": ident.key,
        }
        self.record_effect("webhook_create", hook_id, callback=callback, model=model_id)
        return Response.json(200, self._public_webhook(self.webhooks[hook_id]))

    def _webhook_update(self, req: Request, hook: dict[str, Any]) -> Response:
        params = self._params(req)
        if "active" in params:
            hook["active"] = as_bool(params["active"])
        if "description" in params:
            hook["description"] = str(params["description"] or "")
        if "callbackURL" in params:
            callback = params["callbackURL"]
            if not isinstance(callback, str) or not callback.startswith(("http://", "https://")):
                raise TrelloError(400, "invalid value for callbackURL")
            hook["callbackURL"] = callback
        if "idModel" in params:
            if not isinstance(params["idModel"], str) or self._model(params["idModel"]) is None:
                raise TrelloError(400, "invalid value for idModel")
            hook["idModel"] = params["idModel"]
        return Response.json(200, self._public_webhook(hook))

    @staticmethod
    def member_of(ident: Identity | None) -> dict[str, str]:
        """Who an action names as its creator: the demo tokens belong to the demo member."""
        return {"id": DEMO_MEMBER, "fullName": MEMBERS[DEMO_MEMBER], "username": "sandboxdemo"}

    def emit(
        self,
        kind: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        *,
        member: dict[str, str],
        queue: bool = True,
    ) -> list[dict[str, Any]]:
        """The signed deliveries of a card's change to every active webhook watching it (its
        board, its list before or after, or the card itself). Called under the sandbox lock;
        with ``queue`` they are posted later by the emitter's thread, as Trello posts after the
        fact (the control endpoint posts them itself, to answer their status)."""
        if not self.webhooks:
            return []
        from providers_app.sandbox.webhooks import emitter_for, trello_actions

        card = after or before
        watched = {card["idBoard"], card["id"], card["idList"], (before or card)["idList"]}
        hooks = [h for h in self.webhooks.values() if h["active"] and h["idModel"] in watched]
        if not hooks:
            return []
        emitter = emitter_for(self.sandbox)
        deliveries = emitter.trello_deliveries(
            self, hooks, trello_actions(self, kind, before, after, member=member), before
        )
        if queue:
            emitter.queue(deliveries)
        return deliveries
