"""The score formula: hand-computed cases, edge cases and properties."""

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks_app import scoring
from tasks_app.scoring import ScoreInput

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def test_a_typical_task_scores_as_computed_by_hand():
    item = ScoreInput(
        created_at=NOW - 72 * H,  # 3 days old: freshness 0.5
        deadline=NOW + 24 * H,  # a day left: urgency 0.5
        priority=3,  # high: 2/3
        effort_hours=4,  # effort_factor 0.5
        client_importance=1.0,  # importance (1 + 2/3) / 2 = 5/6
        client_sla_hours=96,  # 72 of 96 hours used: 0.75
        last_progress_at=NOW - 48 * H,  # recent_progress_inv 0.5
    )
    value, breakdown = scoring.score(item, NOW)
    assert breakdown == {
        "urgency": 0.5,
        "importance": 0.8333,
        "effort_factor": 0.5,
        "freshness": 0.5,
        "sla_pressure": 0.75,
        "recent_progress_inv": 0.5,
    }
    expected = 0.30 * 0.5 + 0.25 * (5 / 6) + 0.15 * 0.5 + 0.10 * 0.5 + 0.15 * 0.75 + 0.05 * 0.5
    assert value == round(expected, 4) == 0.6208


def test_a_brand_new_overdue_urgent_task_of_a_top_client_scores_by_hand():
    item = ScoreInput(
        created_at=NOW, deadline=NOW - H, priority=4, effort_hours=0, client_importance=1, client_sla_hours=10
    )
    value, breakdown = scoring.score(item, NOW)
    assert breakdown == {
        "urgency": 1.0,
        "importance": 1.0,
        "effort_factor": 1.0,
        "freshness": 1.0,
        "sla_pressure": 0.0,
        "recent_progress_inv": 0.0,
    }
    assert value == 0.80


def test_custom_weights_are_used():
    item = ScoreInput(created_at=NOW, deadline=NOW - H)
    weights = dict.fromkeys(scoring.FACTORS, 0.0) | {"urgency": 1.0}
    assert scoring.score(item, NOW, weights)[0] == 1.0


def test_no_deadline_is_low_urgency_but_not_zero():
    assert scoring.urgency(None, NOW) == scoring.NO_DEADLINE_URGENCY == 0.1


def test_overdue_is_full_urgency():
    assert scoring.urgency(NOW - 1000 * H, NOW) == 1.0
    assert scoring.urgency(NOW, NOW) == 1.0


def test_no_client_means_middle_importance_and_no_sla_pressure():
    assert scoring.importance(None, 1) == 0.25
    assert scoring.sla_pressure(NOW - 500 * H, None, NOW) == 0.0


def test_zero_effort_is_the_best_effort_factor_and_missing_effort_is_neutral():
    assert scoring.effort_factor(0) == 1.0
    assert scoring.effort_factor(None) == 0.5


def test_naive_datetimes_are_taken_as_utc():
    naive = ScoreInput(created_at=dt.datetime(2026, 3, 7, 12), deadline=dt.datetime(2026, 3, 11, 12))
    aware = ScoreInput(created_at=NOW - 72 * H, deadline=NOW + 24 * H)
    assert scoring.score(naive, NOW) == scoring.score(aware, NOW)
    assert scoring.score(naive, NOW.replace(tzinfo=None)) == scoring.score(aware, NOW)


def test_a_task_created_in_the_future_by_a_skewed_clock_stays_in_range():
    value, breakdown = scoring.score(ScoreInput(created_at=NOW + 5 * H, client_sla_hours=4), NOW)
    assert breakdown["freshness"] == 1.0
    assert breakdown["sla_pressure"] == 0.0
    assert 0 <= value <= 1


def test_sla_pressure_is_the_share_of_the_window_used_capped_at_one():
    assert scoring.sla_pressure(NOW - 12 * H, 48, NOW) == 0.25
    assert scoring.sla_pressure(NOW - 100 * H, 48, NOW) == 1.0


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (scoring.DEFAULT_WEIGHTS | {"urgency": -0.1, "importance": 0.65}, "urgency weight must be a non-negative"),
        (scoring.DEFAULT_WEIGHTS | {"urgency": 0.5}, "must sum to 1"),
        ({k: v for k, v in scoring.DEFAULT_WEIGHTS.items() if k != "freshness"}, "missing ['freshness']"),
    ],
)
def test_bad_weights_are_refused_with_the_reason(weights, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        scoring.validate_weights(weights)


datetimes = st.datetimes(
    min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2032, 1, 1), timezones=st.just(dt.UTC)
)
inputs = st.builds(
    ScoreInput,
    created_at=datetimes,
    deadline=st.none() | datetimes,
    priority=st.integers(1, 4),
    effort_hours=st.none() | st.floats(0, 10_000),
    client_importance=st.none() | st.floats(0, 1),
    client_sla_hours=st.none() | st.integers(1, 10_000),
    last_progress_at=st.none() | datetimes,
)


@given(item=inputs, now=datetimes)
def test_every_factor_and_the_score_stay_in_range(item, now):
    value, breakdown = scoring.score(item, now)
    assert 0.0 <= value <= 1.0
    assert set(breakdown) == set(scoring.FACTORS)
    assert all(0.0 <= f <= 1.0 for f in scoring.factors(item, now).values())


@given(item=inputs, now=datetimes, earlier_by=st.floats(0, 24 * 365), later_by=st.floats(0, 24 * 365))
def test_the_score_never_falls_as_the_deadline_approaches(item, now, earlier_by, later_by):
    # The same task with less time left before its deadline (nothing else changed) scores no lower.
    far = now + dt.timedelta(hours=earlier_by + later_by)
    near = now + dt.timedelta(hours=earlier_by)
    far_score = scoring.score(_with(item, far), now)
    near_score = scoring.score(_with(item, near), now)
    assert near_score[0] >= far_score[0]
    assert scoring.urgency(near, now) >= scoring.urgency(far, now)


def _with(item: ScoreInput, deadline: dt.datetime) -> ScoreInput:
    return dataclasses.replace(item, deadline=deadline)
