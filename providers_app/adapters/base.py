"""The contract between the outbox and the provider adapters.

An adapter speaks one provider's HTTP API (docs/provider-apis.md) and knows
nothing of the outbox; the outbox knows nothing of wire formats. Every failure
is a :class:`ProviderError` that says whether trying again can help.

The neutral task payload an adapter receives is the one
``tasks_app.services.task_payload`` writes into outbox events: ``task_id``,
``version``, ``title``, ``description``, ``status`` (our status names),
``priority`` (1 low .. 4 urgent), ``effort_hours`` (float or None), ``deadline``
(ISO-8601 with offset, or None), ``assignee_external_id``, ``external_id``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class ProviderError(Exception):
    """A provider call that did not succeed.

    ``retryable``: a later attempt may succeed (network, timeout, 5xx, 429).
    ``outcome_unknown``: the request may have taken effect although no answer
    came back (read timeout, connection dropped after sending); a create must
    then look for the task it may have made before creating another.
    ``retry_after``: seconds the provider asked us to wait (429 hints), if any.
    ``trips_breaker``: whether this failure counts against the provider's health
    (a 404 or a 429 says nothing about the provider being down).
    """

    retryable = False
    trips_breaker = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        self.body = body

    @property
    def code(self) -> str:
        return type(self).code_name

    code_name = "provider_error"


class TransientError(ProviderError):
    """Network failure, timeout or 5xx: retry with backoff; counts against the breaker."""

    retryable = True
    trips_breaker = True
    code_name = "transient"


class RateLimited(ProviderError):
    """429: wait ``retry_after`` (or until the budget returns); never trips the breaker."""

    retryable = True
    code_name = "rate_limited"


class PermanentError(ProviderError):
    """The request itself is wrong; sending it again cannot help."""

    code_name = "permanent"


class LookupIncomplete(PermanentError):
    """A create with an unknown outcome could not rule out that its task exists: more tasks
    changed since its first attempt than one lookup may read. Creating again could make a
    second task, so the event stops here for an operator (docs/operations.md)."""

    code_name = "lookup_incomplete"


class AuthError(PermanentError):
    code_name = "auth"


class NotFound(PermanentError):
    code_name = "not_found"


class ValidationFailed(PermanentError):
    code_name = "validation"


@dataclass(frozen=True)
class RemoteTask:
    """A task as the provider returned it, mapped back to our vocabulary where it can be."""

    external_id: str
    title: str = ""
    status: str | None = None  # our status name, when the provider's maps to one
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class BatchItem:
    """One outbox operation in a provider batch (Todoist's Sync API): the same arguments as the
    single-operation methods take."""

    operation: str  # create | update | complete | archive | delete
    payload: dict[str, Any]
    idempotency_key: str
    external_id: str | None = None


@dataclass(frozen=True)
class BatchOutcome:
    """What became of one item of a batch: done (with the new id for a create) or its own error."""

    external_id: str | None = None
    status_code: int | None = None
    error: ProviderError | None = None


@dataclass(frozen=True)
class Page:
    items: list[RemoteTask]
    next_cursor: str | None = None


class Adapter(abc.ABC):
    """One provider account. Built from ``Provider.full_config()``; holds a pooled session."""

    type: str

    @abc.abstractmethod
    def create(self, payload: dict[str, Any], *, idempotency_key: str) -> RemoteTask: ...

    @abc.abstractmethod
    def find_by_reference(
        self,
        payload: dict[str, Any],
        *,
        idempotency_key: str,
        changed_since: datetime | None = None,
        charge: Callable[[], None] | None = None,
    ) -> RemoteTask | None:
        """The task an earlier create of this payload may have made (by the reference marker
        the adapter writes into every task it creates), or None when it certainly does not exist.

        ``changed_since``: no attempt reached the provider before this moment (the event's first
        claim), so older tasks need not be read. ``charge`` is called before every request after
        the first (the caller paid for that one) and raises ``RateLimited`` when the budget is
        spent. Raises :class:`LookupIncomplete` rather than answer None without having read
        every candidate."""

    @abc.abstractmethod
    def get(self, external_id: str) -> RemoteTask: ...

    @abc.abstractmethod
    def update(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> RemoteTask: ...

    @abc.abstractmethod
    def complete(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> None: ...

    @abc.abstractmethod
    def archive(self, external_id: str, payload: dict[str, Any], *, idempotency_key: str) -> None: ...

    @abc.abstractmethod
    def delete(self, external_id: str, *, idempotency_key: str) -> None: ...

    @abc.abstractmethod
    def list(self, *, cursor: str | None = None) -> Page: ...

    @abc.abstractmethod
    def health_check(self) -> None:
        """Raise a ProviderError when the account cannot be reached or used."""
