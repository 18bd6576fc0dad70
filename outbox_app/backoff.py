"""Retry delays: exponential backoff with full jitter (no ORM, so it is trivially testable).

"Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"): after the n-th
failed attempt wait a uniformly random time in ``[0, min(cap, base * 2**(n-1))]``. The
randomness spreads the retries of many events that failed together (a provider outage)
so they do not come back as one storm (docs/reliability.md).
"""

import random


def backoff_ceiling(attempt: int, *, base: float, cap: float) -> float:
    """The largest delay after the ``attempt``-th failure (1-based)."""
    exponent = min(max(attempt, 1) - 1, 62)  # 2**62 * base is past any cap; avoids huge floats
    return min(float(cap), float(base) * (2**exponent))


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: uniform in [0, ceiling]."""
    return (rng or random).uniform(0.0, backoff_ceiling(attempt, base=base, cap=cap))
