"""Reconnect delays: exponential from a minimum, capped, with jitter so stores do not stampede."""

from __future__ import annotations

import random


def delay(attempt: int, low: float, high: float, rand: random.Random | None = None) -> float:
    """Return the wait before reconnect attempt `attempt` (1 for the first retry).

    "Equal jitter": half the capped exponential step is kept, the other half is random, so the
    delay is always within [low, high] and a fleet reconnecting after a broker restart spreads out.
    """
    rand = rand or random
    attempt = max(1, attempt)
    step = min(high, low * (2 ** min(attempt - 1, 32)))
    return max(low, min(high, step / 2 + rand.uniform(0, step / 2)))
