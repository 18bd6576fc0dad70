"""Routing and load balancing: the pure decision (no ORM). ``tasks_app.selectors`` loads the
inputs once per batch; ``tasks_app.services`` stores the decisions.

**Provider.** A task created without a provider gets one:

1. only available providers: health neither down nor disabled, circuit breaker closed
   (``providers_app.health.unavailable_provider_ids``), and ``weight`` above 0;
2. when the task has a fixed assignee, only providers where that person has an identity
   (if there is none, any available provider);
3. otherwise providers where at least one active assignee has an identity are preferred
   to providers where nobody could take the task;
4. the client's preferred provider wins when it is still a candidate;
5. else the least loaded relative to its weight: the lowest ``(open tasks + 1) / weight``,
   so over time each provider's share of open work follows its weight.

**Assignee.** A task created without an assignee gets the active person with an identity
on the chosen provider who has the most free capacity (``capacity_hours_per_day`` minus
the effort hours of their open tasks). A person the task would take over capacity is only
chosen when nobody else fits; then the decision says ``over_capacity``. Equal free capacity
(to the minute) is broken round-robin: the first of the equals after the last assignee
routed to, in id order.

Every decision lists its candidates with the reason each lost, and the winner's margin
over the runner-up. Loads are updated as tasks are routed, so a batch spreads its work.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

# Runner-up assignees listed by name in a decision; the rest are counted by reason, so a
# decision among 200 people stays a small row.
LISTED_ASSIGNEES = 5
_TIE = 1 / 60  # hours: free capacities within a minute of each other are equal


@dataclass(slots=True)
class ProviderState:
    id: uuid.UUID
    name: str
    type: str
    weight: int
    open_tasks: int = 0
    unavailable_reason: str | None = None  # "down", "disabled", "circuit breaker open"...


@dataclass(slots=True)
class AssigneeState:
    id: uuid.UUID
    name: str
    capacity_hours: float
    open_hours: float
    provider_ids: frozenset[uuid.UUID]

    @property
    def free_hours(self) -> float:
        return self.capacity_hours - self.open_hours


@dataclass(slots=True)
class RoutingInputs:
    """Everything a batch of decisions needs, loaded once (``selectors.routing_inputs``)."""

    providers: dict[uuid.UUID, ProviderState]
    assignees: dict[uuid.UUID, AssigneeState]
    last_assignee_id: uuid.UUID | None = None
    # Assignees by provider id, built lazily.
    _by_provider: dict[uuid.UUID, list[AssigneeState]] | None = None

    def assignees_on(self, provider_id: uuid.UUID) -> list[AssigneeState]:
        if self._by_provider is None:
            self._by_provider = {}
            for person in sorted(self.assignees.values(), key=lambda a: a.id):
                for pid in person.provider_ids:
                    self._by_provider.setdefault(pid, []).append(person)
        return self._by_provider.get(provider_id, [])


@dataclass(slots=True)
class Request:
    """One task to route: what it fixes already and what it weighs."""

    effort_hours: float = 0.0
    provider_id: uuid.UUID | None = None  # fixed by the caller
    assignee_id: uuid.UUID | None = None  # fixed by the caller
    preferred_provider_id: uuid.UUID | None = None  # the client's
    exclude_provider_ids: frozenset[uuid.UUID] = frozenset()


@dataclass(slots=True)
class Decision:
    provider_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    chose_provider: bool = True
    over_capacity: bool = False
    margin_hours: float | None = None
    reason: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": str(self.provider_id) if self.provider_id else None,
            "assignee": str(self.assignee_id) if self.assignee_id else None,
            "chose_provider": self.chose_provider,
            "over_capacity": self.over_capacity,
            "margin_hours": self.margin_hours,
            "reason": self.reason,
            "candidates": self.candidates,
        }


def _load_ratio(p: ProviderState) -> float:
    return (p.open_tasks + 1) / p.weight


def choose_provider(request: Request, inputs: RoutingInputs) -> tuple[ProviderState | None, list[dict], str]:
    candidates: list[dict] = []
    by_id: dict[str, dict] = {}
    usable: list[ProviderState] = []
    fixed_person = inputs.assignees.get(request.assignee_id) if request.assignee_id else None
    for p in sorted(inputs.providers.values(), key=lambda p: p.id):
        entry = {"kind": "provider", "id": str(p.id), "name": p.name, "open_tasks": p.open_tasks, "weight": p.weight}
        if p.id in request.exclude_provider_ids:
            entry["rejected"] = "being moved away from"
        elif p.unavailable_reason:
            entry["rejected"] = f"unavailable: {p.unavailable_reason}"
        elif p.weight <= 0:
            entry["rejected"] = "weight 0 (takes no new work)"
        else:
            usable.append(p)
        candidates.append(entry)
        by_id[entry["id"]] = entry
    if not usable:
        return None, candidates, "no available provider"

    pool = usable
    if request.assignee_id is not None:
        theirs = [p for p in usable if fixed_person is not None and p.id in fixed_person.provider_ids]
        if theirs:
            for p in usable:
                if p.id not in fixed_person.provider_ids:
                    by_id[str(p.id)]["rejected"] = "the assignee has no identity here"
            pool = theirs
    else:
        staffed = [p for p in usable if inputs.assignees_on(p.id)]
        if staffed:
            for p in usable:
                if not inputs.assignees_on(p.id):
                    by_id[str(p.id)]["rejected"] = "no active assignee with an identity here"
            pool = staffed

    preferred = next((p for p in pool if p.id == request.preferred_provider_id), None)
    if preferred is not None:
        for p in pool:
            if p is not preferred:
                by_id[str(p.id)]["rejected"] = "not the client's preferred provider"
        return preferred, candidates, "client's preferred provider"
    best = min(pool, key=lambda p: (_load_ratio(p), p.id))
    for p in pool:
        if p is not best:
            by_id[str(p.id)]["rejected"] = (
                f"more load for its weight ({_load_ratio(p):.3g} vs {_load_ratio(best):.3g} open tasks per weight)"
            )
    reason = "the only available provider" if len(pool) == 1 else "least open tasks for its weight"
    return best, candidates, reason


def choose_assignee(
    request: Request, provider_id: uuid.UUID, inputs: RoutingInputs
) -> tuple[AssigneeState | None, bool, float | None, list[dict], str]:
    people = inputs.assignees_on(provider_id)
    if not people:
        return None, False, None, [], "no active assignee with an identity on the provider"
    effort = max(0.0, request.effort_hours)
    fits = [a for a in people if a.free_hours - effort >= -1e-9]
    pool = fits or people
    over = not fits
    top = max(a.free_hours for a in pool)
    equals = [a for a in pool if top - a.free_hours <= _TIE]  # already in id order
    winner = equals[0]
    last = inputs.last_assignee_id
    if last is not None and len(equals) > 1:
        # Round-robin among equals: the first after the last one routed to.
        winner = next((a for a in equals if a.id > last), equals[0])
    others = sorted((a for a in pool if a is not winner), key=lambda a: (-a.free_hours, a.id))
    margin = round(winner.free_hours - others[0].free_hours, 2) if others else None

    listed: list[dict] = [_person(winner, "chosen")]
    counts: dict[str, int] = {}
    for a in others:
        tied = top - a.free_hours <= _TIE
        why = "equal free capacity; round-robin chose another" if tied else "less free capacity"
        if len(listed) <= LISTED_ASSIGNEES:
            listed.append(_person(a, why))
        else:
            counts[why] = counts.get(why, 0) + 1
    if fits:
        full = len(people) - len(fits)
        if full:
            counts["over capacity with this task"] = full
    if counts:
        listed.append({"kind": "assignee", "more": counts})
    if over:
        reason = "everyone is at or over capacity: the one with the most free hours, flagged"
    elif len(equals) > 1:
        reason = "most free capacity (round-robin among equals)"
    else:
        reason = "most free capacity"
    return winner, over, margin, listed, reason


def _person(a: AssigneeState, outcome: str) -> dict:
    entry = {"kind": "assignee", "id": str(a.id), "name": a.name, "free_hours": round(a.free_hours, 2)}
    if outcome == "chosen":
        entry["chosen"] = True
    else:
        entry["rejected"] = outcome
    return entry


def decide(request: Request, inputs: RoutingInputs) -> Decision:
    """Route one task and account for it in ``inputs`` (the next task sees the new load)."""
    reasons: list[str] = []
    candidates: list[dict] = []
    if request.provider_id is not None:
        provider = inputs.providers.get(request.provider_id)
        provider_id = request.provider_id
        reasons.append("provider: fixed by the caller")
    else:
        provider, candidates, why = choose_provider(request, inputs)
        provider_id = provider.id if provider else None
        if provider is not None:
            for entry in candidates:
                if entry["id"] == str(provider.id):
                    entry["chosen"] = True
        reasons.append(f"provider: {why}")

    assignee_id = request.assignee_id
    over = False
    margin = None
    if assignee_id is not None:
        reasons.append("assignee: fixed by the caller")
    elif provider_id is not None:
        person, over, margin, listed, why = choose_assignee(request, provider_id, inputs)
        candidates.extend(listed)
        reasons.append(f"assignee: {why}")
        if person is not None:
            assignee_id = person.id
            inputs.last_assignee_id = person.id

    if provider is not None:
        provider.open_tasks += 1
    if assignee_id is not None and assignee_id in inputs.assignees:
        inputs.assignees[assignee_id].open_hours += max(0.0, request.effort_hours)
    return Decision(provider_id, assignee_id, request.provider_id is None, over, margin, "; ".join(reasons), candidates)
