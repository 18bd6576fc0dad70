"""The daily planner: pure (no ORM). ``tasks_app.services.plans_build`` reads the inputs and
stores the result as a ``DailyPlan``.

For one person and one day, the open tasks are ordered:

1. **overdue** (deadline passed), earliest deadline first;
2. **SLA-critical** (``scoring.SLA_CRITICAL`` of the client's SLA window used) and **due
   that day**, by score;
3. **rolled over**: in an earlier plan and still open, by score;
4. everything else by score (ties: earlier deadline, then id).

Then they are taken in that order while they fit the person's capacity for the day; a task
that does not fit is listed under ``not_fitting`` with the reason and the next ones are
still tried (a small task can fill the gap). Overdue work is the one exception: it goes in
even beyond capacity, flagged ``over_capacity``, because leaving it out would hide it. So a
plan never exceeds capacity except by flagged overdue work (a property test holds it).
A task without an effort estimate counts as ``DEFAULT_EFFORT_HOURS``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

DEFAULT_EFFORT_HOURS = 1.0
_EPS = 1e-9


@dataclass(slots=True)
class Candidate:
    id: uuid.UUID
    title: str
    score: float
    effort_hours: float | None
    deadline: dt.datetime | None = None
    overdue: bool = False
    due_today: bool = False
    sla_used: float = 0.0  # share of the client's SLA window used, 0..1
    sla_critical: bool = False
    rolled_over_from: dt.date | None = None


@dataclass(slots=True)
class Plan:
    capacity_hours: float
    items: list[dict] = field(default_factory=list)
    not_fitting: list[dict] = field(default_factory=list)
    planned_hours: float = 0.0
    over_capacity_hours: float = 0.0


def _hours(c: Candidate) -> float:
    return DEFAULT_EFFORT_HOURS if c.effort_hours is None else max(0.0, float(c.effort_hours))


def _group(c: Candidate) -> int:
    if c.overdue:
        return 0
    if c.sla_critical or c.due_today:
        return 1
    if c.rolled_over_from is not None:
        return 2
    return 3


_FAR = dt.datetime.max.replace(tzinfo=dt.UTC)


def _order_key(c: Candidate):
    # Ids compare as their canonical strings do (fixed-width hex), without building the strings.
    deadline = c.deadline or _FAR
    if c.overdue:
        return (0, deadline, -c.score, c.id)
    return (_group(c), -c.score, deadline, c.id)


def _reason(c: Candidate, rank: int) -> str:
    if c.overdue:
        return f"overdue since {c.deadline:%Y-%m-%d %H:%M} UTC"
    parts = []
    if c.sla_critical:
        parts.append(f"SLA-critical: {c.sla_used:.0%} of the client's SLA window used")
    if c.due_today:
        parts.append("due today")
    if c.rolled_over_from is not None:
        parts.append(f"rolled over from {c.rolled_over_from.isoformat()}")
    parts.append(f"score {c.score:.3f} (#{rank} by score)")
    return "; ".join(parts)


def _item(c: Candidate, reason: str, **extra) -> dict:
    return {
        "task": str(c.id),
        "title": c.title,
        "hours": round(_hours(c), 2),
        "score": c.score,
        "deadline": c.deadline.isoformat() if c.deadline else None,
        "reason": reason,
        **extra,
    }


def build(candidates: list[Candidate], capacity_hours: float) -> Plan:
    """The plan of one person's day."""
    plan = Plan(capacity_hours=float(capacity_hours))
    by_score = {c.id: i + 1 for i, c in enumerate(sorted(candidates, key=lambda c: (-c.score, c.id)))}
    used = 0.0
    for c in sorted(candidates, key=_order_key):
        hours = _hours(c)
        kind = ("overdue", "critical", "rolled_over", "by_score")[_group(c)]
        if used + hours <= plan.capacity_hours + _EPS:
            plan.items.append(_item(c, _reason(c, by_score[c.id]), kind=kind, over_capacity=False))
            used += hours
        elif c.overdue:
            reason = _reason(c, by_score[c.id]) + "; beyond capacity"
            plan.items.append(_item(c, reason, kind=kind, over_capacity=True))
            used += hours
        else:
            left = max(0.0, plan.capacity_hours - used)
            plan.not_fitting.append(
                _item(
                    c, f"does not fit: {left:.2f} h left of {plan.capacity_hours:g} h, needs {hours:.2f} h", kind=kind
                )
            )
    plan.planned_hours = round(used, 2)
    plan.over_capacity_hours = round(max(0.0, used - plan.capacity_hours), 2)
    return plan
