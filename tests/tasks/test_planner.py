"""The pure planner: order, capacity, reasons."""

import datetime as dt
import uuid

from hypothesis import given
from hypothesis import strategies as st

from tasks_app import planner
from tasks_app.planner import Candidate

DAY = dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)


def c(n, score=0.5, hours=1.0, **kw):
    return Candidate(id=uuid.UUID(int=n), title=f"t{n}", score=score, effort_hours=hours, **kw)


def test_overdue_then_critical_then_rolled_over_then_by_score():
    plan = planner.build(
        [
            c(1, score=0.9),
            c(2, score=0.2, overdue=True, deadline=DAY - dt.timedelta(days=1)),
            c(3, score=0.3, sla_critical=True, sla_used=0.85),
            c(4, score=0.4, rolled_over_from=dt.date(2026, 3, 9)),
            c(5, score=0.1, overdue=True, deadline=DAY - dt.timedelta(days=2)),
        ],
        capacity_hours=8,
    )
    assert [item["title"] for item in plan.items] == ["t5", "t2", "t3", "t4", "t1"]
    assert [item["kind"] for item in plan.items] == ["overdue", "overdue", "critical", "rolled_over", "by_score"]
    assert plan.items[0]["reason"] == "overdue since 2026-03-08 09:00 UTC"
    assert plan.items[2]["reason"] == "SLA-critical: 85% of the client's SLA window used; score 0.300 (#3 by score)"
    assert plan.items[3]["reason"] == "rolled over from 2026-03-09; score 0.400 (#2 by score)"
    assert plan.planned_hours == 5 and plan.not_fitting == []


def test_what_does_not_fit_is_listed_and_smaller_tasks_still_fill_the_gap():
    plan = planner.build([c(1, score=0.9, hours=5), c(2, score=0.8, hours=4), c(3, score=0.1, hours=3)], 8)
    assert [item["title"] for item in plan.items] == ["t1", "t3"]
    assert plan.not_fitting[0]["title"] == "t2"
    assert plan.not_fitting[0]["reason"] == "does not fit: 3.00 h left of 8 h, needs 4.00 h"
    assert plan.planned_hours == 8


def test_overdue_work_goes_in_beyond_capacity_flagged():
    plan = planner.build([c(1, hours=6, overdue=True, deadline=DAY), c(2, hours=6, overdue=True, deadline=DAY)], 8)
    assert [item["over_capacity"] for item in plan.items] == [False, True]
    assert plan.over_capacity_hours == 4


def test_missing_effort_counts_as_the_default():
    plan = planner.build([c(1, hours=None)], 8)
    assert plan.items[0]["hours"] == planner.DEFAULT_EFFORT_HOURS


@st.composite
def candidates(draw):
    out = []
    for n in range(draw(st.integers(0, 25))):
        overdue = draw(st.booleans())
        out.append(
            c(
                n + 1,
                score=draw(st.floats(0, 1)),
                hours=draw(st.none() | st.floats(0, 12)),
                overdue=overdue,
                deadline=DAY if overdue else None,
                sla_critical=draw(st.booleans()),
                rolled_over_from=draw(st.none() | st.just(dt.date(2026, 3, 9))),
            )
        )
    return out


@given(tasks=candidates(), capacity=st.floats(0, 24))
def test_a_plan_never_exceeds_capacity_except_by_flagged_overdue_work(tasks, capacity):
    plan = planner.build(tasks, capacity)
    unflagged = sum(item["hours"] for item in plan.items if not item["over_capacity"])
    assert unflagged <= capacity + 0.01
    assert all(item["kind"] == "overdue" for item in plan.items if item["over_capacity"])
    assert len(plan.items) + len(plan.not_fitting) == len(tasks)
    assert not any(item["kind"] == "overdue" for item in plan.not_fitting)
