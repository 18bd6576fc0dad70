"""What every simulated provider implements; the engine (engine.py) calls these in order:
authenticate → rate limit → route (the effect) while holding the sandbox lock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from providers_app.sandbox.core import Request, Response

if TYPE_CHECKING:
    from providers_app.sandbox.engine import Sandbox


class Identity:
    """The caller as a provider sees it: the credentials its rate limits are counted on."""

    __slots__ = ("key", "token", "user")

    def __init__(self, token: str, key: str | None = None, user: Any = None) -> None:
        self.token = token
        self.key = key
        self.user = user


class Limited(Exception):
    """A rate limit said no; carries the provider's 429."""

    def __init__(self, response: Response) -> None:
        super().__init__("rate limited")
        self.response = response


class ProviderSim:
    name: str = ""
    prefix: str = ""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.reset()

    # State --------------------------------------------------------------------------------
    def reset(self) -> None:
        raise NotImplementedError

    def dump(self, *, include_items: bool) -> dict[str, Any]:
        raise NotImplementedError

    def configure(self, values: dict[str, Any]) -> None:
        """Extra containers (lists, boards, projects) from the control endpoint or flags."""
        raise ValueError(f"{self.name}: nothing to configure")

    # Request pipeline -----------------------------------------------------------------------
    def authenticate(self, req: Request) -> Identity | Response:
        raise NotImplementedError

    def rate_limit(self, req: Request, ident: Identity, now: float) -> dict[str, str]:
        """Count the request against the caller's budgets; return the headers to add to the
        response, or raise Limited with the provider's 429."""
        raise NotImplementedError

    def storm_response(self, remaining: float) -> Response:
        raise NotImplementedError

    def error_response(self, status: int) -> Response:
        raise NotImplementedError

    def not_found_route(self, req: Request) -> Response:
        raise NotImplementedError

    def route(self, req: Request, ident: Identity, sub: list[str]) -> Response:
        raise NotImplementedError

    # Bookkeeping ------------------------------------------------------------------------------
    def record_create(self, item_id: str, *texts: Any, request_id: str | None = None) -> None:
        sandbox = self.sandbox
        stats = sandbox.stats
        stats.creates[self.name] += 1
        marker = sandbox.marker.find(*texts)
        if marker:
            stats.creates_by_marker[f"{self.name}:{marker}"] += 1
        if request_id:
            stats.creates_by_request_id[f"{self.name}:{request_id}"] += 1
        sandbox.log_effect(self.name, "create", item_id, marker=marker, request_id=request_id)

    def record_effect(self, op: str, item_id: str, **extra: Any) -> None:
        self.sandbox.log_effect(self.name, op, item_id, **extra)
