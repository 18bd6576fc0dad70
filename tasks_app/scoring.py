"""The task score: pure functions, no ORM, so the API, the bulk rescoring job, the planner
and the benchmarks all compute exactly the same number cheaply.

The design's formula (weights configurable, see ``ARCHANGEL_SCORE_WEIGHT_*``)::

    score = 0.30 urgency + 0.25 importance + 0.15 effort_factor
          + 0.10 freshness + 0.15 sla_pressure + 0.05 recent_progress_inv

Every factor is in [0, 1], so with weights that are non-negative and sum to 1 the
score is in [0, 1] too. The curves (``h`` = hours):

- **urgency** from the time left to the deadline: ``1 / (1 + h_left / 24)``: 1 at or
  past the deadline (overdue = 1), 0.5 with a day left, 0.125 with a week left.
  No deadline = ``NO_DEADLINE_URGENCY`` (0.1, about nine days left): low, not 0.
  It only grows as the deadline gets closer, so the score never falls as a
  deadline approaches (a property test holds it).
- **importance**: the mean of the client's importance (0..1; 0.5 without a client)
  and the task priority mapped to 0..1 (low 0, normal 1/3, high 2/3, urgent 1).
- **effort_factor** prefers small wins: ``1 / (1 + effort_h / 4)``: 1 for no effort,
  0.5 for half a day, 0.2 for two days. Missing effort = 0.5 (unknown is neutral).
- **freshness** decays with age, half-life three days: ``0.5 ** (age_h / 72)``.
- **sla_pressure** = the share of the client's SLA window already used,
  ``age_h / sla_hours`` capped at 1; 0 without a client or an SLA.
- **recent_progress_inv** grows with the time since the last progress (or since
  creation when there was none), half-way after two days: ``1 - 0.5 ** (h / 48)``.

Naive datetimes are taken as UTC, as the API reads them.

The same formula in SQL (``sql_columns``) lets the bulk rescoring job score 100,000 tasks
inside PostgreSQL instead of reading them out and writing them back; it is built here, from
the same constants, and a test holds it equal to ``score`` value for value on thousands of
generated tasks (``tests/tasks/test_scoring_sql.py``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

FACTORS = ("urgency", "importance", "effort_factor", "freshness", "sla_pressure", "recent_progress_inv")
DEFAULT_WEIGHTS: dict[str, float] = {
    "urgency": 0.30,
    "importance": 0.25,
    "effort_factor": 0.15,
    "freshness": 0.10,
    "sla_pressure": 0.15,
    "recent_progress_inv": 0.05,
}

NO_DEADLINE_URGENCY = 0.1
URGENCY_HALF_HOURS = 24.0
NO_CLIENT_IMPORTANCE = 0.5
EFFORT_HALF_HOURS = 4.0
UNKNOWN_EFFORT_FACTOR = 0.5
FRESHNESS_HALF_LIFE_HOURS = 72.0
PROGRESS_HALF_HOURS = 48.0
# A task whose SLA share used reaches this is "SLA-critical" for the planner and analytics.
SLA_CRITICAL = 0.8
DIGITS = 4
_WEIGHT_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class ScoreInput:
    """What the score depends on; the caller reads it from the task and its client."""

    created_at: dt.datetime
    deadline: dt.datetime | None = None
    priority: int = 2
    effort_hours: float | None = None
    client_importance: float | None = None
    client_sla_hours: float | None = None
    last_progress_at: dt.datetime | None = None


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _hours(later: dt.datetime, earlier: dt.datetime) -> float:
    return (_aware(later) - _aware(earlier)).total_seconds() / 3600.0


def _clamp(value: float) -> float:
    if math.isnan(value):
        return 0.0
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


def urgency(deadline: dt.datetime | None, now: dt.datetime) -> float:
    if deadline is None:
        return NO_DEADLINE_URGENCY
    left = _hours(deadline, now)
    if left <= 0:
        return 1.0
    return _clamp(1.0 / (1.0 + left / URGENCY_HALF_HOURS))


def importance(client_importance: float | None, priority: int) -> float:
    client = NO_CLIENT_IMPORTANCE if client_importance is None else _clamp(float(client_importance))
    prio = _clamp((int(priority) - 1) / 3.0)
    return _clamp((client + prio) / 2.0)


def effort_factor(effort_hours: float | None) -> float:
    if effort_hours is None:
        return UNKNOWN_EFFORT_FACTOR
    effort = max(0.0, float(effort_hours))
    return _clamp(1.0 / (1.0 + effort / EFFORT_HALF_HOURS))


def freshness(created_at: dt.datetime, now: dt.datetime) -> float:
    age = max(0.0, _hours(now, created_at))
    return _clamp(0.5 ** (age / FRESHNESS_HALF_LIFE_HOURS))


def sla_pressure(created_at: dt.datetime, client_sla_hours: float | None, now: dt.datetime) -> float:
    if not client_sla_hours or client_sla_hours <= 0:
        return 0.0
    return _clamp(_hours(now, created_at) / float(client_sla_hours))


def recent_progress_inv(last_progress_at: dt.datetime | None, created_at: dt.datetime, now: dt.datetime) -> float:
    since = max(0.0, _hours(now, last_progress_at or created_at))
    return _clamp(1.0 - 0.5 ** (since / PROGRESS_HALF_HOURS))


def factors(item: ScoreInput, now: dt.datetime) -> dict[str, float]:
    """Every factor of ``item`` at ``now``, each in [0, 1]."""
    return {
        "urgency": urgency(item.deadline, now),
        "importance": importance(item.client_importance, item.priority),
        "effort_factor": effort_factor(item.effort_hours),
        "freshness": freshness(item.created_at, now),
        "sla_pressure": sla_pressure(item.created_at, item.client_sla_hours, now),
        "recent_progress_inv": recent_progress_inv(item.last_progress_at, item.created_at, now),
    }


def score(item: ScoreInput, now: dt.datetime, weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> tuple[float, dict]:
    """``(score, breakdown)``: the weighted sum in [0, 1] and the factor values, both rounded."""
    values = factors(item, now)
    total = _clamp(sum(weights[name] * values[name] for name in FACTORS))
    return _round(total), {name: _round(values[name]) for name in FACTORS}


_SCALE = float(10**DIGITS)


def _round(x: float) -> float:
    """``x`` to ``DIGITS`` places as ``round(x * 10^DIGITS) / 10^DIGITS`` in binary floating point:
    the scaled value's nearest integer, halves to even. Not ``round(x, DIGITS)``, which rounds the
    exact decimal value of ``x``: when the multiplication itself lands on a half (0.45125000000000004
    * 10,000 = 4512.5) the two differ by one unit in the last place, and the SQL form of the
    formula (``_sql_round``: PostgreSQL's ``round(float8)`` is half-to-even) can only do this one."""
    return round(x * _SCALE) / _SCALE


def validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Return the weights if usable, else raise ``ValueError`` naming the problem: one
    weight per factor, each non-negative, summing to 1."""
    missing = [name for name in FACTORS if name not in weights]
    unknown = sorted(set(weights) - set(FACTORS))
    if missing or unknown:
        raise ValueError(f"weights must name exactly {', '.join(FACTORS)} (missing {missing}, unknown {unknown})")
    for name in FACTORS:
        value = weights[name]
        if not isinstance(value, int | float) or math.isnan(value) or value < 0:
            raise ValueError(f"the {name} weight must be a non-negative number, got {value!r}")
    total = sum(weights[name] for name in FACTORS)
    if abs(total - 1.0) > _WEIGHT_TOLERANCE:
        raise ValueError(f"the weights must sum to 1, got {total:g}")
    return {name: float(weights[name]) for name in FACTORS}


# --- The same formula in SQL ------------------------------------------------------------------------


def sql_factors(*, now: str, task: str = "t", client: str = "c") -> dict[str, str]:
    """SQL expressions (PostgreSQL) for every factor, equal to ``factors()`` for the same row and
    instant. ``now`` is the SQL of the instant (a ``timestamptz`` parameter); ``task`` and
    ``client`` the aliases of the task and the (LEFT JOINed) client table.

    Values are computed as the Python code computes them, operation for operation in double
    precision, so they agree to the last bit:

    - hours between two instants: the interval's exact seconds (``extract(epoch ...)`` is an
      exact numeric from PostgreSQL 14 on) to ``float8``, divided by 3600, as
      ``timedelta.total_seconds() / 3600``;
    - ``x ** y`` is C's ``pow`` on both sides; PostgreSQL raises on underflow where Python gives a
      denormal, so past 1,000 halvings (under 1e-301, 0 once rounded) the SQL takes 0;
    - ``GREATEST``/``LEAST`` skip NULLs, so every nullable input is tested with ``CASE`` first,
      as the Python tests ``is None``.
    """
    deadline, created, progress = f"{task}.deadline", f"{task}.created_at", f"{task}.last_progress_at"
    left = _sql_hours(deadline, now)
    age = f"GREATEST({_f(0)}, {_sql_hours(now, created)})"
    since = f"GREATEST({_f(0)}, {_sql_hours(now, f'COALESCE({progress}, {created})')})"
    one = _f(1)
    return {
        "urgency": f"(CASE WHEN {deadline} IS NULL THEN {_f(NO_DEADLINE_URGENCY)} WHEN {left} <= {_f(0)} THEN {one} "
        f"ELSE {_sql_clamp(f'{one} / ({one} + {left} / {_f(URGENCY_HALF_HOURS)})')} END)",
        "importance": _sql_clamp(
            f"((CASE WHEN {client}.importance IS NULL THEN {_f(NO_CLIENT_IMPORTANCE)} "
            f"ELSE {_sql_clamp(f'{client}.importance::float8')} END) + "
            f"{_sql_clamp(f'({task}.priority - 1)::float8 / {_f(3)}')}) / {_f(2)}"
        ),
        "effort_factor": f"(CASE WHEN {task}.effort_hours IS NULL THEN {_f(UNKNOWN_EFFORT_FACTOR)} ELSE "
        f"{_sql_clamp(f'{one} / ({one} + GREATEST({_f(0)}, {task}.effort_hours::float8) / {_f(EFFORT_HALF_HOURS)})')} "
        "END)",
        "freshness": _sql_clamp(_sql_half_power(f"{age} / {_f(FRESHNESS_HALF_LIFE_HOURS)}")),
        "sla_pressure": f"(CASE WHEN {client}.sla_hours IS NULL OR {client}.sla_hours <= 0 THEN {_f(0)} "
        f"ELSE {_sql_clamp(f'{_sql_hours(now, created)} / {client}.sla_hours::float8')} END)",
        "recent_progress_inv": _sql_clamp(f"{one} - {_sql_half_power(f'{since} / {_f(PROGRESS_HALF_HOURS)}')}"),
    }


def sql_score(*, factors: str = "f", weights: str = "w") -> tuple[str, str]:
    """``(score, breakdown)`` in SQL from a row ``factors`` with one column per factor (as
    ``sql_factors`` computes them) and a row ``weights`` with one ``float8`` column per factor:
    ``score()``'s weighted sum, clamped and rounded, and its rounded factors as ``jsonb``.

    Rounding to ``DIGITS`` places is ``round(x * 10^DIGITS) / 10^DIGITS`` in ``float8``, halves to
    even: the same operations as ``_round`` in Python.
    """
    total = " + ".join(f"{weights}.{name} * {factors}.{name}" for name in FACTORS)  # Python's sum(), in order
    pairs = ", ".join(f"'{name}', {_sql_round(f'{factors}.{name}')}" for name in FACTORS)
    return _sql_round(_sql_clamp(f"({total})")), f"jsonb_build_object({pairs})"


def _f(value: float) -> str:
    return f"{float(value)!r}::float8"


def _sql_clamp(x: str) -> str:
    # Every input is finite (column constraints), so no NaN reaches this.
    return f"LEAST(GREATEST({x}, {_f(0)}), {_f(1)})"


def _sql_hours(later: str, earlier: str) -> str:
    return f"(extract(epoch FROM ({later}) - ({earlier}))::float8 / {_f(3600)})"


def _sql_half_power(exponent: str) -> str:
    return f"(CASE WHEN {exponent} >= {_f(1000)} THEN {_f(0)} ELSE power({_f(0.5)}, {exponent}) END)"


def _sql_round(x: str) -> str:
    scale = _f(10**DIGITS)
    return f"(round(({x}) * {scale}) / {scale})"
