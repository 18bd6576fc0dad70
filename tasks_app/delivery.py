"""What the outbox needs to know about tasks, registered with it in TasksConfig.ready
(outbox_app/handlers.py): the outbox never imports tasks_app."""

import uuid

from archangel.audit.context import Entry, record
from outbox_app import handlers
from tasks_app.models import Task


def task_external_ids(task_ids: list[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """The tasks' current ids at their provider, read when their events are delivered."""
    return dict(Task.objects.filter(pk__in=task_ids).values_list("id", "external_id"))


def task_store_external_id(task_id: uuid.UUID, provider_id: uuid.UUID | None, external_id: str) -> None:
    """Called inside the transaction that records a delivered create: the external id is stored
    if and only if the delivery is. A task rerouted since to another provider keeps its own.
    Does not bump the task's version: nothing a provider must hear about changed. A bulk
    UPDATE skips the audit signals, so the entry is written here (same transaction)."""
    changed = (
        Task.objects.filter(pk=task_id, provider_id=provider_id)
        .exclude(external_id=external_id)
        .update(external_id=external_id)
    )
    if changed:
        record([Entry("update", "tasks_app.task", str(task_id), changes={"external_id": [None, external_id]})])


def register() -> None:
    handlers.register("task", external_id=task_external_ids, created=task_store_external_id)
