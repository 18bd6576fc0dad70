"""What the outbox needs to know about tasks, registered with it in TasksConfig.ready
(outbox_app/handlers.py): the outbox never imports tasks_app."""

import uuid

from django.db import connection

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


def task_store_external_ids(rows: list[tuple[uuid.UUID, uuid.UUID | None, str]]) -> None:
    """:func:`task_store_external_id` for every delivered create of a drain batch: one UPDATE
    and one audit INSERT, in the transaction that records the batch."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        for task_id, provider_id, external_id in rows:
            task_store_external_id(task_id, provider_id, external_id)
        return
    ids, providers, external_ids = (list(column) for column in zip(*rows, strict=True))
    with connection.cursor() as cursor:
        # Same conditions as the single-row form: the task still routed to that provider, and
        # not already holding that id. Names come from the model's meta, values are parameters.
        cursor.execute(
            f"UPDATE {Task._meta.db_table} AS t SET external_id = v.external_id "  # noqa: S608
            "FROM unnest(%s::uuid[], %s::uuid[], %s::varchar[]) AS v(id, provider_id, external_id) "
            "WHERE t.id = v.id AND t.provider_id IS NOT DISTINCT FROM v.provider_id "
            "AND t.external_id IS DISTINCT FROM v.external_id RETURNING t.id, t.external_id",
            [ids, providers, external_ids],
        )
        changed = cursor.fetchall()
    record(
        [Entry("update", "tasks_app.task", str(task_id), changes={"external_id": [None, external_id]})
         for task_id, external_id in changed]
    )  # fmt: skip


def register() -> None:
    handlers.register(
        "task", external_id=task_external_ids, created=task_store_external_id, created_many=task_store_external_ids
    )
