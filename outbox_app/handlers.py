"""How the outbox learns about, and reports to, the aggregates it delivers.

The outbox is generic (it never imports ``tasks_app``); the app that owns an
aggregate type registers, in its ``AppConfig.ready``:

- ``external_id(aggregate_ids) -> {aggregate_id: external_id}``: the aggregates'
  CURRENT ids at their provider (one query for a whole batch), read when the events
  are delivered. An update enqueued before the create
  was delivered carries no external id in its payload; by the time it is delivered
  (never before the create, order per aggregate) the create has stored one.
- ``created(aggregate_id, provider_id, external_id)``: called right after a create
  succeeds, inside the same transaction as the fencing-token-conditioned write that
  marks the event delivered, so the external id is stored if and only if the
  delivery is recorded.
- ``created_many([(aggregate_id, provider_id, external_id), ...])`` (optional): the same for
  every delivered create of a batch at once (the drain records a batch in a few statements);
  without it the drain calls ``created`` once per create.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AggregateHandlers:
    external_id: Callable[[list[uuid.UUID]], dict[uuid.UUID, str | None]]
    created: Callable[[uuid.UUID, uuid.UUID | None, str], None]
    created_many: Callable[[list[tuple[uuid.UUID, uuid.UUID | None, str]]], None] | None = None


_registry: dict[str, AggregateHandlers] = {}


def register(aggregate_type: str, *, external_id, created, created_many=None) -> None:
    _registry[aggregate_type] = AggregateHandlers(external_id=external_id, created=created, created_many=created_many)


def handlers_for(aggregate_type: str) -> AggregateHandlers | None:
    return _registry.get(aggregate_type)
