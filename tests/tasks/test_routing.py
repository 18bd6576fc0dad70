"""The pure routing decision: healthy providers only, capacity first, deterministic ties."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from tasks_app import routing
from tasks_app.routing import AssigneeState, ProviderState, Request, RoutingInputs


def ids(n):
    return sorted(uuid.UUID(int=i + 1) for i in range(n))


def make_inputs(providers, people, last=None):
    return RoutingInputs(
        providers={p.id: p for p in providers}, assignees={a.id: a for a in people}, last_assignee_id=last
    )


P1, P2, P3 = ids(3)
A1, A2, A3, A4 = (uuid.UUID(int=100 + i) for i in range(4))


def person(aid, free, providers=(P1,), capacity=8.0):
    return AssigneeState(aid, f"p{aid.int}", capacity, capacity - free, frozenset(providers))


def test_a_down_provider_is_never_chosen_and_says_why():
    inputs = make_inputs(
        [ProviderState(P1, "a", "clickup", 100, unavailable_reason="down"), ProviderState(P2, "b", "trello", 100)],
        [person(A1, 8, (P1,)), person(A2, 2, (P2,))],
    )
    decision = routing.decide(Request(effort_hours=1), inputs)
    assert (decision.provider_id, decision.assignee_id) == (P2, A2)
    rejected = {c["name"]: c.get("rejected") for c in decision.candidates if c["kind"] == "provider"}
    assert rejected == {"a": "unavailable: down", "b": None}


def test_the_clients_preferred_provider_wins_while_available():
    providers = [ProviderState(P1, "a", "clickup", 100), ProviderState(P2, "b", "trello", 100, open_tasks=50)]
    people = [person(A1, 8, (P1, P2))]
    assert routing.decide(Request(preferred_provider_id=P2), make_inputs(providers, people)).provider_id == P2
    providers[1].unavailable_reason = "circuit breaker open"
    assert routing.decide(Request(preferred_provider_id=P2), make_inputs(providers, people)).provider_id == P1


def test_providers_share_work_by_weight():
    providers = [ProviderState(P1, "a", "clickup", 300), ProviderState(P2, "b", "trello", 100)]
    inputs = make_inputs(providers, [person(A1, 1000, (P1, P2), capacity=1000)])
    chosen = [routing.decide(Request(effort_hours=0), inputs).provider_id for _ in range(400)]
    assert chosen.count(P1) == 300 and chosen.count(P2) == 100


def test_a_provider_nobody_can_work_on_is_passed_over():
    inputs = make_inputs(
        [ProviderState(P1, "empty", "clickup", 100), ProviderState(P2, "staffed", "trello", 100, open_tasks=9)],
        [person(A1, 8, (P2,))],
    )
    decision = routing.decide(Request(), inputs)
    assert decision.provider_id == P2
    assert {c["name"]: c.get("rejected") for c in decision.candidates if c["kind"] == "provider"}["empty"] == (
        "no active assignee with an identity here"
    )


def test_the_person_with_most_free_capacity_gets_the_task_with_the_margin():
    inputs = make_inputs([ProviderState(P1, "a", "clickup", 100)], [person(A1, 3), person(A2, 5), person(A3, 4)])
    decision = routing.decide(Request(effort_hours=2), inputs)
    assert decision.assignee_id == A2 and decision.margin_hours == 1.0 and not decision.over_capacity
    # The load moved: A2 now has 3 h free, A3 4 h: the next task goes to A3.
    assert routing.decide(Request(effort_hours=2), inputs).assignee_id == A3


def test_someone_at_capacity_is_chosen_only_when_nobody_fits_and_it_is_flagged():
    inputs = make_inputs([ProviderState(P1, "a", "clickup", 100)], [person(A1, 1), person(A2, 0.5)])
    decision = routing.decide(Request(effort_hours=3), inputs)
    assert decision.assignee_id == A1 and decision.over_capacity
    assert "over capacity" in decision.reason


def test_ties_go_round_robin_in_id_order():
    people = [person(A1, 8), person(A2, 8), person(A3, 8)]
    inputs = make_inputs([ProviderState(P1, "a", "clickup", 100)], people, last=A1)
    picks = [routing.decide(Request(effort_hours=0), inputs).assignee_id for _ in range(4)]
    assert picks == [A2, A3, A1, A2]


def test_a_fixed_assignee_limits_the_providers_to_theirs():
    inputs = make_inputs(
        [ProviderState(P1, "a", "clickup", 100), ProviderState(P2, "b", "trello", 100)],
        [person(A1, 8, (P2,))],
    )
    decision = routing.decide(Request(assignee_id=A1), inputs)
    assert (decision.provider_id, decision.assignee_id) == (P2, A1)


def test_no_available_provider_routes_nowhere():
    inputs = make_inputs([ProviderState(P1, "a", "clickup", 100, unavailable_reason="disabled")], [])
    decision = routing.decide(Request(), inputs)
    assert decision.provider_id is None and decision.assignee_id is None
    assert "no available provider" in decision.reason


def test_a_decision_among_many_people_stays_small():
    people = [person(uuid.UUID(int=1000 + i), i % 7) for i in range(200)]
    decision = routing.decide(Request(effort_hours=1), make_inputs([ProviderState(P1, "a", "clickup", 100)], people))
    assignees = [c for c in decision.candidates if c["kind"] == "assignee"]
    assert len(assignees) == routing.LISTED_ASSIGNEES + 2  # winner, runners-up, the rest counted
    assert sum(assignees[-1]["more"].values()) == 200 - 1 - routing.LISTED_ASSIGNEES


health = st.sampled_from([None, None, "down", "disabled", "circuit breaker open"])


@st.composite
def scenarios(draw):
    n_providers = draw(st.integers(1, 4))
    providers = [
        ProviderState(pid, f"p{i}", "clickup", draw(st.integers(0, 300)), draw(st.integers(0, 50)), draw(health))
        for i, pid in enumerate(ids(n_providers))
    ]
    people = []
    for i in range(draw(st.integers(0, 8))):
        on = draw(st.sets(st.sampled_from([p.id for p in providers]), min_size=1))
        capacity = draw(st.floats(0, 12))
        people.append(AssigneeState(uuid.UUID(int=500 + i), f"a{i}", capacity, draw(st.floats(0, 20)), frozenset(on)))
    return providers, people, draw(st.floats(0, 10))


@given(scenario=scenarios())
def test_routing_never_picks_an_unhealthy_provider_nor_an_over_capacity_person_when_another_fits(scenario):
    providers, people, effort = scenario
    inputs = make_inputs(providers, people)
    before = {a.id: a.free_hours for a in people}
    decision = routing.decide(Request(effort_hours=effort), inputs)
    if decision.provider_id is not None:
        chosen = inputs.providers[decision.provider_id]
        assert chosen.unavailable_reason is None and chosen.weight > 0
    else:
        assert all(p.unavailable_reason or p.weight <= 0 for p in providers)
    if decision.assignee_id is not None:
        on_provider = [a for a in people if decision.provider_id in a.provider_ids]
        # "Fits" with the router's float tolerance (a free capacity of -1e-49 hours is zero).
        fitting = [a for a in on_provider if before[a.id] - effort >= -1e-9]
        if fitting:
            assert before[decision.assignee_id] - effort >= -1e-9 and not decision.over_capacity
            assert before[decision.assignee_id] >= max(before[a.id] for a in fitting) - 1 / 60  # ties: a minute
        else:
            assert decision.over_capacity
