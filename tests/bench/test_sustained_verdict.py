"""The sustained-load benchmark's verdict (bench/sustained.py): it says "sustained" only when the
stored rate reached the target with nothing wrong beside it, and names what fell short."""

import pytest

from bench import sustained
from bench.sustained import Paced, _lowest_rate, _report

PLANNED = {"POST /api/tasks/bulk": (1.5, 4, 100), "GET /api/tasks": (1.0, 1, 0)}
CLEAN_STATE = {"duplicates": {"by_marker": {}, "by_request_id": {}}, "creates": {"clickup": 100}, "over_limit_total": 0}


def load(requests: int = 180, errors: int = 0) -> Paced:
    paced = Paced("http://127.0.0.1:1")
    paced.latencies["POST /api/tasks/bulk"] = [50.0] * requests
    paced.latencies["GET /api/tasks"] = [5.0] * 120
    paced.errors["POST /api/tasks/bulk"] = errors
    return paced


def samples(per_minute: float, seconds: int = 120) -> list[tuple[float, int]]:
    return [(float(t), round(per_minute * t / 60)) for t in range(0, seconds + 1, 5)]


def report(*, per_minute=10_000.0, errors=0, backlog=None, rss_end=None, state=None):
    rss_warm = {"api": 200_000, "worker0": 400_000, "sandbox": 100_000}
    return _report(
        load(errors=errors), PLANNED, samples(per_minute), samples(per_minute),
        backlog or [(t, 200) for t in range(5, 125, 5)], rss_warm, rss_end or dict(rss_warm),
        state or CLEAN_STATE, window=120.0, drain_after=1.0, final_backlog=0, dead=0, tasks_total=20_000,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def target(monkeypatch):
    monkeypatch.setattr(sustained, "TASKS_PER_MIN", 10_000.0)
    monkeypatch.setattr(sustained, "SECONDS", 120.0)


def verdicts(rows) -> dict[str, bool | None]:
    return {row.metric.split(",")[0]: row.ok for row in rows if row.ok is not None}


def test_the_target_rate_with_nothing_wrong_is_sustained(capsys):
    rows = report()
    assert set(verdicts(rows).values()) == {True}
    assert round(rows[0].value) == 10_000
    assert "SUSTAINED:" in capsys.readouterr().out


def test_a_rate_more_than_one_percent_short_is_not_sustained(capsys):
    rows = report(per_minute=9_850)
    assert verdicts(rows)["tasks stored per minute"] is False
    assert "NOT sustained" in capsys.readouterr().out


def test_errors_a_growing_backlog_or_a_duplicate_fail_the_run():
    assert verdicts(report(errors=1))["errors"] is False
    growing = [(t, 40 * t) for t in range(5, 125, 5)]
    assert verdicts(report(backlog=growing))["errors"] is False
    duplicated = {**CLEAN_STATE, "duplicates": {"by_marker": {"clickup:k": 2}, "by_request_id": {}}}
    assert verdicts(report(state=duplicated))["errors"] is False


def test_memory_growth_of_an_api_or_worker_process_fails_but_the_sandbox_is_only_shown():
    grown_sandbox = {"api": 200_000, "worker0": 400_000, "sandbox": 300_000}
    assert verdicts(report(rss_end=grown_sandbox))["resident memory growth"] is True
    grown_api = {"api": 240_000, "worker0": 400_000, "sandbox": 100_000}
    assert verdicts(report(rss_end=grown_api))["resident memory growth"] is False


def test_the_worst_minute_is_the_lowest_rate_over_any_sixty_seconds():
    steady = [(float(t), t * 100) for t in range(0, 121, 5)]  # 6,000/min throughout
    dip = [(t, c - (500 if t >= 60 else 0)) for t, c in steady]  # 500 fewer from 60 s on
    assert _lowest_rate(steady, 60.0) == pytest.approx(6_000)
    assert _lowest_rate(dip, 60.0) == pytest.approx(5_500)
    assert _lowest_rate(steady[:5], 60.0) is None
