"""Task statuses and the one table of allowed transitions.

The design draws the main line pending → assigned → in_progress → completed,
with blocked, review, on_hold and archived beside it::

    pending → assigned → in_progress → completed
       ↓         ↓           ↓            ↓
     blocked   review     on_hold     archived

Every status may be archived (DELETE /api/tasks/{id}); archived is final.
"""

from django.db import models


class TaskStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ASSIGNED = "assigned", "Assigned"
    IN_PROGRESS = "in_progress", "In progress"
    BLOCKED = "blocked", "Blocked"
    REVIEW = "review", "Review"
    ON_HOLD = "on_hold", "On hold"
    COMPLETED = "completed", "Completed"
    ARCHIVED = "archived", "Archived"


S = TaskStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.ASSIGNED, S.IN_PROGRESS, S.BLOCKED, S.ARCHIVED}),
    S.ASSIGNED: frozenset({S.PENDING, S.IN_PROGRESS, S.REVIEW, S.BLOCKED, S.ARCHIVED}),
    S.IN_PROGRESS: frozenset({S.ASSIGNED, S.REVIEW, S.ON_HOLD, S.BLOCKED, S.COMPLETED, S.ARCHIVED}),
    S.REVIEW: frozenset({S.IN_PROGRESS, S.ASSIGNED, S.COMPLETED, S.ARCHIVED}),
    S.BLOCKED: frozenset({S.PENDING, S.ASSIGNED, S.IN_PROGRESS, S.ARCHIVED}),
    S.ON_HOLD: frozenset({S.IN_PROGRESS, S.ASSIGNED, S.ARCHIVED}),
    # A completed task can be reopened; archiving is the end of the road.
    S.COMPLETED: frozenset({S.IN_PROGRESS, S.ARCHIVED}),
    S.ARCHIVED: frozenset(),
}

# Statuses a task may be created in: the start, or one step from it.
INITIAL = frozenset({S.PENDING}) | (TRANSITIONS[S.PENDING] - {S.ARCHIVED})

# "Open" work: counted for de-duplication, capacity and planning.
CLOSED = frozenset({S.COMPLETED, S.ARCHIVED})
OPEN = frozenset(TaskStatus.values) - CLOSED


def allowed_targets(current: str) -> list[str]:
    return sorted(TRANSITIONS[current])


def can_transition(current: str, target: str) -> bool:
    return current == target or target in TRANSITIONS[current]
