"""Operator actions on chosen tasks (the admin's actions), built on the same services as the API.

- rescore: recompute the score now instead of at the next beat run;
- reroute: move undelivered tasks off their provider (the provider-down "move" policy, on demand);
- resend: deliver a task's current state to its provider again (a new version and update event),
  for a task changed at the provider by hand, say.
"""

from __future__ import annotations

import uuid
from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from archangel.errors import Conflict
from outbox_app.services import EventSpec, outbox_enqueue_many
from tasks_app import services
from tasks_app.models import AssigneeIdentity, Task
from tasks_app.status import CLOSED


def tasks_rescore(*, task_ids: list[uuid.UUID]) -> int:
    now = timezone.now()
    updates = []
    for task in Task.objects.filter(pk__in=task_ids).select_related("client"):
        services._score(task, task.client, now)
        updates.append((task.id, task.version, task.score, task.score_breakdown))
    return services._write_scores(updates) if updates else 0


def tasks_reroute(*, task_ids: list[uuid.UUID]) -> int:
    """Move each undelivered, open task (no external id yet, create not claimed by a worker) to the
    best other available provider; returns how many moved. Delivered tasks stay where they are."""
    by_provider: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    rows = Task.objects.filter(pk__in=task_ids, external_id__isnull=True, provider__isnull=False).exclude(
        status__in=CLOSED
    )
    for task_id, provider_id in rows.values_list("id", "provider_id").order_by("id"):
        by_provider[provider_id].append(task_id)
    return sum(services._move_tasks(provider_id, ids) for provider_id, ids in by_provider.items())


def task_resend(*, task_id: uuid.UUID) -> Task:
    """A new version of the task with an update event carrying its full current state."""
    with transaction.atomic():
        task = Task.objects.select_for_update().get(pk=task_id)
        if task.provider_id is None:
            raise Conflict("The task has no provider to send it to.")
        if not task.external_id:
            raise Conflict("Its create has not been delivered yet: requeue or wait for that outbox event instead.")
        task.version += 1
        task.save(update_fields=["version", "updated_at"])
        assignee_external_id = None
        if task.assignee_id:
            assignee_external_id = (
                AssigneeIdentity.objects.filter(assignee_id=task.assignee_id, provider_id=task.provider_id)
                .values_list("external_user_id", flat=True)
                .first()
            )
        payload = services.task_payload(task, assignee_external_id=assignee_external_id)
        outbox_enqueue_many(
            events=[
                EventSpec(
                    provider_id=task.provider_id,
                    aggregate_id=task.id,
                    aggregate_version=task.version,
                    operation="update",
                    payload=payload,
                )
            ]
        )
    return task
